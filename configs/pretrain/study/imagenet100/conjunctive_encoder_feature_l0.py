# NoiseMIM, ViT-S/16, feature noise entering block 0 (the patch embeddings).
_base_ = ['./_base_/conjunctive_encoder.py']
study_method = 'NoiseMIM, feature noise at block 0'
model = dict(backbone=dict(noise_layer=0))
