"""Mixed precision for any config: the optimizer wrapper (training) and the
test loop (evaluation) set to the precision that fits the device.

The pre-training configs ask for mmengine's ``AmpOptimWrapper`` with
``dtype='bfloat16'`` and no loss scaler (``loss_scale=dict(enabled=False)``):
bf16 has fp32's exponent range, so gradients neither underflow nor overflow
and a scaler only adds a pass over the gradients and a host sync per step.
``tools/train.py --precision {auto,fp32,bf16,fp16}`` (default ``auto``, see
:mod:`noisemim.utils.precision` for the rules) rewrites ``optim_wrapper`` to
the chosen precision, keeping everything else (optimizer, ``paramwise_cfg``,
``clip_grad``, ``accumulative_counts``, ``constructor``):

* fp32: ``OptimWrapper`` (``dtype``, ``loss_scale``, ``use_fsdp`` dropped);
* bf16 on a GPU (NPU, ...): ``AmpOptimWrapper(dtype='bfloat16')`` without a
  loss scaler;
* bf16 on a CPU: :class:`CPUAutocastOptimWrapper` (mmengine's
  ``AmpOptimWrapper`` asserts that a GPU is present);
* fp16: ``AmpOptimWrapper(dtype='float16')`` with the config's loss scaler,
  or a dynamic one.

So no config needs ``_delete_=True`` to switch. ``--amp`` (kept as an alias)
is ``--precision bf16``, or fp16 on a GPU without bf16.
"""
import copy
from contextlib import contextmanager
from typing import Optional

import torch
from mmengine.config import Config
from mmengine.optim import OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS
from mmengine.runner.amp import autocast

from noisemim.utils.precision import (Precision, amp_precision,
                                      choose_precision, device_kind)

AMP_TYPES = ('AmpOptimWrapper', 'mmengine.AmpOptimWrapper')
PLAIN_TYPES = ('OptimWrapper', 'mmengine.OptimWrapper')
CPU_TYPES = ('CPUAutocastOptimWrapper', )
BF16, FP16 = 'bfloat16', 'float16'
DTYPES = dict(bf16=BF16, fp16=FP16)
#: The loss scaler setting for bf16: a disabled ``GradScaler``.
NO_LOSS_SCALER = dict(enabled=False)
#: mmengine's loops whose ``fp16`` flag runs the test under autocast.
TEST_LOOP_TYPES = (None, 'TestLoop', 'mmengine.TestLoop')


@OPTIM_WRAPPERS.register_module()
class CPUAutocastOptimWrapper(OptimWrapper):
    """``OptimWrapper`` that runs the forward pass under bf16 autocast on the
    CPU: the CPU stand-in of ``AmpOptimWrapper(dtype='bfloat16')``.

    Args:
        dtype (str): Only ``'bfloat16'`` (CPU autocast has no fp16).
        **kwargs: Passed to ``OptimWrapper``.
    """

    def __init__(self, dtype: str = BF16, **kwargs) -> None:
        if dtype not in (BF16, torch.bfloat16):
            raise ValueError(f"CPU autocast needs dtype='bfloat16', got "
                             f'{dtype!r}')
        super().__init__(**kwargs)
        self.cast_dtype = torch.bfloat16

    @contextmanager
    def optim_context(self, model: torch.nn.Module):
        """Gradient accumulation's context plus bf16 autocast on the CPU."""
        with super().optim_context(model), autocast(
                device_type='cpu', dtype=self.cast_dtype):
            yield


def wrapper_precision(wrapper: dict) -> Optional[str]:
    """What an ``optim_wrapper`` config asks for.

    Args:
        wrapper (dict): The config's ``optim_wrapper``.

    Returns:
        str | None: ``'fp32'``, ``'bf16'`` or ``'fp16'``; None for a wrapper
        this module does not rewrite (several optimizers, other types).

    Raises:
        ValueError: An AMP wrapper with a ``dtype`` other than bf16/fp16.
    """
    if not isinstance(wrapper, dict) or 'type' not in wrapper:
        return None
    kind = wrapper['type']
    if kind in PLAIN_TYPES:
        return 'fp32'
    if kind in CPU_TYPES:
        return 'bf16'
    if kind not in AMP_TYPES:
        return None
    dtype = wrapper.get('dtype')
    if dtype not in (None, BF16, FP16):
        raise ValueError(f"optim_wrapper.dtype must be 'bfloat16', 'float16' "
                         f'or None (fp16), got {dtype!r}')
    return 'bf16' if dtype == BF16 else 'fp16'


