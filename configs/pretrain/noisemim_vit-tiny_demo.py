# The demo: a tiny NoiseMIM ViT pre-trained on scikit-image's photographs
# (64 px, 8 px patches, 16 px mask units), on CPU in a few minutes.
_base_ = [
    '../_base_/models/noisemim_vit-base-p16.py',
    '../_base_/datasets/embedded_photos.py',
    '../_base_/schedules/adamw_coslr_400e_bs4096.py',
    '../_base_/default_runtime.py',
]
model = dict(
    backbone=dict(
        arch=dict(
            _delete_=True,
            embed_dims=64, num_layers=4, num_heads=4,
            feedforward_channels=256),
        img_size=64,
        patch_size=8,
        mask_unit=16),
    mim_head=dict(in_channels=64, out_channels=8**2 * 3),
    denoise_head=dict(in_channels=64, out_channels=8**2 * 3))
optim_wrapper = dict(optimizer=dict(lr=1.5e-3))
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
