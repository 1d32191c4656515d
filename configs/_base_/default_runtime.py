# Runtime shared by the pre-training configs (mmpretrain scope).
default_scope = 'mmpretrain'
custom_imports = dict(imports=['noisemim'], allow_failed_imports=False)

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=100),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # CheckpointHook with atomic writes and a --resume that skips a broken
    # newest checkpoint (noisemim/engine/hooks/checkpoint_atomic.py).
    # Every 10 epochs and the last (save_last): < 1 % at H100 speed. ViT-B:
    # an epoch at ~3,000 img/s/GPU x 8 is 1.28 M / 24 k = ~53 s; a ~1 GB
    # checkpoint (weights + AdamW) takes ~1-3 s while the other ranks wait,
    # so 3 s / 534 s = 0.6 % (every epoch: 2-6 %). ViT-L: ~3.6 GB (~4-11 s)
    # per ~180 s epoch: 11 s / 1,800 s = 0.6 %. A crash loses <= 10 epochs.
    checkpoint=dict(
        type='AtomicCheckpointHook', interval=10, max_keep_ckpts=3,
        save_last=True),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='VisualizationHook', enable=False),
)
# Reliability (noisemim/engine/hooks): log losses averaged over all processes,
# stop at a non-finite loss, refuse a load_from/--resume checkpoint that does
# not fit the model, and make --resume and the corruption exact (shared seed,
# per-rank RNG states in checkpoints).
custom_hooks = [
    dict(type='SyncLossHook'),
    dict(type='FiniteLossHook'),
    dict(type='CheckpointFitHook'),
    dict(type='RandomnessHook'),
    # counts the samples SkipBadSamples skipped (idle without it)
    dict(type='BadSampleCountHook'),
]

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),
)

vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='UniversalVisualizer', vis_backends=vis_backends)

log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0, diff_rank_seed=True)
