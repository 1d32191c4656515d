# DiffMAE, ViT-S/16: the decoder gets the noised masked patches.
_base_ = ['./_base_/mae_decoder.py']
study_method = 'DiffMAE'
model = dict(
    type='DiffMAE',
    neck=dict(type='DiffMAEDecoder', time_embed=True),
    t_range=(0., 1.))
