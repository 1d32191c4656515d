# NoiseMIM, ViT-S/16, feature noise at block 2, hard disentanglement
# (attention between M and S masked out instead of the disruption loss).
_base_ = ['./conjunctive_encoder_feature_l2.py']
study_method = 'NoiseMIM, hard disentanglement'
model = dict(disruption=dict(type='DisruptionLoss', mode='hard'))
