from .dtm import DTM
from .diffmae import DiffMAE
from .maskdit import MaskDiT
from .noisemim import NoiseMIM
from .substitutive import SubstitutiveNoiseMIM
from .noisemim_dtm import NoiseMIMDTM

__all__ = ['DTM', 'NoiseMIM', 'NoiseMIMDTM', 'DiffMAE', 'MaskDiT',
           'SubstitutiveNoiseMIM']
