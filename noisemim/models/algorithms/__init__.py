from .noisemim import NoiseMIM

__all__ = ['NoiseMIM']
