# NoiseMIM ViT-B/16, ImageNet-1K, 224 px, 400 epochs, total batch 4096 (8x512).
_base_ = [
    '../_base_/models/noisemim_vit-base-p16.py',
    '../_base_/datasets/imagenet_bs512_noisemim.py',
    '../_base_/schedules/adamw_coslr_400e_bs4096.py',
    '../_base_/default_runtime.py',
]
# Mixed precision; the loss terms are computed in fp32.
optim_wrapper = dict(type='AmpOptimWrapper', loss_scale='dynamic')
resume = True
