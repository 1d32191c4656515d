# Conjunctive, decoder-style, pixel noise: MaskDiT-style. The whole image is
# noised, masked MAE-style; the encoder (with a t embedding) sees the visible
# noised patches; the decoder denoises them and reconstructs the masked ones.
_base_ = ['./_base_/mae_decoder.py']
study_method = 'MaskDiT-style'
model = dict(
    type='MaskDiT', backbone=dict(type='MaskDiTViT'), t_range=(0., 1.))
