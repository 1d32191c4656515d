"""``auto_scale_lr`` that counts gradient accumulation.

mmengine's ``Runner.scale_lr`` multiplies the lr by
``world_size * batch_size / base_batch_size``. With
``optim_wrapper.accumulative_counts = k`` each update sees ``k`` times as many
samples, but mmengine ignores ``k``, so with accumulation the lr silently
shrinks by ``k``. :func:`count_accumulation_in_lr_scaling` (called by
``tools/train.py``) divides ``base_batch_size`` by ``k`` in the config, so the
Runner's own scaling gives ``world_size * batch_size * k / base_batch_size``.
It records ``k`` as ``auto_scale_lr.accumulative_counts``, so applying it
again (e.g. to the config dumped in the work dir) changes nothing.
"""
from mmengine.config import Config
from mmengine.logging import print_log


def accumulative_counts(cfg: Config) -> int:
    """The config's ``optim_wrapper.accumulative_counts`` (1 without it).

    Raises:
        ValueError: It is not an integer >= 1.
    """
    wrapper = cfg.get('optim_wrapper') or {}
    k = 1
    if isinstance(wrapper, dict):
        k = wrapper.get('accumulative_counts', 1)
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError('optim_wrapper.accumulative_counts must be an '
                         f'integer >= 1, got {k!r}')
    return k


def count_accumulation_in_lr_scaling(cfg: Config) -> None:
    """Make ``auto_scale_lr`` scale by the samples per optimizer update.

    Args:
        cfg (Config): The run's config; ``cfg.auto_scale_lr`` is changed in
            place when it is enabled.
    """
    auto = cfg.get('auto_scale_lr')
    if not auto or not auto.get('enable', False):
        return
    if 'base_batch_size' not in auto:
        raise ValueError('auto_scale_lr needs base_batch_size, got '
                         f'{dict(auto)!r}')
    k = accumulative_counts(cfg)
    applied = auto.get('accumulative_counts', 1)
    if k == applied:
        return
    auto['base_batch_size'] = auto['base_batch_size'] * applied / k
    auto['accumulative_counts'] = k
    print_log(
        f'auto_scale_lr: {k} accumulated batches per update, so the lr '
        f'scales by world_size x batch_size x {k} / '
        f'{auto["base_batch_size"] * k:g} (mmengine logs the batch without '
        'the accumulation).',
        logger='current')
