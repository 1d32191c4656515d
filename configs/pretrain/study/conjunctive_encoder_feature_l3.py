# Conjunctive, encoder-style, feature noise entering block 3 (0: embeddings).
_base_ = ['./_base_/conjunctive_encoder.py']
study_method = 'NoiseMIM, feature noise at block 3'
model = dict(backbone=dict(noise_layer=3))
