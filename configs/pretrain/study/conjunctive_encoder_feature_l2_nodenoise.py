# NoiseMIM (feature noise at block 2) without the denoising loss: S is still
# noised in the forward pass (so masked tokens see noisy neighbours), but the
# denoise head's loss weighs 0. The run that located the collapse of the
# blocks below the noise layer in the denoising loss (docs/method.md).
_base_ = ['./conjunctive_encoder_feature_l2.py']
study_method = 'NoiseMIM without the denoising loss (noise kept)'
model = dict(denoise_head=dict(loss_weight=0.))
