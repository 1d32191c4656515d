# ViTDet-style Mask R-CNN on COCO 2017 with a NoiseMIM ViT-B/16: 1024 px,
# large-scale jitter, 100 epochs (8 GPUs x 8 images). MAE reference (mmdet
# ViTDet): 51.6 box AP / 45.7 mask AP.
#   bash tools/dist_train.sh configs/detection/mask-rcnn_noisemim-vit-b_simplefpn_lsj-100e_coco.py 8
_base_ = [
    './_base_/models/mask-rcnn_noisemim-vitdet-b_simplefpn.py',
    './_base_/datasets/coco-instance_lsj-1024.py',
    './_base_/schedules/lsj-100e.py',
    './_base_/default_runtime.py',
]
