# Fine-tune NoiseMIM ViT-B/16 on FGVC-Aircraft (100 variants).
# Data: data/fgvc-aircraft-2013b/data/: images/, variants.txt,
#   images_variant_{trainval,test}.txt (mmpretrain FGVCAircraft)
#   bash tools/dist_train.sh \
#       configs/classification/noisemim_vit-b-p16_8xb64-coslr-100e_fgvc-aircraft.py 8 \
#       --cfg-options model.backbone.init_cfg.checkpoint=PRETRAIN.pth
_base_ = ['./_base_/finegrained_vit-b-p16_8xb64-coslr-100e.py']
data_preprocessor = dict(num_classes=100)
model = dict(head=dict(num_classes=100))
train_dataloader = dict(
    dataset=dict(
        type='FGVCAircraft',
        data_root='data/fgvc-aircraft-2013b',
        split='trainval'))
val_dataloader = dict(
    dataset=dict(
        type='FGVCAircraft',
        data_root='data/fgvc-aircraft-2013b',
        split='test'))
test_dataloader = val_dataloader
