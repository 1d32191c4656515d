# Substitutive, decoder-style, pixel noise: DiffMAE. MAE's encoder on the
# visible patches; the decoder gets the noised masked patches (at level t)
# instead of mask tokens and predicts their clean pixels.
_base_ = ['./_base_/mae_decoder.py']
study_method = 'DiffMAE'
model = dict(
    type='DiffMAE',
    neck=dict(type='DiffMAEDecoder', time_embed=True),
    t_range=(0., 1.))
