from .maskdit_vit import MaskDiTViT
from .noisemim_vit import NoiseMIMViT
from .vitdet import NoiseMIMViTDet

__all__ = ['NoiseMIMViT', 'NoiseMIMViTDet', 'MaskDiTViT']
