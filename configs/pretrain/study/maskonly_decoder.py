# Mask only, decoder-style: mmpretrain's MAE. The reference without noise.
_base_ = ['./_base_/mae_decoder.py']
study_method = 'MAE'
