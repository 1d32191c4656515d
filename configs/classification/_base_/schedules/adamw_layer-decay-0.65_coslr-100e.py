# Fine-tuning schedule of METHOD.md: 100 epochs, 20 of linear warm-up, then
# cosine; AdamW (0.9, 0.999), weight decay 0.05, layer-wise lr decay 0.65 (no
# weight decay on norms, biases, tokens, position embeddings). The lr (our
# choice, the paper gives none) is MAE's: 5e-4 per 256 images.
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(
        type='AdamW',
        lr=5e-4 * 1024 / 256,
        weight_decay=0.05,
        betas=(0.9, 0.999)),
    constructor='LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=0.65))

param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-4,
        by_epoch=True,
        begin=0,
        end=20,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        T_max=80,
        by_epoch=True,
        begin=20,
        end=100,
        eta_min=1e-6,
        convert_to_iter_based=True)
]

train_cfg = dict(by_epoch=True, max_epochs=100, val_interval=1)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=1024)
