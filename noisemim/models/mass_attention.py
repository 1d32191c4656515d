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
The block's output projection reads the padded output in place, through
zero weight columns at the mass channels and two more rows per head that
copy them out (:meth:`MassProbe.project`), so the output is not copied.
The disruption loss thus rides on attention that runs anyway: no second
attention call, no ``N x N`` probabilities, and in the autocast dtype, so that
flash/cuDNN attention can run on a GPU.

Everything that depends only on the corruption (the indicator channels, the
row weights, the copying rows) is built once per step in :class:`MassProbe`.
"""
import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
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
    """One step's indicator channels, row weights and mass-copying rows,
    built once per step.

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
        self._selectors = {}

    def pad_qkv(self, qkv: Tensor) -> Tensor:
        """Append the mass channels to a block's ``(B, L, 3, H, head_dims)``
        queries, keys and values (one copy, as ``(B, L, 3, H, width)``)."""
        extra = self.extra.to(qkv.dtype).expand(-1, -1, -1, qkv.shape[3], -1)
        return torch.cat([qkv, extra], -1)

    def selector(self, num_heads: int, like: Tensor) -> Tensor:
        """``(2 H, H * width)``: rows that copy each head's mass channels out
        of the padded attention output (one 1 per row), made once per step.

        Args:
            num_heads (int): The block's heads ``H``.
            like (Tensor): Gives the dtype and device.
        """
        key = (num_heads, like.dtype)
        if key not in self._selectors:
            d, w = self.head_dims, self.width
            rows = torch.zeros(num_heads, MASS_CHANNELS, num_heads, w,
                               dtype=like.dtype, device=like.device)
            for c in range(MASS_CHANNELS):
                rows[:, c, :, d + c] = torch.eye(num_heads, dtype=like.dtype)
            self._selectors[key] = rows.view(num_heads * MASS_CHANNELS,
                                             num_heads * w)
        return self._selectors[key]

    def project(self, out: Tensor, proj: nn.Linear) -> Tuple[Tensor, Tensor]:
        """The block's output projection of the padded attention output, and
        ``c``, from one matrix product.

        The projection's weight gets zero columns at the mass channels (so
        the output is the usual ``proj(out)``) and ``2 H`` more rows that copy
        the mass channels out. The attention output is read in place (the
        fused kernels lay it out as ``(B, L, H, width)``): no copy of it is
        made, and its gradient, mass channels included, comes from the same
        product.

        Args:
            out (Tensor): ``(B, H, L, width)`` the padded attention output.
            proj (nn.Linear): The block's output projection.

        Returns:
            Tuple[Tensor, Tensor]: ``(B, L, D)`` the projection, and
            ``(B, H)`` fp32 ``c = mean_{i in M} sum_{j in S} A_ij +
            mean_{i in S} sum_{j in M} A_ij``.
        """
        B, H, L, w = out.shape
        d = self.head_dims
        with record_function(LOSS_RANGE):
            tokens = out.transpose(1, 2).reshape(B, L, H * w)
            weight = F.pad(proj.weight.view(-1, H, d), (0, w - d)).flatten(1)
            weight = torch.cat([weight, self.selector(H, weight)])
            bias = proj.bias
            if bias is not None:
                bias = F.pad(bias, (0, H * MASS_CHANNELS))
        with record_function(ATTENTION_RANGE):  # mostly the block's own
            y, mass = F.linear(tokens, weight, bias).split(
                [proj.out_features, H * MASS_CHANNELS], -1)
        with record_function(LOSS_RANGE):
            mass = mass.view(B, L, H, MASS_CHANNELS).float()
            return y, torch.einsum('blhc,blc->bh', mass, self.row_weights)


def attention_with_mass(qkv: Tensor,
                        proj: nn.Linear,
                        probe: MassProbe,
                        attn_mask: Optional[Tensor] = None
                        ) -> Tuple[Tensor, Tensor]:
    """One fused attention call and the output projection, with ``c``.

    Args:
        qkv (Tensor): ``(B, L, 3, H, head_dims)`` queries, keys and values.
        proj (nn.Linear): The block's output projection.
        probe (MassProbe): The step's indicator channels.
        attn_mask (Tensor, optional): An attention mask or additive bias.

    Returns:
        Tuple[Tensor, Tensor]: ``(B, L, D)`` the projected attention output
        (as without the probe), and ``(B, H)`` the mass ``c``.
    """
    # The profiler ranges: what the loss adds (padding q, k, v and the
    # projection's weight, the reduction) and the probed blocks' attention
    # call and projection (mostly the block's own work).
    with record_function(LOSS_RANGE):
        qkv = probe.pad_qkv(qkv)
    q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
    with record_function(ATTENTION_RANGE):
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, scale=probe.head_dims**-0.5)
    return probe.project(out, proj)
