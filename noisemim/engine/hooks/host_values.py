"""A training step's logged values, read back from the device in one transfer.

mmengine's ``RuntimeInfoHook`` calls ``.item()`` on every logged value, and a
hook that checks the values would read each one again: one host-device
synchronisation per value and hook. :func:`stack_scalars` puts the scalar
values into one tensor on their device, so that one ``.cpu()`` reads them all;
:func:`read_due` says at which iterations the host needs them at all (the
logger's, the checkpoints', the end of an epoch or of the run).
"""
from numbers import Number
from typing import Dict, List, Mapping, Optional, Tuple

import torch
from mmengine.hooks import CheckpointHook, LoggerHook
from torch import Tensor


def read_due(runner, batch_idx: int) -> bool:
    """Whether a training iteration's logged values must be on the host now.

    They are when ``LoggerHook`` logs (its ``interval``, or the end of an
    epoch), when ``CheckpointHook`` saves after this iteration (the
    checkpoint holds the message hub's history), and at the end of an epoch
    or of the run. The answer is the same on every rank.

    Args:
        runner (Runner): The runner.
        batch_idx (int): The iteration's index in the train loop (as hooks
            get it).

    Returns:
        bool: True at those iterations.
    """
    if runner.iter + 1 >= runner.max_iters:
        return True
    try:
        if batch_idx + 1 == len(runner.train_dataloader):
            return True
    except TypeError:  # a loader without a length
        pass
    for hook in runner.hooks:
        if isinstance(hook, LoggerHook) and hook.every_n_inner_iters(
                batch_idx, hook.interval):
            return True
        if isinstance(hook, CheckpointHook) and not hook.by_epoch:
            every = hook.every_n_train_iters(runner, hook.interval,
                                             hook.save_begin)
            if every or (hook.save_last and hook.is_last_train_iter(runner)):
                return True
    return False


def _is_scalar(value) -> bool:
    """A one-element tensor or a real number (a loggable scalar)."""
    if isinstance(value, Tensor):
        return value.numel() == 1
    return isinstance(value, Number) and not isinstance(value, complex)


def stack_scalars(values: Mapping,
                  keys: Optional[List[str]] = None
                  ) -> Tuple[List[str], Optional[Tensor]]:
    """Stack the scalar values into one detached tensor, on their device.

    Args:
        values (Mapping): Logged values (tensors or numbers).
        keys (List[str], optional): The keys to take; by default every key
            whose value is a scalar.

    Returns:
        Tuple[List[str], Tensor | None]: The keys taken and a 1-D tensor of
        their values (float64, or float32 on a device without float64), or
        ``None`` when there is none.
    """
    if keys is None:
        keys = [k for k, v in values.items() if _is_scalar(v)]
    if not keys:
        return keys, None
    tensors = [values[k] for k in keys if isinstance(values[k], Tensor)]
    device = tensors[0].device if tensors else torch.device('cpu')
    dtype = torch.float32 if device.type == 'mps' else torch.float64
    stacked = torch.stack([
        value.detach().reshape(()).to(device, dtype)
        if isinstance(value, Tensor) else torch.tensor(
            value, dtype=dtype, device=device)
        for value in (values[k] for k in keys)
    ])
    return keys, stacked


def host_scalars(values: Mapping,
                 keys: Optional[List[str]] = None) -> Dict[str, float]:
    """The scalar values as Python floats, with one device-to-host copy.

    Args:
        values (Mapping): Logged values (tensors or numbers).
        keys (List[str], optional): The keys to read; by default every key
            whose value is a scalar.

    Returns:
        Dict[str, float]: key -> value.
    """
    keys, stacked = stack_scalars(values, keys)
    if stacked is None:
        return {}
    return dict(zip(keys, stacked.cpu().tolist()))
