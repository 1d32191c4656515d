# NoiseMIM, ViT-S/16, feature noise at block 2, without the disruption loss.
_base_ = ['./conjunctive_encoder_feature_l2.py']
study_method = 'NoiseMIM without the disruption loss'
model = dict(disruption=None)
