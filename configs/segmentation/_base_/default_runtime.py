# mmseg's runtime (default_scope='mmseg', SegLocalVisualizer, ...), plus the
# import that registers noisemim's backbone, initializer and layer-decay
# constructor.
_base_ = 'mmseg::_base_/default_runtime.py'
custom_imports = dict(imports=['noisemim'], allow_failed_imports=False)
