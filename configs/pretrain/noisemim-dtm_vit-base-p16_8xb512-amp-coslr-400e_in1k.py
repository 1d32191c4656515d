# NoiseMIM + DTM (ours; neither paper has it): NoiseMIM ViT-B/16 (400 epochs,
# mask + feature noise + disruption loss, all unchanged) whose MIM head
# predicts the morphed CLIP ViT-B/16 patch tokens of the masked patches
# instead of their pixels. Teacher file: see README, "The teacher".
_base_ = ['./noisemim_vit-base-p16_8xb512-amp-coslr-400e_in1k.py']
teacher_checkpoint = 'data/teachers/clip_vit-b16.pth'
model = dict(
    type='NoiseMIMDTM',
    mim_head=dict(
        _delete_=True,
        type='MorphingHead',
        in_channels=768,
        out_channels=512,
        beta=2.),
    teacher=dict(
        type='ViTTeacher',
        checkpoint=teacher_checkpoint,
        vit=dict(
            type='VisionTransformer',
            arch='b',
            img_size=224,
            patch_size=16,
            pre_norm=True,
            norm_cfg=dict(type='LN', eps=1e-5),
            layer_cfgs=dict(act_cfg=dict(type='mmpretrain.QuickGELU'))),
        proj_channels=512),
    morphing=dict(num_merge_range=(0, 196), iters_range=(1, 14), num_draws=2),
    mim_loss_tokens='masked')  # NoiseMIM's L_mim covers M; 'all' as DTM
