"""The disruption loss: keep masked and noised tokens from attending to each other.

For a block with attention probabilities ``A`` (softmax rows), the
cross-corruption attention mass is::

    c = mean_{i in M} sum_{j in S} A_ij + mean_{i in S} sum_{j in M} A_ij

and the loss is the mean of ``c`` over blocks, heads and samples. In training,
``c`` is read off the encoder's own fused attention call of each block (the
indicators of ``S`` and ``M`` ride along as two extra value channels, see
:mod:`noisemim.models.mass_attention`): the loss adds no attention call, no
``N x N`` probability matrix, and runs in the autocast dtype.
:func:`cross_corruption_mass` computes the same ``c`` from a block's queries
and keys (one fused attention call on the ``M`` and ``S`` rows with the
indicators as the value), for analyses and for attention dropout.

The ``'entropy'`` variant needs the probabilities themselves; it computes the
``M`` rows explicitly under activation checkpointing (recomputed in the
backward, one block at a time), with the logits in the compute dtype and only
the log-softmax in fp32.
"""
import math
from typing import Dict, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmpretrain.registry import MODELS
from torch import Tensor
from torch.profiler import record_function
from torch.utils.checkpoint import checkpoint

from ..corruption import Corruption
from ..mass_attention import (CUDA_HEAD_ALIGN, MASS_CHANNELS,
                              mass_value_width, value_only_mass)

MODES = ('mass', 'entropy', 'hard')


def _rows(x: Tensor, index: Tensor) -> Tensor:
    """Gather token rows ``index`` (B, n) from ``x`` (B, H, L, d)."""
    index = index[:, None, :, None].expand(-1, x.shape[1], -1, x.shape[-1])
    return x.gather(2, index)


def cross_corruption_mass(q: Tensor,
                          k: Tensor,
                          masked_index: Tensor,
                          noised_index: Tensor,
                          device_type: Optional[str] = None) -> Tensor:
    """``c`` of one block, per sample and head, from its queries and keys.

    ``sum_{j in S} A_ij`` is attention with the indicator of ``S`` as the
    value (and likewise for ``M``), so the masses come from one fused
    attention call on the ``M`` and ``S`` query rows, in the dtype of ``q``
    (autocast's on a GPU) with the fused kernel's fp32 accumulation.

    Args:
        q (Tensor): ``(B, H, L, d)`` queries (all tokens).
        k (Tensor): ``(B, H, L, d)`` keys.
        masked_index (Tensor): ``(B, |M|)`` token indices of ``M`` in ``L``.
        noised_index (Tensor): ``(B, |S|)`` token indices of ``S`` in ``L``.
        device_type (str, optional): Sets the layout (see
            :func:`~noisemim.models.mass_attention.value_only_mass`).
            Defaults to ``q``'s device.

    Returns:
        Tensor: ``(B, H)`` mass of ``M -> S`` plus ``S -> M`` attention.
    """
    B, H, L, d = k.shape
    n_m = masked_index.shape[1]
    device_type = device_type or q.device.type
    rows = _rows(q, torch.cat([masked_index, noised_index], 1))
    # Values: channel 0 marks S (what M rows must not see), channel 1 marks M
    # (what S rows must not see). On CUDA the value is only as wide as the
    # channels need (a multiple of 8), and q and k are padded only to a
    # multiple of 8. Elsewhere the fused kernel needs the value width equal
    # to the query's: the value is zero-padded to the head width, and only
    # where the head is too narrow are q and k zero-padded too. Zero padding
    # leaves the logits unchanged (explicit scale).
    if value_only_mass(device_type):
        width = _aligned(d)
        value_width = _aligned(MASS_CHANNELS)
    else:
        fits = d >= MASS_CHANNELS and (device_type == 'cpu'
                                       or d % CUDA_HEAD_ALIGN == 0)
        width = d if fits else mass_value_width(d, device_type)
        value_width = width
    values = k.new_zeros(B, L, value_width)
    values[:, :, 0].scatter_(1, noised_index, 1.)
    values[:, :, 1].scatter_(1, masked_index, 1.)
    values = values[:, None].expand(-1, H, -1, -1)
    pad = (0, width - d)
    mass = F.scaled_dot_product_attention(
        F.pad(rows, pad), F.pad(k, pad), values, scale=d**-0.5).float()
    return mass[:, :, :n_m, 0].mean(-1) + mass[:, :, n_m:, 1].mean(-1)


