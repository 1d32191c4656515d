# Encoder-style, conjunctive (NoiseMIM) at the study's scale: mask tokens for M
# and feature noise on a disjoint set S of visible tokens, inside the encoder.
_base_ = ['./tiny_pretrain.py']
patch_size = 8
pixels = patch_size**2 * 3
model = dict(
    type='NoiseMIM',
    backbone=dict(
        type='NoiseMIMViT',
        arch=dict(
            embed_dims=64, num_layers=4, num_heads=4,
            feedforward_channels=256),
        img_size=64,
        patch_size=patch_size,
        mask_ratio=0.6,
        mask_unit=16,
        noise_ratio=0.5,
        noise_layer=2,
        t_range=(0., 1.)),
    mim_head=dict(
        type='TokenRegressionHead', in_channels=64, out_channels=pixels),
    denoise_head=dict(
        type='TokenRegressionHead', in_channels=64, out_channels=pixels),
    disruption=dict(type='DisruptionLoss', mode='mass', loss_weight=0.1),
    norm_pix=True,
    denoise_target='pixel',
    init_cfg=[
        dict(type='TruncNormal', layer='Linear', std=0.02, bias=0.),
        dict(type='Constant', layer='LayerNorm', val=1.0, bias=0.0)
    ])
