# Fine-grained fine-tuning of NoiseMIM ViT-B/16 (our choice; the paper gives
# no protocol): the ImageNet fine-tuning recipe (mmpretrain's 224 px pipeline
# with RandAugment and random erasing 0.25; Mixup, CutMix, label smoothing,
# drop path 0.1, layer decay 0.65, 100 epochs with 20 of warm-up) at 8 GPUs x
# 64 images and 5e-4 per 256 images. Each config sets the dataset and the
# number of classes.
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py',
    './models/noisemim_vit-b-p16_finetune.py',
    './schedules/adamw_layer-decay-0.65_coslr-100e.py',
    '../../_base_/default_runtime.py',
]
train_dataloader = dict(batch_size=64, num_workers=8)
val_dataloader = dict(batch_size=64, num_workers=8)
test_dataloader = val_dataloader
optim_wrapper = dict(optimizer=dict(lr=5e-4 * 512 / 256))
auto_scale_lr = dict(base_batch_size=512)
