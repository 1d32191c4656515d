# Smoke run of Mask R-CNN on COCO on a CPU, in a minute:
# configs/detection/mask-rcnn_noisemim-vit-b_simplefpn_lsj-25e_coco.py as it is
# (ViTDet-style windowed ViT loaded by StrictPretrained, simple feature
# pyramid, LN heads, large-scale jitter, layer-wise lr decay, mmdet's
# CocoMetric: bbox and segm mAP on val2017), with the tiny ViT of
# configs/smoke/pretrain_in1k.py, loaded from that run, thin heads (still
# COCO's 80 classes), 128 px instead of 1024 px and 6 iterations on the tiny
# COCO, whose files list the 80 categories (docs/smoke.md):
#   python tools/misc/make_tiny_data.py coco
#   python tools/train.py configs/smoke/mask-rcnn_coco.py
_base_ = '../detection/mask-rcnn_noisemim-vit-b_simplefpn_lsj-25e_coco.py'

pretrained = 'work_dirs/pretrain_in1k/epoch_2.pth'
image_size = (128, 128)
channels = 32  # of the pyramid and the heads (256 in the real config)
model = dict(
    data_preprocessor=dict(batch_augments=[
        dict(type='BatchFixedSizePad', size=image_size, pad_mask=True)
    ]),
    backbone=dict(
        arch=dict(
            _delete_=True,
            embed_dims=64,
            num_layers=4,
            num_heads=4,
            feedforward_channels=256),
        img_size=image_size[0],
        window_size=4,  # the 8 x 8 grid of 128 px in 2 x 2 windows
        global_attn_indexes=(1, 3),
        init_cfg=dict(checkpoint=pretrained)),
    neck=dict(
        backbone_channel=64, in_channels=[16, 32, 64, 64],
        out_channels=channels),
    rpn_head=dict(in_channels=channels, feat_channels=channels),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=channels),
        bbox_head=dict(
            in_channels=channels, conv_out_channels=channels,
            fc_out_channels=64),
        mask_roi_extractor=dict(out_channels=channels),
        mask_head=dict(in_channels=channels, conv_out_channels=channels)),
    train_cfg=dict(
        rpn=dict(sampler=dict(num=64)),
        rpn_proposal=dict(nms_pre=200, max_per_img=100),
        rcnn=dict(sampler=dict(num=64))),
    test_cfg=dict(
        rpn=dict(nms_pre=200, max_per_img=100),
        # every box kept: after 6 steps no score reaches the real 0.05
        rcnn=dict(score_thr=0., max_per_img=20)))

# The data set's fields that derive from data_root and the image size are
# all set here: a data_root given alone would leave the evaluator on the
# old annotation file (it is a full path, read when the config is read).
data_root = 'data/tiny/coco/'
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='RandomResize',
        scale=image_size,
        ratio_range=(0.1, 2.0),
        keep_ratio=True),
    dict(
        type='RandomCrop',
        crop_type='absolute_range',
        crop_size=image_size,
        recompute_bbox=True,
        allow_negative_crop=True),
    dict(type='FilterAnnotations', min_gt_bbox_wh=(1e-2, 1e-2)),
    dict(type='Pad', size=image_size, pad_val=dict(img=(114, 114, 114))),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='Pad', size=image_size, pad_val=dict(img=(114, 114, 114))),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor'))
]
loader = dict(batch_size=2, num_workers=0, persistent_workers=False)
train_dataloader = dict(
    **loader,
    dataset=dict(
        data_root=data_root,
        filter_cfg=dict(min_size=8),
        pipeline=train_pipeline))
val_dataloader = dict(
    **loader,
    dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator

# The schedule, shortened: every field derived from max_iters is set here
# (warm-up, the two lr steps at 8/9 and 26/27, validation and a checkpoint
# at the end).
max_iters = 6
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=2),
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_iters,
        by_epoch=False,
        milestones=[round(max_iters * 8 / 9), round(max_iters * 26 / 27)],
        gamma=0.1)
]
train_cfg = dict(
    max_iters=max_iters, val_interval=max_iters, dynamic_intervals=None)
default_hooks = dict(
    logger=dict(interval=1), checkpoint=dict(interval=max_iters))
log_processor = dict(window_size=1)
