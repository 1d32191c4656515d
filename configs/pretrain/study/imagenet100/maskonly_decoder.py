# MAE (mmpretrain's), ViT-S/16: the reference without noise.
_base_ = ['./_base_/mae_decoder.py']
study_method = 'MAE'
