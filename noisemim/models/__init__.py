from .algorithms import *  # noqa: F401,F403
from .backbones import *  # noqa: F401,F403
from .corruption import Corruption, CorruptionSampler, cosine_alpha_bar
from .data_preprocessor import NoiseMIMDataPreprocessor
from .heads import *  # noqa: F401,F403
from .losses import *  # noqa: F401,F403
from .necks import *  # noqa: F401,F403
from .pretrained import (LoadReport, StrictPretrainedInit,
                         init_weights_then_load)

__all__ = ['Corruption', 'CorruptionSampler', 'cosine_alpha_bar',
           'NoiseMIMDataPreprocessor',
           'LoadReport', 'StrictPretrainedInit', 'init_weights_then_load']
