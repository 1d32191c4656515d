# Smoke run of ImageNet fine-tuning on a CPU, in a minute:
# configs/classification/noisemim_vit-b-p16_8xb128-coslr-100e_in1k.py as it
# is (224 px, RandAugment, random erasing, Mixup/CutMix, label smoothing,
# layer-wise lr decay, StrictPretrained, top-1/top-5 accuracy on val), with
# the tiny ViT of configs/smoke/pretrain_in1k.py, loaded from that run, on the
# tiny ImageNet, 2 epochs (docs/smoke.md):
#   python tools/train.py configs/smoke/finetune_in1k.py
_base_ = '../classification/noisemim_vit-b-p16_8xb128-coslr-100e_in1k.py'

pretrained = 'work_dirs/pretrain_in1k/epoch_2.pth'
tiny_vit = dict(
    embed_dims=64, num_layers=4, num_heads=4, feedforward_channels=256)
model = dict(
    backbone=dict(
        arch=dict(_delete_=True, **tiny_vit),
        init_cfg=dict(checkpoint=pretrained)),
    head=dict(in_channels=64))

data_root = 'data/tiny/imagenet'
loader = dict(batch_size=8, num_workers=0, persistent_workers=False)
train_dataloader = dict(**loader, dataset=dict(data_root=data_root))
val_dataloader = dict(**loader, dataset=dict(data_root=data_root))
test_dataloader = val_dataloader

# The schedule, shortened (warm-up 1 epoch, cosine over the other),
# validation after the last epoch.
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
        by_epoch=True,
        begin=1,
        end=max_epochs,
        eta_min=1e-6,
        convert_to_iter_based=True)
]
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
default_hooks = dict(logger=dict(interval=1))
