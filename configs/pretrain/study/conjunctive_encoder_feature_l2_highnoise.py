# NoiseMIM (feature noise at block 2, pixel targets) with only high noise
# levels, t ~ U[0.95, 1] (sqrt(alpha_bar) <= 0.08): a noised token keeps almost
# nothing of itself, so restoring it cannot be done by passing its own clean
# content through the blocks below the noise layer (docs/method.md, run a3).
_base_ = ['./conjunctive_encoder_feature_l2.py']
study_method = 'NoiseMIM, high noise only (t in [0.95, 1])'
model = dict(backbone=dict(t_range=(0.95, 1.0)))
