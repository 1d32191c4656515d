# mmdet's runtime (default_scope='mmdet', DetLocalVisualizer, ...), plus the
# imports that register noisemim's backbone, initializer and layer-decay
# constructor ('noisemim') and its neck in mmdet ('noisemim.detection',
# which says what to install when mmdet or mmcv's compiled ops are missing).
_base_ = 'mmdet::_base_/default_runtime.py'
custom_imports = dict(
    imports=['noisemim', 'noisemim.detection'], allow_failed_imports=False)

# Iteration-based (the LSJ schedules): checkpoints every 5,000 iterations.
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50),
    checkpoint=dict(
        type='CheckpointHook',
        by_epoch=False,
        save_last=True,
        interval=5000,
        max_keep_ckpts=5))
log_processor = dict(type='LogProcessor', window_size=50, by_epoch=False)
