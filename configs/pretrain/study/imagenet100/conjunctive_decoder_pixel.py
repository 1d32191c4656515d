# MaskDiT-style, ViT-S/16: the whole image noised, masked MAE-style.
_base_ = ['./_base_/mae_decoder.py']
study_method = 'MaskDiT-style'
model = dict(
    type='MaskDiT', backbone=dict(type='MaskDiTViT'), t_range=(0., 1.))
