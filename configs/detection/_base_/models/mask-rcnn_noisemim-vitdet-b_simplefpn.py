# Mask R-CNN, ViTDet-style, on a NoiseMIM ViT-B/16: windowed attention
# (14x14) with global attention in blocks 2, 5, 8, 11; the 224 px position
# embedding resized to the 64x64 grid of 1024 px; a simple feature pyramid;
# LN in the pyramid and the heads ("ln-all"); 2-conv RPN, 4conv1fc box head.
_base_ = 'mmdet::_base_/models/mask-rcnn_r50_fpn.py'

# A NoiseMIM pre-training checkpoint (of
# configs/pretrain/noisemim_vit-base-p16_8xb512-amp-coslr-400e_in1k.py) or a
# published backbone file (tools/model_converters/).
pretrained = 'work_dirs/noisemim_vit-base-p16_8xb512-amp-coslr-400e_in1k/epoch_400.pth'
# mmpretrain's LayerNorm2d (channel LayerNorm), named with its scope from
# this mmdet config.
norm_cfg = dict(type='mmpretrain.LN2d', eps=1e-6, requires_grad=True)

model = dict(
    data_preprocessor=dict(
        pad_size_divisor=32,
        batch_augments=[
            dict(type='BatchFixedSizePad', size=(1024, 1024), pad_mask=True)
        ]),
    backbone=dict(
        _delete_=True,
        type='mmpretrain.NoiseMIMViTDet',
        arch='b',
        img_size=1024,
        patch_size=16,
        drop_path_rate=0.1,
        window_size=14,
        global_attn_indexes=(2, 5, 8, 11),
        init_cfg=dict(
            type='StrictPretrained',
            checkpoint=pretrained,
            prefix='backbone.',
            unused_keys=['cls_token'])),
    neck=dict(
        _delete_=True,
        type='NoiseMIMSimpleFPN',
        backbone_channel=768,
        in_channels=[192, 384, 768, 768],
        out_channels=256,
        num_outs=5,
        norm_cfg=norm_cfg),
    rpn_head=dict(num_convs=2),
    roi_head=dict(
        bbox_head=dict(
            type='Shared4Conv1FCBBoxHead',
            conv_out_channels=256,
            norm_cfg=norm_cfg),
        mask_head=dict(norm_cfg=norm_cfg)))
