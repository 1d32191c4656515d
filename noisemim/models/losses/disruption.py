"""The disruption loss: keep masked and noised tokens from attending to each other.

For a block with attention probabilities ``A`` (softmax rows), the
cross-corruption attention mass is::

    c = mean_{i in M} sum_{j in S} A_ij + mean_{i in S} sum_{j in M} A_ij

and the loss is the mean of ``c`` over blocks, heads and samples. Only the rows
of ``M`` and ``S`` are needed. ``sum_{j in S} A_ij`` is the output of attention
with the 0/1 indicator of ``S`` as the value, so ``c`` is one fused
``scaled_dot_product_attention`` call on the ``M`` and ``S`` query rows (in
fp32): no ``N x N`` probability matrix is materialised or kept for the
backward pass, which is the fused kernel's own. The ``'entropy'`` variant
needs the probabilities themselves; it computes the ``M`` rows explicitly
under activation checkpointing (recomputed in the backward, one block at a
time, in fp32).
"""
import math
from typing import Dict, Optional, Sequence

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmpretrain.registry import MODELS
from torch import Tensor
from torch.profiler import record_function
from torch.utils.checkpoint import checkpoint

from ..corruption import Corruption

MODES = ('mass', 'entropy', 'hard')


def _rows(x: Tensor, index: Tensor) -> Tensor:
    """Gather token rows ``index`` (B, n) from ``x`` (B, H, L, d)."""
    index = index[:, None, :, None].expand(-1, x.shape[1], -1, x.shape[-1])
    return x.gather(2, index)


def cross_corruption_mass(q: Tensor, k: Tensor, masked_index: Tensor,
                          noised_index: Tensor) -> Tensor:
    """``c`` of one block, per sample and head.

    ``sum_{j in S} A_ij`` is attention with the indicator of ``S`` as the
    value (and likewise for ``M``), so the masses come from one fused
    attention call on the ``M`` and ``S`` query rows, in fp32.

    Args:
        q (Tensor): ``(B, H, L, d)`` queries (all tokens).
        k (Tensor): ``(B, H, L, d)`` keys.
        masked_index (Tensor): ``(B, |M|)`` token indices of ``M`` in ``L``.
        noised_index (Tensor): ``(B, |S|)`` token indices of ``S`` in ``L``.

    Returns:
        Tensor: ``(B, H)`` mass of ``M -> S`` plus ``S -> M`` attention.
    """
    q, k = q.float(), k.float()
    n_m = masked_index.shape[1]
    rows = _rows(q, torch.cat([masked_index, noised_index], 1))
    # Values: channel 0 marks S (what M rows must not see), channel 1 marks M
    # (what S rows must not see), zero-padded to the head width: with a value
    # width other than the query's, PyTorch falls back to the unfused kernel,
    # which keeps every probability for the backward pass.
    keys = k.new_zeros(k.shape[0], k.shape[2], max(2, k.shape[-1]))
    keys[:, :, 0].scatter_(1, noised_index, 1.)
    keys[:, :, 1].scatter_(1, masked_index, 1.)
    keys = keys[:, None].expand(-1, k.shape[1], -1, -1)
    mass = F.scaled_dot_product_attention(rows, k, keys)
    return mass[:, :, :n_m, 0].mean(-1) + mass[:, :, n_m:, 1].mean(-1)


def masked_attention_entropy_gap(q: Tensor, k: Tensor, masked_index: Tensor,
                                 noised_index: Tensor) -> Tensor:
    """``1 - H/log K`` of the ``M`` rows renormalised over the ``K`` non-noised keys.

    Args:
        q, k, masked_index, noised_index: As :func:`cross_corruption_mass`.

    Returns:
        Tensor: ``(B, H)``; 0 when each masked row is uniform over the clean
        keys, 1 when it is one-hot.
    """
    q, k = q.float(), k.float()
    rows = _rows(q, masked_index)
    logits = rows @ k.transpose(-2, -1) * q.shape[-1]**-0.5
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

    def forward(self, attention: Dict[int, tuple], corruption: Corruption,
                num_extra_tokens: int) -> Tensor:
        """Compute ``loss_weight * mean over blocks, heads, samples``.

        Args:
            attention (dict): block index -> ``(q, k)`` from the encoder.
            corruption (Corruption): The batch's corruption.
            num_extra_tokens (int): Tokens before the patches.

        Returns:
            Tensor: The weighted loss (fp32 scalar).
        """
        masked = corruption.masked_index + num_extra_tokens
        noised = corruption.noised_index + num_extra_tokens
        with record_function('noisemim.disruption_loss'), torch.autocast(
                device_type=masked.device.type, enabled=False):
            if self.mode == 'mass':  # fused: nothing to checkpoint
                per_block = [
                    self._per_block(q, k, masked, noised).mean()
                    for q, k in attention.values()
                ]
            else:
                per_block = [
                    checkpoint(self._per_block, q, k, masked, noised,
                               use_reentrant=False).mean()
                    for q, k in attention.values()
                ]
            return self.loss_weight * torch.stack(per_block).mean()
