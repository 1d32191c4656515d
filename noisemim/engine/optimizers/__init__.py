"""Optimizer wrapper constructors (registered in mmengine's root registry, so
that mmpretrain, mmdet and mmseg configs can all name them)."""
from .layer_decay import LayerDecayOptimWrapperConstructor, layer_depth_fn
from .lr_scaling import count_accumulation_in_lr_scaling
from .mixed_precision import (CPUAutocastOptimWrapper,
                              configure_mixed_precision)

__all__ = [
    'LayerDecayOptimWrapperConstructor', 'layer_depth_fn',
    'count_accumulation_in_lr_scaling', 'CPUAutocastOptimWrapper',
    'configure_mixed_precision'
]
