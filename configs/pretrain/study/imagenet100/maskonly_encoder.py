# SimMIM-style, ViT-S/16: NoiseMIM with noise_ratio=0 (mask tokens in the
# encoder, linear head). The reference without noise.
_base_ = ['./_base_/conjunctive_encoder.py']
study_method = 'SimMIM-style'
model = dict(backbone=dict(noise_ratio=0.), denoise_head=None, disruption=None)
