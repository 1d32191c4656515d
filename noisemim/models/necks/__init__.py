"""Necks. ``DiffMAEDecoder`` is in mmpretrain's ``MODELS``; ViTDet's
``SimpleFPN`` and ``LN2d`` (``simple_fpn``, ``norm``) go into mmdet's and are
imported only where mmdet is installed (see :mod:`noisemim.registration`)."""
from .diffmae_decoder import DiffMAEDecoder

__all__ = ['DiffMAEDecoder']
