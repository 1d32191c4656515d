# ImageNet-1K for pre-training, JPEGs decoded on the GPU: the loader's workers
# only read the files and draw the augmentation (RandomResizedCrop's box from
# the image size, RandomFlip's decision: mmpretrain's and mmcv's own draws);
# DeviceDecodeDataPreprocessor decodes the batch with torchvision's nvJPEG
# decoder, crops, resizes (antialiased bicubic, as Pillow's), flips and
# normalises on the GPU (noisemim/datasets/device_decode.py). The switch: in a
# pre-training config's _base_, this file instead of imagenet_bs512_noisemim.py.
# NOT the default: not yet run on a GPU (docs/gpu.md, "Feeding the GPU").
_base_ = ['./imagenet_bs512_noisemim.py']

data_preprocessor = dict(type='DeviceDecodeDataPreprocessor',
                         interpolation='bicubic')

train_pipeline = [
    dict(type='LoadImageBytes'),
    dict(
        type='RandomResizedCropParams',
        scale=224,
        crop_ratio_range=(0.67, 1.0),
        interpolation='bicubic'),
    dict(type='RandomFlipFlag', prob=0.5),
    dict(type='PackEncodedInputs')
]

train_dataloader = dict(
    # A worker reads and parses ~thousands of files/s (measured per worker
    # on CPU: docs/gpu.md); 6 leave room for slow storage.
    num_workers=6,
    # Files differ in length: a list per batch, not a stacked tensor.
    collate_fn=dict(type='encoded_collate'),
    dataset=dict(pipeline=train_pipeline))
