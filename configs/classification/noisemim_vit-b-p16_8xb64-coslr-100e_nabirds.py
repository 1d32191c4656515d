# Fine-tune NoiseMIM ViT-B/16 on NABirds (555 classes).
# Data: data/nabirds/: images/, images.txt, image_class_labels.txt,
#   train_test_split.txt, classes.txt (NABirds, the official release)
#   bash tools/dist_train.sh \
#       configs/classification/noisemim_vit-b-p16_8xb64-coslr-100e_nabirds.py 8 \
#       --cfg-options model.backbone.init_cfg.checkpoint=PRETRAIN.pth
_base_ = ['./_base_/finegrained_vit-b-p16_8xb64-coslr-100e.py']
data_preprocessor = dict(num_classes=555)
model = dict(head=dict(num_classes=555))
train_dataloader = dict(
    dataset=dict(type='NABirds', data_root='data/nabirds', split='train'))
val_dataloader = dict(
    dataset=dict(type='NABirds', data_root='data/nabirds', split='test'))
test_dataloader = val_dataloader
