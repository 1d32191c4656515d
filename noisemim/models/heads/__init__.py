from .morphing_head import MorphingHead
from .reconstruction_head import TokenRegressionHead

__all__ = ['MorphingHead', 'TokenRegressionHead']
