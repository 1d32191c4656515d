# Substitutive, encoder-style, pixel noise: the patches of M are noised in
# pixels (instead of masked) and restored by the encoder.
_base_ = ['./_base_/substitutive_encoder.py']
study_method = 'substitutive encoder, pixel noise'
model = dict(backbone=dict(noise_layer='pixel'))
