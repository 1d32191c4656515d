# Smoke run of UperNet on ADE20K on a CPU, in a minute:
# configs/segmentation/upernet_noisemim-vit-b_8xb2-amp-160k_ade20k-512x512.py
# as it is (mmpretrain's ViT loaded by StrictPretrained, Feature2Pyramid,
# UPerHead + FCN auxiliary head, SyncBN, layer-wise lr decay, sliding-window
# inference, mmseg's IoUMetric on the validation split), with the tiny ViT of
# configs/smoke/pretrain_in1k.py, loaded from that run, 128 px instead of
# 512 px and 6 iterations on the tiny ADE20K (docs/smoke.md):
#   python tools/misc/make_tiny_data.py ade20k
#   python tools/train.py configs/smoke/upernet_ade20k.py
_base_ = '../segmentation/upernet_noisemim-vit-b_8xb2-amp-160k_ade20k-512x512.py'

pretrained = 'work_dirs/pretrain_in1k/epoch_2.pth'
crop_size = (128, 128)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        arch=dict(
            _delete_=True,
            embed_dims=64,
            num_layers=4,
            num_heads=4,
            feedforward_channels=256),
        img_size=crop_size[0],
        out_indices=[0, 1, 2, 3],
        init_cfg=dict(checkpoint=pretrained)),
    neck=dict(embed_dim=64),
    decode_head=dict(in_channels=[64] * 4, channels=32),
    auxiliary_head=dict(in_channels=64, channels=16),
    test_cfg=dict(crop_size=crop_size, stride=(85, 85)))

# The pipelines at 128 px (mmseg's ADE20K ones at 512 px otherwise).
data_root = 'data/tiny/ade20k'
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(
        type='RandomResize',
        scale=(512, 128),
        ratio_range=(0.5, 2.0),
        keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(512, 128), keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs')
]
loader = dict(num_workers=0, persistent_workers=False)
train_dataloader = dict(
    **loader, dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(
    **loader, dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader

# The schedule, shortened: every field derived from max_iters is set here
# (warm-up, poly decay to the end, validation and a checkpoint at the end).
max_iters = 6
param_scheduler = [
    dict(
        type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=2),
    dict(
        type='PolyLR',
        eta_min=0.0,
        power=1.0,
        by_epoch=False,
        begin=2,
        end=max_iters)
]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(
    logger=dict(interval=1), checkpoint=dict(interval=max_iters))
