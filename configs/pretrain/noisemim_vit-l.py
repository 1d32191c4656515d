# NoiseMIM ViT-L/16, ImageNet-1K, 224 px, 400 epochs, total batch 4096.
_base_ = './noisemim_vit-b.py'
model = dict(
    backbone=dict(arch='l'),
    mim_head=dict(in_channels=1024),
    denoise_head=dict(in_channels=1024))
