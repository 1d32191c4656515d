# The paper's pre-training schedule: 400 epochs at batch 4096, AdamW
# (0.9, 0.999), weight decay 0.05, base lr 1e-4 per 256 images, cosine with
# warm-up; no weight decay on norms, biases, tokens and position embeddings.
# The constructor merges the per-tensor groups of paramwise_cfg into one
# group per distinct setting (2 for ViT-B; noisemim/engine/optimizers).
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(
        type='AdamW', lr=1e-4 * 4096 / 256, betas=(0.9, 0.999),
        weight_decay=0.05),
    constructor='NoiseMIMOptimWrapperConstructor',
    paramwise_cfg=dict(
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        custom_keys={
            'pos_embed': dict(decay_mult=0.),
            'mask_token': dict(decay_mult=0.),
            'cls_token': dict(decay_mult=0.)
        }))

param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-4,
        by_epoch=True,
        begin=0,
        end=40,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        T_max=360,
        eta_min=1e-6,
        by_epoch=True,
        begin=40,
        end=400,
        convert_to_iter_based=True)
]

train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=400)
# 8 GPUs x 512 = 4096 per update; the lr is rescaled for another total batch
# (GPUs x batch_size x optim_wrapper.accumulative_counts: tools/train.py makes
# mmengine's scaling count the accumulation).
auto_scale_lr = dict(base_batch_size=4096, enable=True)
