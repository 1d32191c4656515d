# DTM (Kim et al., arXiv 2401.00254) ViT-B/16 on ImageNet-1K at 224 px, 300
# epochs, total batch 2048 (8x256), as the official code does it: a frozen
# CLIP ViT-B/16 teacher (ln_post patch tokens projected to 512-d), block-wise
# masking of 75 of 196 patches, L = 2 morphings per step (num_merge ~
# U{0..196}, iters ~ U{1..14}), smooth-L1 (beta 2) over all tokens.
# The teacher file: tools/model_converters/clip_to_teacher.py (README, "The teacher").
_base_ = [
    '../_base_/datasets/imagenet_bs512_noisemim.py',
    '../_base_/schedules/adamw_coslr_400e_bs4096.py',
    '../_base_/default_runtime.py',
]
teacher_checkpoint = 'data/teachers/clip_vit-b16.pth'
model = dict(
    type='DTM',
    backbone=dict(  # the student; its own mask settings are unused
        type='NoiseMIMViT',
        arch='b',
        img_size=224,
        patch_size=16,
        noise_ratio=0.,
        drop_path_rate=0.1),
    head=dict(type='MorphingHead', in_channels=768, out_channels=512, beta=2.),
    teacher=dict(
        type='ViTTeacher',
        checkpoint=teacher_checkpoint,
        vit=dict(
            type='VisionTransformer',
            arch='b',
            img_size=224,
            patch_size=16,
            pre_norm=True,
            norm_cfg=dict(type='LN', eps=1e-5),
            layer_cfgs=dict(act_cfg=dict(type='mmpretrain.QuickGELU'))),
        proj_channels=512),
    # (the first patch is never merged by default, as in the official code)
    morphing=dict(num_merge_range=(0, 196), iters_range=(1, 14), num_draws=2),
    mask=dict(num_masking_patches=75, min_num_patches=16, min_aspect=0.3),
    init_cfg=[
        dict(type='TruncNormal', layer='Linear', std=0.02, bias=0.),
        dict(type='Constant', layer='LayerNorm', val=1.0, bias=0.0)
    ])

# BEiT v2's augmentation, which the official code keeps.
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ColorJitter', brightness=0.4, contrast=0.4, saturation=0.4),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='RandomResizedCrop',
        scale=224,
        crop_ratio_range=(0.08, 1.0),
        backend='pillow',
        interpolation='bicubic'),
    dict(type='PackInputs')
]
train_dataloader = dict(batch_size=256, dataset=dict(pipeline=train_pipeline))

# BEiT v2 / DTM: AdamW lr 1.5e-3 at batch 2048, 10 warm-up epochs, cosine to
# 1e-5, gradient clipping at 3.0.
# bf16 without a loss scaler (docs/gpu.md); 256 per GPU is ~24 GB of student
# activations (estimated) plus the frozen teacher's forward pass.
optim_wrapper = dict(
    type='AmpOptimWrapper',
    dtype='bfloat16',
    loss_scale=dict(enabled=False),
    optimizer=dict(lr=1.5e-3, betas=(0.9, 0.999), weight_decay=0.05),
    clip_grad=dict(max_norm=3.0))
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-4,
        by_epoch=True,
        begin=0,
        end=10,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        T_max=290,
        eta_min=1e-5,
        by_epoch=True,
        begin=10,
        end=300,
        convert_to_iter_based=True)
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=300)
auto_scale_lr = dict(base_batch_size=2048, enable=True)
