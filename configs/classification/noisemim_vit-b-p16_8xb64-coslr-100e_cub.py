# Fine-tune NoiseMIM ViT-B/16 on CUB-200-2011 (200 classes).
# Data: data/CUB_200_2011/: images/, images.txt, image_class_labels.txt,
#   train_test_split.txt (mmpretrain CUB)
#   bash tools/dist_train.sh \
#       configs/classification/noisemim_vit-b-p16_8xb64-coslr-100e_cub.py 8 \
#       --cfg-options model.backbone.init_cfg.checkpoint=PRETRAIN.pth
_base_ = ['./_base_/finegrained_vit-b-p16_8xb64-coslr-100e.py']
data_preprocessor = dict(num_classes=200)
model = dict(head=dict(num_classes=200))
train_dataloader = dict(
    dataset=dict(type='CUB', data_root='data/CUB_200_2011', split='train'))
val_dataloader = dict(
    dataset=dict(type='CUB', data_root='data/CUB_200_2011', split='test'))
test_dataloader = val_dataloader
