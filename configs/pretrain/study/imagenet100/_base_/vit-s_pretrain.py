# The GPU-scale study: ViT-S/16 at 224 px on ImageNet-100-style data (an
# ImageNet-layout folder, data/imagenet100/{train,val}/<class>/*.JPEG).
# tools/study.py sets max_iters and the schedule from the protocol's iters
# (protocols/imagenet100_vit-s.py); the values here are for a direct
# `tools/train.py` run of one cell. NOT RUN in this project (no GPU, no data).
_base_ = ['../../../../_base_/default_runtime.py']
custom_imports = dict(imports=['noisemim'], allow_failed_imports=False)
img_size = 224
data_root = 'data/imagenet100/'
data_preprocessor = dict(
    type='NoiseMIMDataPreprocessor',  # moves only the images
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=True)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='RandomResizedCrop',
        scale=img_size,
        crop_ratio_range=(0.2, 1.0),
        backend='pillow',
        interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackInputs')
]
train_dataloader = dict(
    batch_size=256,
    num_workers=10,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    # train/ of an ImageNet-layout folder, or any folder of images
    dataset=dict(
        type='NoiseMIMImageFolder',
        data_root=data_root,
        split='train',
        pipeline=train_pipeline))
# AdamW, lr 1.5e-4 x 256 / 256, weight decay 0.05 (MAE's recipe); bf16 without
# a loss scaler, as every pre-training config (docs/gpu.md).
optim_wrapper = dict(
    type='AmpOptimWrapper',
    dtype='bfloat16',
    loss_scale=dict(enabled=False),
    optimizer=dict(
        type='AdamW', lr=1.5e-4, betas=(0.9, 0.95), weight_decay=0.05),
    constructor='NoiseMIMOptimWrapperConstructor',  # groups merged
    paramwise_cfg=dict(
        custom_keys={
            'ln': dict(decay_mult=0.0),
            'bias': dict(decay_mult=0.0),
            'pos_embed': dict(decay_mult=0.),
            'mask_token': dict(decay_mult=0.),
            'cls_token': dict(decay_mult=0.)
        }))
# 200 epochs of ImageNet-100's 126,689 training images at batch 256.
max_iters = 99000
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-4,
        by_epoch=False,
        begin=0,
        end=9900),
    dict(
        type='CosineAnnealingLR',
        by_epoch=False,
        begin=9900,
        end=max_iters,
        T_max=max_iters - 9900,
        eta_min=0.)
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters)
auto_scale_lr = dict(enable=False)
default_hooks = dict(
    logger=dict(interval=100),
    checkpoint=dict(by_epoch=False, interval=5000, max_keep_ckpts=1))
log_processor = dict(by_epoch=False)
arch = dict(
    embed_dims=384, num_layers=12, num_heads=6, feedforward_channels=1536)