def set_wrapper_precision(wrapper: dict, precision: str,
                          device: Optional[str] = None) -> None:
    """Rewrite an ``optim_wrapper`` config to ``precision``, in place.

    Args:
        wrapper (dict): An ``OptimWrapper``, ``AmpOptimWrapper`` or
            ``CPUAutocastOptimWrapper`` config; all keys but ``type``,
            ``dtype``, ``loss_scale`` and ``use_fsdp`` are kept.
        precision (str): ``'fp32'``, ``'bf16'`` or ``'fp16'``.
        device (str, optional): ``'cuda'``, ``'cpu'`` or ``'other'``;
            defaults to this machine's.
    """
    if precision not in ('fp32', 'bf16', 'fp16'):
        raise ValueError(f"precision must be 'fp32', 'bf16' or 'fp16', got "
                         f'{precision!r}')
    device = device or device_kind()
    before = wrapper_precision(wrapper)
    if precision == 'fp32' or (precision == 'bf16' and device == 'cpu'):
        for key in ('dtype', 'loss_scale', 'use_fsdp'):
            wrapper.pop(key, None)
        if precision == 'fp32':
            wrapper['type'] = 'OptimWrapper'
        else:
            wrapper.update(type='CPUAutocastOptimWrapper', dtype=BF16)
        return
    if precision == 'bf16':
        keep_scaler = before == 'bf16' and 'loss_scale' in wrapper
        wrapper.update(type='AmpOptimWrapper', dtype=BF16)
        if not keep_scaler:
            wrapper['loss_scale'] = copy.deepcopy(NO_LOSS_SCALER)
        return
    keep_scaler = before == 'fp16' and 'loss_scale' in wrapper
    wrapper.update(type='AmpOptimWrapper', dtype=FP16)
    if not keep_scaler:
        wrapper['loss_scale'] = 'dynamic'


def configure_mixed_precision(cfg: Config,
                              precision: str = 'auto',
                              amp: bool = False,
                              device: Optional[str] = None) -> Precision:
    """Fit the config's optimizer wrapper to ``--precision`` and the device.

    Args:
        cfg (Config): The run's config; ``cfg.optim_wrapper`` is changed in
            place.
        precision (str): ``'auto'``, ``'fp32'``, ``'bf16'`` or ``'fp16'``.
        amp (bool): ``--amp``, the alias of ``--precision bf16`` (fp16 on a
            GPU without bf16); only with ``precision='auto'``.
        device (str, optional): ``'cuda'``, ``'cpu'`` or ``'other'``;
            defaults to this machine's.

    Returns:
        Precision: What the run uses and why (for the log).

    Raises:
        ValueError: ``--amp`` with another ``--precision``; a precision the
            device cannot run; a wrapper dtype that is not bf16/fp16.
    """
    device = device or device_kind()
    if amp:
        if precision != 'auto':
            raise ValueError(f'--amp is the same as --precision '
                             f'{amp_precision(device)}; got it with '
                             f'--precision {precision}. Give one of them.')
        precision = amp_precision(device)
    wrapper = cfg.get('optim_wrapper')
    configured = wrapper_precision(wrapper)
    if configured is None:
        kind = wrapper.get('type') if isinstance(wrapper, dict) else None
        what = f'optim_wrapper type {kind}' if kind else (
            'several optimizer wrappers')
        if precision != 'auto':
            raise ValueError(
                f'--precision {precision} needs optim_wrapper of type '
                f'OptimWrapper or AmpOptimWrapper; this config has {what}: '
                'set its precision in the config.')
        return Precision('as configured', f'{what}: left as the config '
                         'sets it')
    choice = choose_precision(precision, configured, device)
    if choice.precision != configured or device == 'cpu':
        set_wrapper_precision(wrapper, choice.precision, device)
    return choice


def configure_test_precision(cfg: Config,
                             precision: str = 'auto',
                             device: Optional[str] = None) -> Precision:
    """Fit the test loop's autocast (``test_cfg.fp16``) to ``--precision``.

    mmengine's ``TestLoop`` runs under autocast when ``fp16=True`` (fp16 on a
    GPU, bf16 on a CPU). A bf16 test on a GPU also needs
    :func:`set_autocast_dtype` in the process.

    Args:
        cfg (Config): The run's config; ``cfg.test_cfg`` is changed in place.
        precision (str): ``'auto'``, ``'fp32'``, ``'bf16'`` or ``'fp16'``.
        device (str, optional): ``'cuda'``, ``'cpu'`` or ``'other'``;
            defaults to this machine's.

    Returns:
        Precision: What the test uses and why.
    """
    device = device or device_kind()
    test_cfg = cfg.get('test_cfg') or {}
    if test_cfg.get('type') not in TEST_LOOP_TYPES:
        if precision in ('auto', 'fp32'):
            return Precision('as configured', f'test_cfg.type is '
                             f'{test_cfg.get("type")!r}')
        raise ValueError(f"--precision {precision} needs mmengine's TestLoop; "
                         f'test_cfg.type is {test_cfg.get("type")!r}')
    configured = 'fp32'
    if test_cfg.get('fp16'):
        configured = 'bf16' if device == 'cpu' else 'fp16'
    choice = choose_precision(precision, configured, device)
    if cfg.get('test_cfg') is not None or choice.precision != 'fp32':
        cfg.test_cfg = dict(test_cfg, fp16=choice.precision != 'fp32')
    return choice


def set_autocast_dtype(precision: str, device: Optional[str] = None) -> None:
    """Make ``torch.autocast``'s default GPU dtype the chosen one (for
    mmengine's loops, which autocast without naming a dtype)."""
    if (device or device_kind()) == 'cuda' and precision in DTYPES:
        torch.set_autocast_dtype('cuda', getattr(torch, DTYPES[precision]))
