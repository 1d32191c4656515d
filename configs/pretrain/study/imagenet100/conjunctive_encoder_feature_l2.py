# NoiseMIM, ViT-S/16: feature noise entering block 2 (paper A's setting).
_base_ = ['./_base_/conjunctive_encoder.py']
study_method = 'NoiseMIM (paper A: feature noise at block 2)'
model = dict(backbone=dict(noise_layer=2))
