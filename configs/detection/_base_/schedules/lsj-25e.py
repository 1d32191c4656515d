# ViTDet's schedule shortened to 25 epochs: 46,094 iterations x 64 images.
# Otherwise as lsj-100e.py: AdamW lr 1e-4, weight decay 0.1, layer-wise
# lr decay 0.7, 250 warm-up iterations, lr x0.1 at 8/9 and 26/27, AMP.
max_iters = 46094
interval = 5000  # validation and checkpoints; see default_runtime.py

optim_wrapper = dict(
    type='AmpOptimWrapper',
    constructor='LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=0.7),  # no decay: norms, biases, pos
    optimizer=dict(
        type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.1))
param_scheduler = [
    dict(
        type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=250),
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_iters,
        by_epoch=False,
        milestones=[round(max_iters * 8 / 9), round(max_iters * 26 / 27)],
        gamma=0.1)
]
train_cfg = dict(
    type='IterBasedTrainLoop',
    max_iters=max_iters,
    val_interval=interval,
    dynamic_intervals=[(max_iters // interval * interval + 1, max_iters)])
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

# The schedule assumes 64 images per iteration; --auto-scale-lr rescales the
# lr for another total batch.
auto_scale_lr = dict(base_batch_size=64)
