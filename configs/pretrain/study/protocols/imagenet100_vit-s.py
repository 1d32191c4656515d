# The GPU-scale preset: ViT-S/16 cells (configs/pretrain/study/imagenet100/)
# pre-trained for 200 epochs on an ImageNet-100-style folder, probed on its
# train/val splits. NOT RUN in this project (no GPU, no ImageNet here).
#
# Data: data/imagenet100/{train,val}/<class>/*.JPEG (ImageNet layout, the 100
# classes of CMC's ImageNet-100 list, or any ImageNet-layout subset).
custom_imports = dict(imports=['noisemim.study'], allow_failed_imports=False)
description = (
    'ViT-S/16 at 224 px pre-trained on data/imagenet100/train (200 epochs at '
    'batch 256); probe: its train split, validated on its val split.')
cells = [
    'imagenet100/maskonly_decoder', 'imagenet100/maskonly_encoder',
    'imagenet100/conjunctive_encoder_feature_l2',
    'imagenet100/substitutive_decoder_pixel',
    'imagenet100/conjunctive_decoder_pixel'
]
principle_cells = [
    'imagenet100/conjunctive_encoder_feature_l2_nodisruption',
    'imagenet100/conjunctive_encoder_feature_l2_hard',
    'imagenet100/conjunctive_encoder_pixel',
    'imagenet100/conjunctive_encoder_feature_l0',
    'imagenet100/conjunctive_encoder_feature_l2_target_feature',
    'imagenet100/conjunctive_encoder_feature_l2_target_noise',
    'imagenet100/conjunctive_encoder_feature_l2_nodenoise',
    'imagenet100/conjunctive_encoder_feature_l2_highnoise'
]
# 200 epochs x 126,689 images / batch 256.
iters = 99000
seeds = [0, 1, 2]
random_init = True
data_root = 'data/imagenet100/'
probe_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='ResizeEdge',
        scale=256,
        edge='short',
        backend='pillow',
        interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs')
]
probe = dict(
    train=dict(
        type='CustomDataset',
        data_root=data_root,
        data_prefix='train',
        pipeline=probe_pipeline),
    val=dict(
        type='CustomDataset',
        data_root=data_root,
        data_prefix='val',
        pipeline=probe_pipeline),
    knn_k=20,
    blocks=[5, 8],
    batch_size=256,
    num_workers=8,
    cache=False)
analysis_images = 256
