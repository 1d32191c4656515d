"""Cross-corruption attention masses read off the encoder's own attention.

``sum_{j in S} A_ij`` is the output of attention with the 0/1 indicator of
``S`` as the value. So appending the indicators of ``S`` and ``M`` to every
head's value (queries and keys zero-padded to the same width, the scale
``head_dims ** -0.5`` passed explicitly so that the logits are unchanged)
gives, from the block's ONE fused attention call, its usual output in the
first ``head_dims`` channels and, for every query row ``i``::

    mass_S[i] = sum_{j in S} A_ij        mass_M[i] = sum_{j in M} A_ij

in the next two. ``c = mean_{i in M} mass_S[i] + mean_{i in S} mass_M[i]``
(METHOD.md §6) is then a weighted sum of those two channels, and the fused
kernel's backward gives the loss's exact gradient w.r.t. the queries and keys.
The disruption loss thus rides on attention that runs anyway: no second
attention call, no ``N x N`` probabilities, and in the autocast dtype, so that
flash/cuDNN attention can run on a GPU.

Everything that depends only on the corruption (the indicator channels, the
row weights) is built once per step in :class:`MassProbe`.
"""
import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.profiler import record_function

from .corruption import Corruption

MASS_CHANNELS = 2  # mass on S (read by the rows of M), mass on M (rows of S)
# Fused GPU attention kernels (flash, cuDNN, memory-efficient) want the head
# width to be a multiple of 8. The CPU flash kernel takes any width as long as
# q, k and v share it (measured: 66 and 72 cost the same on CPU).
CUDA_HEAD_ALIGN = 8
# record_function ranges (tools/benchmark.py's step breakdown).
LOSS_RANGE = 'noisemim.disruption_loss'
ATTENTION_RANGE = 'noisemim.mass_attention'


def mass_value_width(head_dims: int, device_type: str) -> int:
    """The head width of q, k and v once the mass channels are appended.

    Args:
        head_dims (int): The block's head width.
        device_type (str): ``'cpu'``, ``'cuda'``, ...

    Returns:
        int: ``head_dims + 2`` on CPU; on an accelerator, that rounded up to
        a multiple of 8 so that its fused attention kernels accept it.
    """
    width = head_dims + MASS_CHANNELS
    if device_type == 'cpu':
        return width
    return math.ceil(width / CUDA_HEAD_ALIGN) * CUDA_HEAD_ALIGN


def compute_dtype(tokens: Tensor) -> torch.dtype:
    """The dtype the encoder's matrix products run in (autocast's, if on)."""
    device_type = tokens.device.type
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return tokens.dtype


class MassProbe:
    """One step's indicator channels and row weights, built once per step.

    Args:
        corruption (Corruption): The batch's corruption.
        num_extra_tokens (int): Tokens before the patches (class token).
        head_dims (int): The head width of the encoder's blocks.
        dtype (torch.dtype): The dtype of the queries, keys and values.
        device_type (str, optional): Sets the padded width (see
            :func:`mass_value_width`). Defaults to the corruption's device.
    """

    def __init__(self,
                 corruption: Corruption,
                 num_extra_tokens: int,
                 head_dims: int,
                 dtype: torch.dtype,
                 device_type: Optional[str] = None) -> None:
        mask, noised = corruption.mask, corruption.noised
        B, N = mask.shape
        L = N + num_extra_tokens
        device = mask.device
        self.head_dims = head_dims
        self.width = mass_value_width(head_dims, device_type or device.type)
        self.num_extra_tokens = num_extra_tokens
        self.masked_index = corruption.masked_index + num_extra_tokens
        self.noised_index = corruption.noised_index + num_extra_tokens
        pad = (num_extra_tokens, 0)
        is_m = F.pad(mask, pad).float()
        is_s = F.pad(noised, pad).float()
        # What is appended to (q, k, v) per token, (B, L, 3, 1, extra):
        # zeros for q and k; the indicators of S and M for v.
        extra = torch.zeros(B, L, 3, 1, self.width - head_dims, device=device)
        extra[:, :, 2, 0, 0] = is_s
        extra[:, :, 2, 0, 1] = is_m
        self.extra = extra.to(dtype)
        # The rows of M read the mass on S, the rows of S the mass on M.
        num_m = max(corruption.masked_index.shape[1], 1)
        num_s = max(corruption.noised_index.shape[1], 1)
        self.row_weights = torch.stack([is_m / num_m, is_s / num_s], -1)

    def pad_qkv(self, qkv: Tensor) -> Tensor:
        """Append the mass channels to a block's ``(B, L, 3, H, head_dims)``
        queries, keys and values (one copy, as ``(B, L, 3, H, width)``)."""
        extra = self.extra.to(qkv.dtype).expand(-1, -1, -1, qkv.shape[3], -1)
        return torch.cat([qkv, extra], -1)

    def cross_mass(self, channels: Tensor) -> Tensor:
        """``c`` per sample and head from the attention output's extra channels.

        Args:
            channels (Tensor): ``(B, H, L, width - head_dims)``, the output
                channels after the first ``head_dims``.

        Returns:
            Tensor: ``(B, H)`` fp32, ``mean_{i in M} sum_{j in S} A_ij +
            mean_{i in S} sum_{j in M} A_ij``.
        """
        mass = channels[..., :MASS_CHANNELS].float()
        return torch.einsum('bhlc,blc->bh', mass, self.row_weights)


def attention_with_mass(qkv: Tensor, probe: MassProbe,
                        attn_mask: Optional[Tensor] = None):
    """One fused attention call giving the output and ``c`` of a block.

    Args:
        qkv (Tensor): ``(B, L, 3, H, head_dims)`` queries, keys and values.
        probe (MassProbe): The step's indicator channels.
        attn_mask (Tensor, optional): An attention mask or additive bias.

    Returns:
        Tuple[Tensor, Tensor]: ``(B, H, L, head_dims)`` the attention output
        (as without the probe), and ``(B, H)`` the mass ``c``.
    """
    d = probe.head_dims
    # The profiler ranges: what the loss adds (padding, split, reduction)
    # and the probed blocks' whole attention call (mostly the block's own).
    with record_function(LOSS_RANGE):
        qkv = probe.pad_qkv(qkv)
    q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
    with record_function(ATTENTION_RANGE):
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, scale=d**-0.5)
    with record_function(LOSS_RANGE):
        out, channels = out.split([d, probe.width - d], -1)
        return out, probe.cross_mass(channels)
