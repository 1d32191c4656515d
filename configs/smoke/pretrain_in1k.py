# Smoke run of the ViT-B pre-training config on a CPU, in a minute:
# configs/pretrain/noisemim_vit-base-p16_8xb512-amp-coslr-400e_in1k.py as it
# is (NoiseMIM, its 224 px pipeline, SkipBadSamples over mmpretrain's
# ImageNet, AdamW, the lr scaled by the total batch, the hooks), with a tiny
# ViT (4 blocks, 64-d; still 16 px patches and 32 px mask units), the tiny
# ImageNet of tools/misc/make_tiny_data.py and 2 epochs (docs/smoke.md):
#   python tools/misc/make_tiny_data.py imagenet
#   python tools/train.py configs/smoke/pretrain_in1k.py
# The fine-tuning smoke runs start from its work_dirs/pretrain_in1k/epoch_2.pth.
_base_ = '../pretrain/noisemim_vit-base-p16_8xb512-amp-coslr-400e_in1k.py'

tiny_vit = dict(
    embed_dims=64, num_layers=4, num_heads=4, feedforward_channels=256)
model = dict(
    backbone=dict(arch=dict(_delete_=True, **tiny_vit)),
    mim_head=dict(in_channels=64),
    denoise_head=dict(in_channels=64))

data_root = 'data/tiny/imagenet/'
train_dataloader = dict(
    batch_size=8,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(data_root=data_root))

# The schedule, shortened: every field derived from the number of epochs is
# set here (warm-up 1 epoch, cosine over the other).
max_epochs = 2
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-4,
        by_epoch=True,
        begin=0,
        end=1,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        T_max=max_epochs - 1,
        eta_min=1e-6,
        by_epoch=True,
        begin=1,
        end=max_epochs,
        convert_to_iter_based=True)
]
train_cfg = dict(max_epochs=max_epochs)
default_hooks = dict(logger=dict(interval=1))
