# mmseg's runtime (default_scope='mmseg', SegLocalVisualizer, ...), plus the
# import that registers noisemim's backbone, initializer and layer-decay
# constructor.
_base_ = 'mmseg::_base_/default_runtime.py'
custom_imports = dict(imports=['noisemim'], allow_failed_imports=False)

# NoiseMIMViT keeps its pre-training mask token (loaded, unused downstream),
# so distributed data-parallel training must allow a parameter without a
# gradient.
model_wrapper_cfg = dict(
    type='MMDistributedDataParallel', find_unused_parameters=True)
