# NoiseMIM (feature noise at block 2) with hard disentanglement: attention
# between masked and noised tokens is masked out in the noised blocks instead
# of discouraged by the disruption loss.
_base_ = ['./conjunctive_encoder_feature_l2.py']
study_method = 'NoiseMIM, hard disentanglement'
model = dict(disruption=dict(type='DisruptionLoss', mode='hard'))
