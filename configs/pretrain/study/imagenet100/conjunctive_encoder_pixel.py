# NoiseMIM, ViT-S/16, with the noised set S noised in pixels.
_base_ = ['./_base_/conjunctive_encoder.py']
study_method = 'NoiseMIM, pixel noise'
model = dict(backbone=dict(noise_layer='pixel'))
