# Conjunctive, encoder-style, feature noise entering block 1 (0: embeddings).
_base_ = ['./_base_/conjunctive_encoder.py']
study_method = 'NoiseMIM, feature noise at block 1'
model = dict(backbone=dict(noise_layer=1))
