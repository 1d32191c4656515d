"""Which ``scaled_dot_product_attention`` backend each of NoiseMIM's attention
calls selects, and what the three kinds of block cost.

The encoder makes three kinds of attention call (``NoiseMIMViT.forward``):

* **plain**: mmpretrain's block as it is;
* **mass**: a block of the ``'mass'`` disruption loss (the mass channels
  ride on its attention call, ``noisemim.models.mass_attention``);
* **hard-bias**: a block of ``disentangle='hard'`` (an additive
  ``(B, 1, L, L)`` bias that blocks attention between ``M`` and ``S``).

:func:`probe_attention` runs the encoder forward and backward with every
block of one kind, records the dispatched SDPA implementation from the
profiler (``aten::_scaled_dot_product_flash_attention`` and so on) and times
the SDPA calls (forward and backward, per call) and the whole encoder step.
"""
import statistics
import time
from collections import Counter
from contextlib import nullcontext
from typing import Dict, List, Sequence

import torch

#: The dispatched implementations of ``F.scaled_dot_product_attention``.
BACKENDS = {
    'aten::_scaled_dot_product_flash_attention': 'flash',
    'aten::_scaled_dot_product_efficient_attention': 'memory-efficient',
    'aten::_scaled_dot_product_cudnn_attention': 'cuDNN',
    'aten::_scaled_dot_product_flash_attention_for_cpu': 'flash (CPU)',
    'aten::_scaled_dot_product_attention_math': 'math',
    'aten::_scaled_dot_product_fused_attention_overrideable': 'fused',
}
SDPA_PREFIX = 'aten::_scaled_dot_product_'
VARIANTS = ('plain', 'mass', 'hard-bias')


def _device_time(event, cuda: bool) -> float:
    return event.device_time_total if cuda else event.cpu_time_total


def sdpa_calls(events: Sequence, cuda: bool) -> Dict[str, object]:
    """The SDPA implementations dispatched in a profile, and their time.

    Args:
        events (Sequence): ``torch.profiler.profile().events()``.
        cuda (bool): Time on the GPU (else the CPU time of the ops).

    Returns:
        dict: ``backends`` (``Counter`` of :data:`BACKENDS` names over the
        forward calls), ``calls``, ``forward_us`` and ``backward_us`` (the
        total time of the outermost SDPA implementation ops).
    """
    backends: Counter = Counter()
    forward = backward = 0.
    for e in events:
        if not e.name.startswith(SDPA_PREFIX) or getattr(
                e.device_type, 'name', '') != 'CPU':
            continue
        parent = e.cpu_parent
        if parent is not None and parent.name.startswith(SDPA_PREFIX):
            continue  # nested inside another implementation op
        if 'backward' in e.name:
            backward += _device_time(e, cuda)
        else:
            backends[BACKENDS.get(e.name, e.name)] += 1
            forward += _device_time(e, cuda)
    return dict(backends=backends, calls=sum(backends.values()),
                forward_us=forward, backward_us=backward)


def _layer_kwargs(variant: str, num_layers: int) -> dict:
    layers = tuple(range(num_layers))
    if variant == 'plain':
        return {}
    if variant == 'mass':
        return dict(mass_layers=layers)
    if variant == 'hard-bias':
        return dict(blocked_layers=layers)
    raise ValueError(f'variant must be one of {VARIANTS}, got {variant!r}')


def probe_attention(backbone_cfg: dict, batch_size: int, device: str = 'cpu',
                    dtype: torch.dtype = torch.bfloat16, warmup: int = 1,
                    repeats: int = 3,
                    variants: Sequence[str] = VARIANTS) -> List[dict]:
    """Encoder forward + backward with every block of one kind, per kind.

    Args:
        backbone_cfg (dict): A ``NoiseMIMViT`` config.
        batch_size (int): Images per step.
        device (str): ``'cuda'`` or ``'cpu'``.
        dtype (torch.dtype): Autocast dtype on CUDA (``torch.float32``: no
            autocast). On CPU the step runs in fp32.
        warmup (int): Untimed steps per kind.
        repeats (int): Timed steps per kind (the median is reported).
        variants (Sequence[str]): Of :data:`VARIANTS`.

    Returns:
        List[dict]: Per kind: ``variant``, ``backends`` (name -> calls),
        ``calls``, ``sdpa_forward_ms`` and ``sdpa_backward_ms`` (per call),
        ``step_ms`` (the encoder's forward + backward, median).
    """
    from mmpretrain.registry import MODELS

    import noisemim  # noqa: F401  (registers NoiseMIMViT)
    from torch.profiler import ProfilerActivity, profile
    cuda = torch.device(device).type == 'cuda'
    torch.manual_seed(0)
    backbone = MODELS.build(backbone_cfg).to(device)
    backbone.train()
    size = backbone_cfg.get('img_size', 224)
    images = torch.randn(batch_size, 3, size, size, device=device)
    autocast = (torch.autocast('cuda', dtype=dtype)
                if cuda and dtype != torch.float32 else nullcontext())

    def step(kwargs: dict) -> None:
        corruption = backbone.sample_corruption(images)
        with autocast:
            out = backbone(images, corruption, **kwargs)
            loss = out.tokens.float().square().mean()
            for c in out.cross_mass.values():
                loss = loss + c.float().mean()
        loss.backward()
        backbone.zero_grad(set_to_none=True)

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    rows = []
    for variant in variants:
        kwargs = _layer_kwargs(variant, backbone.num_layers)
        for _ in range(warmup):
            step(kwargs)
        seconds = []
        for _ in range(repeats):
            sync()
            start = time.perf_counter()
            step(kwargs)
            sync()
            seconds.append(time.perf_counter() - start)
        activities = [ProfilerActivity.CPU] + (
            [ProfilerActivity.CUDA] if cuda else [])
        with profile(activities=activities) as prof:
            step(kwargs)
            sync()
        calls = sdpa_calls(prof.events(), cuda)
        n = max(calls['calls'], 1)
        rows.append(dict(variant=variant, backends=dict(calls['backends']),
                         calls=calls['calls'],
                         sdpa_forward_ms=calls['forward_us'] / n / 1e3,
                         sdpa_backward_ms=calls['backward_us'] / n / 1e3,
                         step_ms=statistics.median(seconds) * 1e3))
    return rows
