# NoiseMIM, ViT-S/16, feature noise at block 2, denoising target: the clean
# hidden states of S (layer-normalised) instead of their pixels.
_base_ = ['./conjunctive_encoder_feature_l2.py']
study_method = 'NoiseMIM, denoising target: clean features'
model = dict(
    denoise_target='feature', denoise_head=dict(out_channels=384))
