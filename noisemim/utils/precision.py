"""Which numeric precision fits this device: ``--precision {auto,fp32,bf16,fp16}``.

``auto`` keeps what the config asks for where the device runs it fast, and
falls back where it does not:

* a config in fp32 (``OptimWrapper``) stays in fp32 everywhere;
* a config in mixed precision (``AmpOptimWrapper``) runs
  - on a CUDA GPU with bf16 (Ampere and newer): as configured (the
    pre-training configs ask for bf16 without a loss scaler);
  - on a CUDA GPU without bf16 (V100, T4): bf16 becomes fp16 with a dynamic
    loss scaler;
  - on a CPU with native bf16 (AMX or AVX512-BF16): bf16 autocast;
  - on a CPU without (e.g. AVX2 only): fp32, since bf16 there is emulated in
    software and many times slower than fp32;
  - on an NPU, MLU or MUSA device: as configured (mmengine's AMP there).

``fp32``, ``bf16`` and ``fp16`` force a precision; what a device cannot run
(fp16 on a CPU, bf16 on a GPU without it) is an error naming the way out.
"""
import os
from dataclasses import dataclass
from typing import FrozenSet, Optional, Tuple

import torch

PRECISIONS = ('auto', 'fp32', 'bf16', 'fp16')
#: CPU flags that mean native bf16 arithmetic (x86: AMX, AVX512-BF16).
NATIVE_BF16_FLAGS = ('amx_bf16', 'avx512_bf16')


@dataclass(frozen=True)
class Precision:
    """The precision a run uses and why.

    Args:
        precision (str): ``'fp32'``, ``'bf16'`` or ``'fp16'``.
        reason (str): One sentence: what was asked and what the device has.
    """
    precision: str
    reason: str

    def message(self) -> str:
        """The log line."""
        return f'Precision: {self.precision} ({self.reason}).'


def _cpuinfo_flags(path: str = '/proc/cpuinfo') -> FrozenSet[str]:
    """The CPU's feature flags from ``/proc/cpuinfo`` (empty elsewhere)."""
    if not os.path.exists(path):
        return frozenset()
    flags = set()
    with open(path) as f:
        for line in f:
            key, _, value = line.partition(':')
            if key.strip() in ('flags', 'Features'):  # x86, ARM
                flags.update(value.split())
    return frozenset(flags)


def cpu_bf16_flags() -> Tuple[str, ...]:
    """The native-bf16 features of this CPU (empty: bf16 is emulated).

    Reads torch's own CPU probe (``torch.cpu.get_capabilities``) and the
    kernel's ``/proc/cpuinfo`` flags; an ARM CPU's ``bf16`` feature counts
    too.

    Returns:
        Tuple[str, ...]: E.g. ``('amx_bf16', 'avx512_bf16')`` or ``()``.
    """
    found = set()
    get_capabilities = getattr(torch.cpu, 'get_capabilities', None)
    if get_capabilities is not None:
        try:
            found.update(k for k, v in get_capabilities().items() if v is True)
        except Exception:  # a torch build without the cpuinfo probe
            pass
    found.update(_cpuinfo_flags())
    native = [f for f in NATIVE_BF16_FLAGS if f in found]
    if 'bf16' in found and not native:  # aarch64 (e.g. Neoverse V1/V2)
        native.append('bf16')
    return tuple(native)


def device_kind() -> str:
    """``'cuda'``, ``'other'`` (NPU, MLU, MUSA) or ``'cpu'``."""
    if torch.cuda.is_available():
        return 'cuda'
    from mmengine.device import (is_mlu_available, is_musa_available,
                                 is_npu_available)
    if is_npu_available() or is_mlu_available() or is_musa_available():
        return 'other'
    return 'cpu'


def cuda_bf16() -> bool:
    """Whether the CUDA GPU computes bf16 natively (not emulated)."""
    try:
        return torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # older torch: no emulation argument
        return torch.cuda.is_bf16_supported()


def choose_precision(requested: str,
                     configured: str,
                     device: Optional[str] = None) -> Precision:
    """The precision to run with (see the module doc).

    Args:
        requested (str): ``--precision``: ``'auto'``, ``'fp32'``, ``'bf16'``
            or ``'fp16'``.
        configured (str): What the config asks for: ``'fp32'``, ``'bf16'``
            or ``'fp16'``.
        device (str, optional): ``'cuda'``, ``'cpu'`` or ``'other'``;
            defaults to this machine's (:func:`device_kind`).

    Returns:
        Precision: The choice and its reason.

    Raises:
        ValueError: An unknown value, or a forced precision the device
            cannot run.
    """
    if requested not in PRECISIONS:
        raise ValueError(f'precision must be one of {PRECISIONS}, got '
                         f'{requested!r}')
    if configured not in PRECISIONS[1:]:
        raise ValueError(f"the config's precision must be one of "
                         f'{PRECISIONS[1:]}, got {configured!r}')
    device = device or device_kind()
    if device not in ('cuda', 'cpu', 'other'):
        raise ValueError(f"device must be 'cuda', 'cpu' or 'other', got "
                         f'{device!r}')
    name = _device_name(device)
    if requested != 'auto':
        _check_forced(requested, device, name)
        return Precision(requested, f'--precision {requested} on {name}')
    asked = f'--precision auto, the config asks for {configured}'
    if configured == 'fp32':
        return Precision('fp32', asked)
    if device == 'other':
        return Precision(configured, f'{asked}; {name} runs it')
    if device == 'cuda':
        if configured == 'bf16' and not cuda_bf16():
            return Precision(
                'fp16', f'{asked}; {name} has no bf16, so fp16 with a '
                'dynamic loss scaler')
        return Precision(configured, f'{asked}; {name} runs it')
    flags = cpu_bf16_flags()
    if flags:
        return Precision('bf16', f'{asked}; this CPU has native bf16 '
                         f'({", ".join(flags)}), so bf16 autocast')
    return Precision(
        'fp32', f'{asked}; this CPU has no native bf16 (neither '
        f'{" nor ".join(NATIVE_BF16_FLAGS)}): bf16 would be emulated, many '
        'times slower than fp32; --precision bf16 forces it')


def amp_precision(device: Optional[str] = None) -> str:
    """What ``--amp`` means: bf16, or fp16 on a CUDA GPU without bf16."""
    device = device or device_kind()
    return 'fp16' if device == 'cuda' and not cuda_bf16() else 'bf16'


def _device_name(device: str) -> str:
    if device == 'cuda':
        return (f'the GPU {torch.cuda.get_device_name()}'
                if torch.cuda.is_available() else 'a CUDA GPU')
    return 'the CPU' if device == 'cpu' else 'the NPU/MLU/MUSA device'


def _check_forced(precision: str, device: str, name: str) -> None:
    """A forced precision the device cannot run is an error."""
    if precision == 'fp16' and device == 'cpu':
        raise ValueError(
            "--precision fp16 needs a GPU: autocast on a CPU has bf16 only, "
            "and mmengine's loss scaler is GPU-only. Use --precision bf16 "
            '(fast only with AMX/AVX512-BF16) or fp32.')
    if precision == 'bf16' and device == 'cuda' and not cuda_bf16():
        raise ValueError(
            f'--precision bf16: {name} has no native bf16. Use --precision '
            'fp16 (with a dynamic loss scaler) or auto, which picks it.')
