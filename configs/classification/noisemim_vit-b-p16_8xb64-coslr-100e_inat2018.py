# Fine-tune NoiseMIM ViT-B/16 on iNaturalist 2018 (8142 classes).
# Data: data/inat2018/: train2018.json, val2018.json, train_val2018/
#   (INaturalist, the official JSON)
#   bash tools/dist_train.sh \
#       configs/classification/noisemim_vit-b-p16_8xb64-coslr-100e_inat2018.py 8 \
#       --cfg-options model.backbone.init_cfg.checkpoint=PRETRAIN.pth
_base_ = ['./_base_/finegrained_vit-b-p16_8xb64-coslr-100e.py']
data_preprocessor = dict(num_classes=8142)
model = dict(head=dict(num_classes=8142))
train_dataloader = dict(
    dataset=dict(
        type='INaturalist', data_root='data/inat2018', split='train',
        year=2018))
val_dataloader = dict(
    dataset=dict(
        type='INaturalist', data_root='data/inat2018', split='val',
        year=2018))
test_dataloader = val_dataloader
