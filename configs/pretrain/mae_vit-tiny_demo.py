# mmpretrain's MAE at the size of the NoiseMIM demo (4 blocks, 64-d, 64 px,
# 8 px patches), pre-trained on scikit-image's photographs for the
# reconstruction comparison of tools/analysis/reconstruction.py.
_base_ = [
    '../_base_/datasets/embedded_photos.py',
    '../_base_/schedules/adamw_coslr_400e_bs4096.py',
    '../_base_/default_runtime.py',
]
patch_size = 8
model = dict(
    type='MAE',
    backbone=dict(
        type='MAEViT',
        arch=dict(
            embed_dims=64, num_layers=4, num_heads=4,
            feedforward_channels=256),
        img_size=64,
        patch_size=patch_size,
        mask_ratio=0.75),
    neck=dict(
        type='MAEPretrainDecoder',
        num_patches=(64 // patch_size)**2,
        patch_size=patch_size,
        in_chans=3,
        embed_dim=64,
        decoder_embed_dim=64,
        decoder_depth=2,
        decoder_num_heads=4,
        mlp_ratio=4.),
    head=dict(
        type='MAEPretrainHead',
        norm_pix=True,
        patch_size=patch_size,
        loss=dict(type='PixelReconstructionLoss', criterion='L2')),
    init_cfg=[
        dict(type='Xavier', layer='Linear', distribution='uniform'),
        dict(type='Constant', layer='LayerNorm', val=1.0, bias=0.0)
    ])
# The demo's schedule: 200 iterations, 20 of warm-up.
optim_wrapper = dict(optimizer=dict(lr=1.5e-3, betas=(0.9, 0.95)))
max_iters = 200
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=20),
    dict(
        type='CosineAnnealingLR',
        by_epoch=False,
        begin=20,
        end=max_iters,
        T_max=max_iters - 20,
        eta_min=1e-5)
]
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=max_iters)
auto_scale_lr = dict(enable=False)
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(by_epoch=False, interval=100, max_keep_ckpts=2))
log_processor = dict(by_epoch=False)
