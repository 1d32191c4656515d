"""Optimizer wrapper constructors (registered in mmengine's root registry, so
that mmpretrain, mmdet and mmseg configs can all name them)."""
from .layer_decay import LayerDecayOptimWrapperConstructor, layer_depth_fn

__all__ = ['LayerDecayOptimWrapperConstructor', 'layer_depth_fn']
