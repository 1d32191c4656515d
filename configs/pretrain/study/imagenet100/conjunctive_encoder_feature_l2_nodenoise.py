# NoiseMIM, ViT-S/16, feature noise at block 2, without the denoising loss
# (S still noised in the forward pass; the denoise head's loss weighs 0).
_base_ = ['./conjunctive_encoder_feature_l2.py']
study_method = 'NoiseMIM without the denoising loss (noise kept)'
model = dict(denoise_head=dict(loss_weight=0.))
