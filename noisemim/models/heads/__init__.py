from .reconstruction_head import TokenRegressionHead

__all__ = ['TokenRegressionHead']
