from .algorithms import *  # noqa: F401,F403
from .backbones import *  # noqa: F401,F403
from .corruption import Corruption, CorruptionSampler, cosine_alpha_bar
from .heads import *  # noqa: F401,F403
from .losses import *  # noqa: F401,F403

__all__ = ['Corruption', 'CorruptionSampler', 'cosine_alpha_bar']
