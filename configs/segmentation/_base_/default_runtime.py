# mmseg's runtime (default_scope='mmseg', SegLocalVisualizer, ...), plus the
# import that registers noisemim's initializer (StrictPretrained) and
# layer-decay constructor; the backbone is mmpretrain's stock ViT.
_base_ = 'mmseg::_base_/default_runtime.py'
# ('noisemim.segmentation' says what to install when mmseg or mmcv's ops are
# missing.)
custom_imports = dict(
    imports=['noisemim', 'noisemim.segmentation'], allow_failed_imports=False)
