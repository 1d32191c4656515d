# Encoder-style, substitutive at the study's scale: the tokens of the mask M
# are noised instead of replaced by the mask token; one head restores them.
_base_ = ['./tiny_pretrain.py']
patch_size = 8
model = dict(
    type='SubstitutiveNoiseMIM',
    backbone=dict(
        type='NoiseMIMViT',
        arch=dict(
            embed_dims=64, num_layers=4, num_heads=4,
            feedforward_channels=256),
        img_size=64,
        patch_size=patch_size,
        mask_ratio=0.6,
        mask_unit=16,
        noise_ratio=0.,
        noise_layer=2,
        t_range=(0., 1.)),
    mim_head=dict(
        type='TokenRegressionHead',
        in_channels=64,
        out_channels=patch_size**2 * 3),
    norm_pix=True,
    init_cfg=[
        dict(type='TruncNormal', layer='Linear', std=0.02, bias=0.),
        dict(type='Constant', layer='LayerNorm', val=1.0, bias=0.0)
    ])