def _aligned(width: int) -> int:
    """``width`` rounded up to a multiple of 8 (CUDA's fused kernels)."""
    return math.ceil(width / CUDA_HEAD_ALIGN) * CUDA_HEAD_ALIGN


def masked_attention_entropy_gap(q: Tensor, k: Tensor, masked_index: Tensor,
                                 noised_index: Tensor) -> Tensor:
    """``1 - H/log K`` of the ``M`` rows renormalised over the ``K`` non-noised keys.

    Args:
        q, k, masked_index, noised_index: As :func:`cross_corruption_mass`.

    Returns:
        Tensor: ``(B, H)``; 0 when each masked row is uniform over the clean
        keys, 1 when it is one-hot.
    """
    rows = _rows(q, masked_index)
    # The product in the compute dtype; only the log-softmax in fp32.
    logits = (rows @ k.transpose(-2, -1)).float() * q.shape[-1]**-0.5
    noised = torch.zeros(k.shape[0], k.shape[2], dtype=torch.bool,
                         device=k.device).scatter_(1, noised_index, True)
    logits = logits.masked_fill(noised[:, None, None], float('-inf'))
    log_p = logits.log_softmax(-1)
    entropy = -log_p.exp() * log_p.masked_fill(noised[:, None, None], 0.)
    num_keys = k.shape[2] - noised_index.shape[1]
    return 1 - entropy.sum(-1).mean(-1) / math.log(num_keys)


@MODELS.register_module()
class DisruptionLoss(BaseModule):
    """The disruption loss over the given blocks.

    Args:
        mode (str): ``'mass'`` (cross-corruption attention mass, the default),
            ``'entropy'`` (raise the entropy of masked rows over clean keys),
            or ``'hard'`` (no loss: the encoder masks ``M <-> S`` attention).
        layers (Sequence[int], optional): The blocks it covers. Defaults to
            every block from the noise layer on.
        loss_weight (float): ``lambda``. Defaults to 0.1.
    """

    def __init__(self,
                 mode: str = 'mass',
                 layers: Optional[Sequence[int]] = None,
                 loss_weight: float = 0.1) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f'disruption mode must be one of {MODES}, '
                             f'got {mode!r}')
        if not (isinstance(loss_weight, (int, float)) and loss_weight >= 0):
            raise ValueError(f'disruption loss_weight must be a number >= 0, '
                             f'got {loss_weight!r}')
        self.mode = mode
        self.layers = None if layers is None else [int(i) for i in layers]
        self.loss_weight = float(loss_weight)
        self._per_block = (cross_corruption_mass
                           if mode == 'mass' else masked_attention_entropy_gap)

    def forward(self, attention: Dict[int, Union[Tensor, tuple]],
                corruption: Corruption, num_extra_tokens: int) -> Tensor:
        """Compute ``loss_weight * mean over blocks, heads, samples``.

        Args:
            attention (dict): block index -> the block's ``(B, H)`` mass
                ``c`` (``EncoderOutput.cross_mass``, ``'mass'`` mode), or
                its ``(q, k)`` (``EncoderOutput.attention``).
            corruption (Corruption): The batch's corruption.
            num_extra_tokens (int): Tokens before the patches.

        Returns:
            Tensor: The weighted loss (fp32 scalar).
        """
        if not attention:
            raise ValueError('the disruption loss got no block: ask the '
                             'encoder for mass_layers or probe_layers')
        masked = corruption.masked_index + num_extra_tokens
        noised = corruption.noised_index + num_extra_tokens
        per_block = []
        with record_function('noisemim.disruption_loss'):
            for value in attention.values():
                if isinstance(value, Tensor):
                    if self.mode != 'mass':
                        raise ValueError(
                            f'mode {self.mode!r} needs the queries and keys '
                            'of each block, got attention masses')
                    c = value
                elif self.mode == 'mass':  # fused: nothing to checkpoint
                    c = cross_corruption_mass(*value, masked, noised)
                else:
                    c = checkpoint(self._per_block, *value, masked, noised,
                                   use_reentrant=False)
                per_block.append(c.float().mean())
            return self.loss_weight * torch.stack(per_block).mean()
