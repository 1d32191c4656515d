# The study's budget: the demo's scale (4 blocks, 64-d, 64 px, 8 px patches),
# pre-trained on scikit-image's photographs for 200 iterations on CPU.
# tools/study.py rewrites max_iters and the schedule with --iters.
_base_ = [
    '../../../_base_/datasets/embedded_photos.py',
    '../../../_base_/schedules/adamw_coslr_400e_bs4096.py',
    '../../../_base_/default_runtime.py',
]
optim_wrapper = dict(optimizer=dict(lr=1.5e-3))
max_iters = 200
warmup_iters = 20
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=0.01,
        by_epoch=False,
        begin=0,
        end=warmup_iters),
    dict(
        type='CosineAnnealingLR',
        by_epoch=False,
        begin=warmup_iters,
        end=max_iters,
        T_max=max_iters - warmup_iters,
        eta_min=1e-5)
]
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=max_iters)
auto_scale_lr = dict(enable=False)
default_hooks = dict(
    logger=dict(interval=50),
    checkpoint=dict(by_epoch=False, interval=max_iters, max_keep_ckpts=1))
log_processor = dict(by_epoch=False)
