# Encoder-style, conjunctive (NoiseMIM) at ViT-S/16 scale: mask tokens for M
# (60 %, 32 px units) and feature noise on half of the visible tokens.
_base_ = ['./vit-s_pretrain.py']
patch_size = 16
pixels = patch_size**2 * 3
model = dict(
    type='NoiseMIM',
    backbone=dict(
        type='NoiseMIMViT',
        arch={{_base_.arch}},
        img_size=224,
        patch_size=patch_size,
        mask_ratio=0.6,
        mask_unit=32,
        noise_ratio=0.5,
        noise_layer=2,
        t_range=(0., 1.)),
    mim_head=dict(
        type='TokenRegressionHead', in_channels=384, out_channels=pixels),
    denoise_head=dict(
        type='TokenRegressionHead', in_channels=384, out_channels=pixels),
    disruption=dict(type='DisruptionLoss', mode='mass', loss_weight=0.1),
    norm_pix=True,
    denoise_target='pixel',
    init_cfg=[
        dict(type='TruncNormal', layer='Linear', std=0.02, bias=0.),
        dict(type='Constant', layer='LayerNorm', val=1.0, bias=0.0)
    ])
