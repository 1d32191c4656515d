"""Optimizer wrapper constructors (registered in mmengine's root registry, so
that mmpretrain, mmdet and mmseg configs can all name them)."""
from .layer_decay import LayerDecayOptimWrapperConstructor, layer_depth_fn
from .lr_scaling import count_accumulation_in_lr_scaling
from .mixed_precision import (CPUAutocastOptimWrapper,
                              configure_mixed_precision,
                              configure_test_precision, set_wrapper_precision,
                              wrapper_precision)
from .param_groups import (NoiseMIMOptimWrapperConstructor,
                           merge_param_groups)

__all__ = [
    'LayerDecayOptimWrapperConstructor', 'layer_depth_fn',
    'NoiseMIMOptimWrapperConstructor', 'merge_param_groups',
    'count_accumulation_in_lr_scaling', 'CPUAutocastOptimWrapper',
    'configure_mixed_precision', 'configure_test_precision',
    'set_wrapper_precision', 'wrapper_precision'
]
