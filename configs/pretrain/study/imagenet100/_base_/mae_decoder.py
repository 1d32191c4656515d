# Decoder-style at ViT-S/16 scale: mmpretrain's MAE with a 4-block, 256-d
# decoder. DiffMAE and MaskDiT-style swap in their parts.
_base_ = ['./vit-s_pretrain.py']
patch_size = 16
model = dict(
    type='MAE',
    backbone=dict(
        type='MAEViT',
        arch={{_base_.arch}},
        img_size=224,
        patch_size=patch_size,
        mask_ratio=0.75),
    neck=dict(
        type='MAEPretrainDecoder',
        num_patches=(224 // patch_size)**2,
        patch_size=patch_size,
        in_chans=3,
        embed_dim=384,
        decoder_embed_dim=256,
        decoder_depth=4,
        decoder_num_heads=8,
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
