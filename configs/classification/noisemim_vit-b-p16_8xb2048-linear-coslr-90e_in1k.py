# Linear probing of NoiseMIM ViT-B/16 on ImageNet-1K (MAE's protocol): frozen
# backbone, BatchNorm + linear head, LARS lr 6.4 at batch 16384 (8 GPUs x
# 2048), 90 epochs (10 warm-up). Features: the average of the final
# normalised patch tokens (our choice: NoiseMIM trains no class-token
# objective), followed by a frozen, identity ln2 (new key). The backbone is
# mmpretrain's stock VisionTransformer, all of it frozen.
#   bash tools/dist_train.sh \
#       configs/classification/noisemim_vit-b-p16_8xb2048-linear-coslr-90e_in1k.py 8 \
#       --cfg-options model.backbone.init_cfg.checkpoint=PRETRAIN.pth
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs32_pil_resize.py',
    '../_base_/default_runtime.py',
]
train_dataloader = dict(batch_size=2048, drop_last=True)
val_dataloader = dict(drop_last=False)
test_dataloader = dict(drop_last=False)

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='VisionTransformer',
        arch='b',
        img_size=224,
        patch_size=16,
        frozen_stages=12,
        out_type='avg_featmap',
        final_norm=True,
        init_cfg=dict(
            type='StrictPretrained',
            checkpoint='work_dirs/noisemim_vit-base-p16_8xb512-amp-coslr-400e_in1k/epoch_400.pth',
            prefix='backbone.',
            new_keys=('ln2.*', ))),
    neck=dict(type='ClsBatchNormNeck', input_features=768),
    head=dict(
        type='VisionTransformerClsHead',
        num_classes=1000,
        in_channels=768,
        loss=dict(type='CrossEntropyLoss'),
        init_cfg=[dict(type='TruncNormal', layer='Linear', std=0.01)]))
optim_wrapper = dict(
    type='AmpOptimWrapper',
    optimizer=dict(type='LARS', lr=6.4, weight_decay=0.0, momentum=0.9))

param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-4,
        by_epoch=True,
        begin=0,
        end=10,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        T_max=80,
        by_epoch=True,
        begin=10,
        end=90,
        eta_min=0.0,
        convert_to_iter_based=True)
]

train_cfg = dict(by_epoch=True, max_epochs=90, val_interval=1)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=16384)
default_hooks = dict(logger=dict(interval=10))
