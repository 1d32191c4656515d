# UperNet on a NoiseMIM ViT-B/16 (mmseg's MAE recipe), the backbone being
# mmpretrain's stock VisionTransformer (StrictPretrained drops the
# pre-training-only mask token): features of blocks
# 3, 5, 7 and 11 as 1/16 maps, Feature2Pyramid to strides 4, 8, 16 and 32,
# UPerHead + an FCN auxiliary head on the 1/16 level. The 224 px position
# embedding is resized to the 32x32 grid of 512 px when the weights load.
_base_ = 'mmseg::_base_/models/upernet_mae.py'

# A NoiseMIM pre-training checkpoint
# (configs/pretrain/noisemim_vit-base-p16_8xb512-amp-coslr-400e_in1k.py) or
# a published backbone file (tools/model_converters/).
pretrained = 'work_dirs/noisemim_vit-base-p16_8xb512-amp-coslr-400e_in1k/epoch_400.pth'
model = dict(
    data_preprocessor=dict(size=(512, 512)),
    backbone=dict(
        _delete_=True,
        type='mmpretrain.VisionTransformer',
        arch='b',
        img_size=512,
        patch_size=16,
        out_indices=[3, 5, 7, 11],
        out_type='featmap',
        drop_path_rate=0.1,
        init_cfg=dict(
            type='StrictPretrained', checkpoint=pretrained,
            prefix='backbone.')),
    neck=dict(embed_dim=768, rescales=[4, 2, 1, 0.5]),
    decode_head=dict(
        in_channels=[768, 768, 768, 768], channels=768, num_classes=150),
    auxiliary_head=dict(in_channels=768, num_classes=150),
    test_cfg=dict(mode='slide', crop_size=(512, 512), stride=(341, 341)))
