# The same model and data as the 100-epoch config, on a 25-epoch schedule
# (46,094 iterations x 64 images), for quicker comparisons of pre-trainings.
#   bash tools/dist_train.sh configs/detection/mask-rcnn_noisemim-vit-b_simplefpn_lsj-25e_coco.py 8
_base_ = [
    './_base_/models/mask-rcnn_noisemim-vitdet-b_simplefpn.py',
    './_base_/datasets/coco-instance_lsj-1024.py',
    './_base_/schedules/lsj-25e.py',
    './_base_/default_runtime.py',
]
