from .noisemim_vit import NoiseMIMViT

__all__ = ['NoiseMIMViT']
