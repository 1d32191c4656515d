"""A fixed pre-training budget for a study config."""
from mmengine.config import Config


def set_budget(cfg: Config, iters: int, warmup_ratio: float = 0.1) -> None:
    """Train for ``iters`` iterations: linear warm-up, then cosine decay.

    Also turns off checkpoint saving (the study keeps the model in memory).

    Args:
        cfg (Config): A pre-training config (changed in place).
        iters (int): The number of iterations, >= 1.
        warmup_ratio (float): Share of ``iters`` spent warming up.
            Defaults to 0.1.

    Raises:
        ValueError: If ``iters`` is not a positive integer.
    """
    if not isinstance(iters, int) or iters < 1:
        raise ValueError(f'iters must be a positive integer, got {iters!r}')
    warmup = max(1, round(iters * warmup_ratio)) if iters > 1 else 0
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=iters)
    scheduler = [
        dict(
            type='CosineAnnealingLR',
            by_epoch=False,
            begin=warmup,
            end=iters,
            T_max=iters - warmup,
            eta_min=1e-5)
    ]
    if warmup:
        scheduler.insert(
            0,
            dict(
                type='LinearLR',
                start_factor=0.01,
                by_epoch=False,
                begin=0,
                end=warmup))
    cfg.param_scheduler = scheduler
    cfg.default_hooks.checkpoint = None
    cfg.default_hooks.logger = dict(
        type='LoggerHook', interval=min(50, iters))
