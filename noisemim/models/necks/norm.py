"""``LN2d`` in mmdet's registry: LayerNorm over the channels of a feature map.

ViTDet normalises its simple feature pyramid and its detection heads with a
channel LayerNorm. mmpretrain already implements it (``LayerNorm2d``,
registered as ``LN2d`` in mmpretrain); this registers the same class in
mmdet's ``MODELS`` so that ``norm_cfg=dict(type='LN2d')`` builds inside mmdet
configs (``default_scope='mmdet'``), where mmcv's ``build_norm_layer`` looks.
"""
from mmdet.registry import MODELS
from mmpretrain.models.utils.norm import LayerNorm2d

MODELS.register_module(name='LN2d', module=LayerNorm2d)

__all__ = ['LayerNorm2d']
