"""A training step's logged values, read back from the device in one transfer.

mmengine's ``RuntimeInfoHook`` calls ``.item()`` on every logged value, and a
hook that checks the values would read each one again: one host-device
synchronisation per value and hook. :func:`stack_scalars` puts the scalar
values into one tensor on their device, so that one ``.cpu()`` reads them all.
"""
from numbers import Number
from typing import Dict, List, Mapping, Optional, Tuple

import torch
from torch import Tensor


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
