# The study's first protocol, kept as a preset: pre-training on scikit-image's
# photographs (the cells' own data), probing on scikit-learn's 8x8 handwritten
# digits. Raw pixels give about 96 % linear accuracy on the digits and the
# untrained encoder beats every pre-trained cell on it, so it cannot show what
# pre-training adds; photo_crops.py is the default protocol.
custom_imports = dict(imports=['noisemim.study'], allow_failed_imports=False)
description = ('Pre-training on scikit-image\'s photographs (random resized '
               'crops); probe: scikit-learn\'s 1,797 handwritten digits, '
               'resized to the model input, stratified 50/50 split.')
cells = [
    'maskonly_decoder', 'maskonly_encoder', 'conjunctive_encoder_feature_l2',
    'substitutive_decoder_pixel'
]
iters = 100
seeds = [0, 1, 2]
random_init = True
img_size = 64
probe_pipeline = [
    dict(type='Resize', scale=(img_size, img_size), interpolation='bilinear'),
    dict(type='PackInputs')
]
probe = dict(
    train=dict(type='SklearnDigits', split='train', pipeline=probe_pipeline),
    val=dict(type='SklearnDigits', split='val', pipeline=probe_pipeline),
    knn_k=10)
analysis_images = 64
