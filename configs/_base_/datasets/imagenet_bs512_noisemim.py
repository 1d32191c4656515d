# Pre-training images: ImageNet-1K in data/imagenet/ (train/<class>/*.JPEG,
# meta/train.txt read when present) or any other folder of images, with
# tools/train.py --data-root DIR or --cfg-options
# train_dataloader.dataset.data_root=DIR (NoiseMIMImageFolder: noisemim/datasets/
# image_folder.py; no labels used). mmpretrain's ImageNet works too
# (train_dataloader.dataset.dataset_type=ImageNet; needs meta/ or 1000 classes).
dataset_type = 'NoiseMIMImageFolder'
data_root = 'data/imagenet/'
data_preprocessor = dict(
    type='NoiseMIMDataPreprocessor',  # moves only the images
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=True,
    # Asynchronous host-to-device copies of the pinned batches.
    non_blocking=True)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='RandomResizedCrop',
        scale=224,
        crop_ratio_range=(0.67, 1.0),
        backend='pillow',
        interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackInputs')
]

train_dataloader = dict(
    batch_size=512,
    # ~120-200 images/s per worker core (measured: docs/gpu.md, "Feeding the
    # GPU"); ViT-B on an H100 takes ~1,500-2,000/s: 12 workers per GPU, and
    # tools/slurm_train.sh asks 16 CPUs per task.
    num_workers=12,
    persistent_workers=True,
    pin_memory=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    # A broken image is logged and skipped, not the end of a days-long run
    # (noisemim/datasets/skip_bad_samples.py; docs/reliability.md).
    # (flat form: data_root, pipeline, ... stay at train_dataloader.dataset).
    dataset=dict(
        type='SkipBadSamples',
        max_bad=100,
        dataset_type=dataset_type,
        data_root=data_root,
        split='train',
        pipeline=train_pipeline))
