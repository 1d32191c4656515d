"""Necks. ``DiffMAEDecoder`` is in mmpretrain's ``MODELS``; ViTDet's simple
feature pyramid (``NoiseMIMSimpleFPN``, ``simple_fpn``) goes into mmdet's and
is imported only where mmdet is installed (see :mod:`noisemim.registration`).
Its channel LayerNorm is mmpretrain's ``LayerNorm2d``
(``norm_cfg=dict(type='mmpretrain.LN2d')``), not registered again."""
from .diffmae_decoder import DiffMAEDecoder

__all__ = ['DiffMAEDecoder']
