# The CPU demo of NoiseMIM + DTM: the tiny NoiseMIM demo whose MIM head
# predicts a tiny teacher's morphed tokens. Make the random teacher first:
#   python tools/model_converters/clip_to_teacher.py --random \
#       configs/pretrain/noisemim-dtm_vit-tiny_demo.py
_base_ = ['./noisemim_vit-tiny_demo.py']
model = dict(
    type='NoiseMIMDTM',
    mim_head=dict(
        _delete_=True,
        type='MorphingHead',
        in_channels=64,
        out_channels=32,
        beta=2.),
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
    morphing=dict(num_merge_range=(0, 64), iters_range=(1, 14), num_draws=2))
