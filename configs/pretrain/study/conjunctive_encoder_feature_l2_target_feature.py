# NoiseMIM (feature noise at block 2) whose denoise head restores the clean
# hidden states of S where the noise entered (layer-normalised), not their
# pixels. Paper A does not state its denoising target (docs/method.md).
_base_ = ['./conjunctive_encoder_feature_l2.py']
study_method = 'NoiseMIM, denoising target: clean features'
model = dict(
    denoise_target='feature', denoise_head=dict(out_channels=64))
