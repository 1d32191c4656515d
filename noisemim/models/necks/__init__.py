"""Necks registered in mmdet's ``MODELS`` (ViTDet's simple feature pyramid)."""
from .diffmae_decoder import DiffMAEDecoder
from .norm import LayerNorm2d
from .simple_fpn import SimpleFPN

__all__ = ['LayerNorm2d', 'SimpleFPN', 'DiffMAEDecoder']
