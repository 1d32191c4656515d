# NoiseMIM (feature noise at block 2) whose denoise head predicts the noise
# eps added to S, not their clean pixels. Paper A does not state its
# denoising target (docs/method.md).
_base_ = ['./conjunctive_encoder_feature_l2.py']
study_method = 'NoiseMIM, denoising target: the noise'
model = dict(denoise_target='noise', denoise_head=dict(out_channels=64))
