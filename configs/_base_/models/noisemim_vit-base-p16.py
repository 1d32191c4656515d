# NoiseMIM with ViT-B/16 at 224 px: the choices of METHOD.md.
patch_size = 16
model = dict(
    type='NoiseMIM',
    backbone=dict(
        type='NoiseMIMViT',
        arch='b',
        img_size=224,
        patch_size=patch_size,
        mask_ratio=0.6,  # SimMIM-style random mask ...
        mask_unit=32,  # ... of 32 px squares
        noise_ratio=0.5,  # share of the visible patches noised (set S)
        noise_layer=2,  # noise enters block 2; 0 = embeddings, 'pixel'
        t_range=(0., 1.),  # t ~ U[t_min, t_max], cosine alpha_bar(t)
        time_embed=False),
    mim_head=dict(
        type='TokenRegressionHead',
        in_channels=768,
        out_channels=patch_size**2 * 3,
        loss=dict(type='PixelReconstructionLoss', criterion='L2')),
    denoise_head=dict(
        type='TokenRegressionHead',
        in_channels=768,
        out_channels=patch_size**2 * 3,
        loss=dict(type='PixelReconstructionLoss', criterion='L2')),
    disruption=dict(type='DisruptionLoss', mode='mass', loss_weight=0.1),
    norm_pix=True,
    denoise_target='pixel',
    init_cfg=[
        dict(type='TruncNormal', layer='Linear', std=0.02, bias=0.),
        dict(type='Constant', layer='LayerNorm', val=1.0, bias=0.0)
    ])
