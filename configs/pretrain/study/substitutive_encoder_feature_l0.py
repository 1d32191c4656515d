# Substitutive, encoder-style, feature noise entering block 0 (0: embeddings):
# the tokens of M are noised there instead of masked.
_base_ = ['./_base_/substitutive_encoder.py']
study_method = 'substitutive encoder, feature noise at block 0'
model = dict(backbone=dict(noise_layer=0))
