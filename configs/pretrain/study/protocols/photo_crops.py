# The default CPU protocol: "which photograph is this grey crop from?"
#
# Each of scikit-image's photographs (the stereo duplicate left out) is cut in
# two: pre-training and the probe's training crops use the left 70 % of its
# columns, the probe's validation crops come from the held-out right 30 %. The
# task is in-domain (the same photographs' kind of content) and asks whether
# the frozen features recognise unseen parts of a scene. Images are made grey
# (3 equal channels) for pre-training and probing: in colour, an untrained
# encoder already reads each photograph's palette (72 % k-NN); in grey it is
# left at 50 %, and what pre-training adds (texture, structure) shows. The
# protocol was chosen on MAE vs. the untrained encoder only (docs/study.md).
custom_imports = dict(imports=['noisemim.study'], allow_failed_imports=False)
description = (
    'Pre-training on the left 70 % of each of scikit-image\'s photographs '
    '(random resized crops, grey); probe: which photograph a grey square crop '
    'comes from, trained on crops of the left 70 %, validated on crops of the '
    'held-out right 30 %.')
cells = [
    'maskonly_decoder', 'maskonly_encoder', 'conjunctive_encoder_feature_l2',
    'substitutive_decoder_pixel', 'conjunctive_decoder_pixel'
]
# Paper A's principles, one comparison each with conjunctive_encoder_feature_l2
# (added by --principles): (1) without the disentanglement, or a hard one;
# (2) pixel instead of feature noise, and noise at block 0 instead of 2;
# the denoising target, which paper A does not state (clean features or the
# noise instead of clean pixels), the noise kept without its denoising loss,
# and high noise levels only (docs/method.md).
principle_cells = [
    'conjunctive_encoder_feature_l2_nodisruption',
    'conjunctive_encoder_feature_l2_hard', 'conjunctive_encoder_pixel',
    'conjunctive_encoder_feature_l0',
    'conjunctive_encoder_feature_l2_target_feature',
    'conjunctive_encoder_feature_l2_target_noise',
    'conjunctive_encoder_feature_l2_nodenoise',
    'conjunctive_encoder_feature_l2_highnoise'
]
iters = 1200
seeds = [0, 1, 2]
random_init = True
img_size = 64
photos = dict(type='PhotoCrops', holdout=0.3, crop_scale=(0.15, 0.3))
grey = dict(type='RandomGrayscale', prob=1.0, keep_channels=True)
pretrain_pipeline = [
    dict(
        type='RandomResizedCrop',
        scale=img_size,
        crop_ratio_range=(0.08, 1.0),
        backend='pillow',
        interpolation='bicubic'),
    grey,
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackInputs')
]
pretrain_dataset = dict(
    photos, split='pretrain', repeat=4, pipeline=pretrain_pipeline)
probe_pipeline = [
    dict(
        type='Resize',
        scale=(img_size, img_size),
        backend='pillow',
        interpolation='bicubic'),
    grey,
    dict(type='PackInputs')
]
probe = dict(
    train=dict(
        photos, split='train', num_per_class=64, pipeline=probe_pipeline),
    val=dict(photos, split='val', num_per_class=64, pipeline=probe_pipeline),
    knn_k=10,
    blocks=[1])
analysis_images = 64
