"""Mixed precision for pre-training: bf16 where the device has it.

The pre-training configs ask for mmengine's ``AmpOptimWrapper`` with
``dtype='bfloat16'`` and no loss scaler (``loss_scale=dict(enabled=False)``):
bf16 has fp32's exponent range, so gradients neither underflow nor overflow
and a scaler only adds a pass over the gradients and a host sync per step.
:func:`configure_mixed_precision` (called by ``tools/train.py``) fits that
request to the machine:

* a CUDA GPU with bf16 (Ampere and newer): kept as it is;
* a CUDA GPU without bf16 (V100, T4): fp16 with mmengine's dynamic loss
  scaler, with a warning;
* no GPU: mmengine's ``AmpOptimWrapper`` asserts that a GPU (or NPU/MLU/MUSA)
  is present, so bf16 becomes :class:`CPUAutocastOptimWrapper` (the same bf16
  autocast on the CPU) and fp16, which CPU autocast lacks, becomes fp32
  (``OptimWrapper``), with a warning.

``--amp`` turns an fp32 config into ``AmpOptimWrapper`` with the best dtype
of the machine (bf16 unless a GPU lacks it). Configs that already name
``AmpOptimWrapper`` without a dtype (mmengine's fp16 default, e.g. detection)
keep it on GPUs.
"""
import logging
from contextlib import contextmanager
from typing import Optional

import torch
from mmengine.config import Config
from mmengine.logging import print_log
from mmengine.optim import OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS
from mmengine.runner.amp import autocast

AMP_TYPES = ('AmpOptimWrapper', 'mmengine.AmpOptimWrapper')
BF16, FP16 = 'bfloat16', 'float16'
#: The loss scaler setting for bf16: a disabled ``GradScaler``.
NO_LOSS_SCALER = dict(enabled=False)


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


def best_amp_dtype() -> str:
    """``'bfloat16'`` unless a CUDA GPU lacks it, then ``'float16'``."""
    if torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
        return FP16
    return BF16


def _other_accelerator() -> bool:
    """An NPU, MLU or MUSA device, where mmengine's AMP is left alone."""
    from mmengine.device import (is_mlu_available, is_musa_available,
                                 is_npu_available)
    return is_npu_available() or is_mlu_available() or is_musa_available()


def configure_mixed_precision(cfg: Config, amp: bool = False) -> str:
    """Fit the config's mixed precision to this machine (see module doc).

    Args:
        cfg (Config): The run's config; ``cfg.optim_wrapper`` is changed in
            place.
        amp (bool): ``--amp``: use ``AmpOptimWrapper`` with the best dtype if
            the config trains in fp32.

    Returns:
        str: What the run uses: ``'bf16'``, ``'fp16'`` or ``'fp32'`` (also
        logged when it differs from the config).
    """
    wrapper = cfg.get('optim_wrapper')
    if not isinstance(wrapper, dict) or 'type' not in wrapper:
        return 'fp32'  # e.g. several optimizers; left to their config
    if amp and wrapper['type'] not in AMP_TYPES:
        dtype = best_amp_dtype()
        wrapper.update(
            type='AmpOptimWrapper',
            dtype=dtype,
            loss_scale=NO_LOSS_SCALER if dtype == BF16 else 'dynamic')
    if wrapper['type'] not in AMP_TYPES:
        return 'fp32'
    dtype: Optional[str] = wrapper.get('dtype')
    if dtype not in (None, BF16, FP16):
        raise ValueError(f"optim_wrapper.dtype must be 'bfloat16', 'float16' "
                         f'or None (fp16), got {dtype!r}')
    if _other_accelerator():
        return 'bf16' if dtype == BF16 else 'fp16'
    if torch.cuda.is_available():
        if dtype == BF16 and not torch.cuda.is_bf16_supported():
            wrapper.update(dtype=FP16, loss_scale='dynamic')
            _warn(f'{torch.cuda.get_device_name()} has no bf16: training in '
                  'fp16 with a dynamic loss scaler instead.')
            return 'fp16'
        return 'bf16' if dtype == BF16 else 'fp16'
    # No GPU: mmengine's AmpOptimWrapper would assert.
    wrapper.pop('loss_scale', None)
    wrapper.pop('use_fsdp', None)
    if dtype == BF16:
        wrapper['type'] = 'CPUAutocastOptimWrapper'
        _warn('No GPU: AmpOptimWrapper(bfloat16) runs as '
              'CPUAutocastOptimWrapper (bf16 autocast on the CPU).')
        return 'bf16'
    wrapper.pop('dtype', None)
    wrapper['type'] = 'OptimWrapper'
    _warn('No GPU: fp16 autocast needs CUDA; training in fp32.')
    return 'fp32'


def _warn(message: str) -> None:
    print_log(message, logger='current', level=logging.WARNING)
