# UperNet on ADE20K (150 classes) at 512x512 with a NoiseMIM ViT-B/16,
# 160k iterations x 16 images (8 GPUs x 2). MAE reference (MAE paper, mmseg):
# 48.1 mIoU (single scale).
#   bash tools/dist_train.sh \
#       configs/segmentation/upernet_noisemim-vit-b_8xb2-amp-160k_ade20k-512x512.py 8 \
#       --cfg-options model.backbone.init_cfg.checkpoint=/path/to/noisemim_vit-b.pth
_base_ = [
    './_base_/models/upernet_noisemim-vit-b.py',
    'mmseg::_base_/datasets/ade20k.py',
    './_base_/schedules/adamw_layer-decay_160k.py',
    './_base_/default_runtime.py',
]
train_dataloader = dict(batch_size=2)
val_dataloader = dict(batch_size=1)
test_dataloader = val_dataloader
