# Fine-tune NoiseMIM ViT-B/16 on ImageNet-1K: 100 epochs (20 warm-up), 8 GPUs
# x 128, layer decay 0.65, drop path 0.1, RandAugment (9, 0.5), Mixup 0.8,
# CutMix 1.0, label smoothing 0.1, random erasing 0.25.
#   bash tools/dist_train.sh \
#       configs/classification/noisemim_vit-b-p16_8xb128-coslr-100e_in1k.py 8 \
#       --cfg-options model.backbone.init_cfg.checkpoint=PRETRAIN.pth
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py',
    './_base_/models/noisemim_vit-b-p16_finetune.py',
    './_base_/schedules/adamw_layer-decay-0.65_coslr-100e.py',
    '../_base_/default_runtime.py',
]
train_dataloader = dict(batch_size=128)
val_dataloader = dict(batch_size=128)
test_dataloader = val_dataloader
