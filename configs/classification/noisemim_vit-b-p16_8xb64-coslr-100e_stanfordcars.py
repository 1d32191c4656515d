# Fine-tune NoiseMIM ViT-B/16 on Stanford Cars (196 classes).
# Data: data/stanfordcars/: cars_annos.mat + car_ims/, or cars_train/,
#   cars_test/, devkit/ (mmpretrain StanfordCars)
#   bash tools/dist_train.sh \
#       configs/classification/noisemim_vit-b-p16_8xb64-coslr-100e_stanfordcars.py 8 \
#       --cfg-options model.backbone.init_cfg.checkpoint=PRETRAIN.pth
_base_ = ['./_base_/finegrained_vit-b-p16_8xb64-coslr-100e.py']
data_preprocessor = dict(num_classes=196)
model = dict(head=dict(num_classes=196))
train_dataloader = dict(
    dataset=dict(
        type='StanfordCars', data_root='data/stanfordcars', split='train'))
val_dataloader = dict(
    dataset=dict(
        type='StanfordCars', data_root='data/stanfordcars', split='test'))
test_dataloader = val_dataloader
