# Fine-tune NoiseMIM ViT-B/16 on iNaturalist 2017 (5089 classes).
# Data: data/inat2017/: train2017.json, val2017.json, train_val_images/
#   (INaturalist, the official JSON)
#   bash tools/dist_train.sh \
#       configs/classification/noisemim_vit-b-p16_8xb64-coslr-100e_inat2017.py 8 \
#       --cfg-options model.backbone.init_cfg.checkpoint=PRETRAIN.pth
_base_ = ['./_base_/finegrained_vit-b-p16_8xb64-coslr-100e.py']
data_preprocessor = dict(num_classes=5089)
model = dict(head=dict(num_classes=5089))
train_dataloader = dict(
    dataset=dict(
        type='INaturalist', data_root='data/inat2017', split='train',
        year=2017))
val_dataloader = dict(
    dataset=dict(
        type='INaturalist', data_root='data/inat2017', split='val',
        year=2017))
test_dataloader = val_dataloader
