# NoiseMIM (feature noise at block 2) without the disentanglement: no
# disruption loss, so masked and noised tokens attend to each other freely.
# Paper A's principle 3 ablated.
_base_ = ['./conjunctive_encoder_feature_l2.py']
study_method = 'NoiseMIM without the disruption loss'
model = dict(disruption=None)
