# ImageClassifier over the NoiseMIM ViT-B/16 for end-to-end fine-tuning (the
# MAE recipe): average-pooled patch tokens, drop path 0.1, label smoothing
# 0.1, Mixup 0.8 and CutMix 1.0. The backbone is mmpretrain's stock
# VisionTransformer (the NoiseMIM encoder without its pre-training-only mask
# token, which StrictPretrained drops); it keeps pre-training's final norm
# (ln1) and adds a norm after pooling (ln2, new; the only key not loaded).
# Point init_cfg.checkpoint at a NoiseMIM pre-training checkpoint or at a
# published backbone file (tools/model_converters/publish_checkpoint.py):
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='VisionTransformer',
        arch='b',
        img_size=224,
        patch_size=16,
        drop_path_rate=0.1,
        out_type='avg_featmap',
        final_norm=True,
        init_cfg=dict(
            type='StrictPretrained',
            checkpoint='work_dirs/noisemim_vit-base-p16_8xb512-amp-coslr-400e_in1k/epoch_400.pth',
            prefix='backbone.',
            new_keys=('ln2.*', ))),
    neck=None,
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=768,
        loss=dict(
            type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        init_cfg=[dict(type='TruncNormal', layer='Linear', std=2e-5)]),
    train_cfg=dict(augments=[
        dict(type='Mixup', alpha=0.8),
        dict(type='CutMix', alpha=1.0)
    ]))
