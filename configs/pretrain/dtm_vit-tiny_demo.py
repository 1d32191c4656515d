# A CPU-sized DTM: a tiny student (4 blocks, 64-d) distils a tiny teacher's
# morphed tokens on scikit-image's photographs (64 px, 8 px patches: 64
# tokens). Make a random teacher first (not a real one; see README, "The teacher"):
#   python tools/model_converters/clip_to_teacher.py --random \
#       configs/pretrain/dtm_vit-tiny_demo.py
_base_ = ['./noisemim_vit-tiny_demo.py']
model = dict(
    _delete_=True,
    type='DTM',
    backbone=dict(
        type='NoiseMIMViT',
        arch=dict(
            embed_dims=64,
            num_layers=4,
            num_heads=4,
            feedforward_channels=256),
        img_size=64,
        patch_size=8,
        mask_unit=16,
        noise_ratio=0.),
    head=dict(type='MorphingHead', in_channels=64, out_channels=32, beta=2.),
    teacher=dict(
        type='ViTTeacher',
        checkpoint='data/teachers/tiny_random_teacher.pth',
        vit=dict(
            type='VisionTransformer',
            arch=dict(
                embed_dims=64,
                num_layers=2,
                num_heads=4,
                feedforward_channels=256),
            img_size=64,
            patch_size=8,
            pre_norm=True,
            norm_cfg=dict(type='LN', eps=1e-5),
            layer_cfgs=dict(act_cfg=dict(type='mmpretrain.QuickGELU'))),
        proj_channels=32),
    morphing=dict(num_merge_range=(0, 64), iters_range=(1, 14), num_draws=2),
    mask=dict(num_masking_patches=24, min_num_patches=4),
    init_cfg=[
        dict(type='TruncNormal', layer='Linear', std=0.02, bias=0.),
        dict(type='Constant', layer='LayerNorm', val=1.0, bias=0.0)
    ])
