# NoiseMIM, ViT-S/16, feature noise at block 2, high noise levels only
# (t ~ U[0.95, 1]): nothing of a noised token's own content to pass through.
_base_ = ['./conjunctive_encoder_feature_l2.py']
study_method = 'NoiseMIM, high noise only (t in [0.95, 1])'
model = dict(backbone=dict(t_range=(0.95, 1.0)))
