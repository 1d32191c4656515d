# NoiseMIM, ViT-S/16, feature noise at block 2, denoising target: the noise
# eps added to S instead of their clean pixels.
_base_ = ['./conjunctive_encoder_feature_l2.py']
study_method = 'NoiseMIM, denoising target: the noise'
model = dict(denoise_target='noise', denoise_head=dict(out_channels=384))
