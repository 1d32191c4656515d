"""Cross-corruption attention masses read off the encoder's own attention.

``sum_{j in S} A_ij`` is the output of attention with the 0/1 indicator of
``S`` as the value. So appending the indicators of ``S`` and ``M`` to every
head's value gives, from the block's ONE fused attention call, its usual
output in the first ``head_dims`` channels and, for every query row ``i``::

    mass_S[i] = sum_{j in S} A_ij        mass_M[i] = sum_{j in M} A_ij

in the next two. ``c = mean_{i in M} mass_S[i] + mean_{i in S} mass_M[i]``
(METHOD.md §6) is then a weighted sum of those two channels, and the fused
kernel's backward gives the loss's exact gradient w.r.t. the queries and keys.

Only the value carries the mass channels where the attention kernel accepts
a value wider than the query and key (CUDA's cuDNN and memory-efficient
kernels, and the math one): the logits are then computed at the block's own
width. The CPU flash kernel wants q, k and v equally wide, so on other
devices the queries and keys are zero-padded to the value's width, with the
scale ``head_dims ** -0.5`` passed explicitly so that the logits are
unchanged (:func:`value_only_mass`).

The block's output projection reads the padded output in place, through
zero weight columns at the mass channels and two more rows per head that
copy them out (:meth:`MassProbe.project`), so the output is not copied.
The disruption loss thus rides on attention that runs anyway: no second
attention call, no ``N x N`` probabilities, and in the autocast dtype, so that
the fused kernels can run on a GPU; only the final weighted sum of the mass
channels runs in fp32.

Everything that depends only on the corruption (the indicator channels, the
row weights, the copying rows) is built once per step in :class:`MassProbe`,
on the corruption's device.
"""
import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.profiler import record_function

from .corruption import Corruption

MASS_CHANNELS = 2  # mass on S (read by the rows of M), mass on M (rows of S)
# Fused GPU attention kernels (flash, cuDNN, memory-efficient) want each head
# width to be a multiple of 8. The CPU flash kernel takes any width as long as
# q, k and v share it (measured: 66 and 72 cost the same on CPU).
CUDA_HEAD_ALIGN = 8
# record_function ranges (tools/benchmark.py's step breakdown).
LOSS_RANGE = 'noisemim.disruption_loss'
ATTENTION_RANGE = 'noisemim.mass_attention'


def value_only_mass(device_type: str) -> bool:
    """Whether only the value carries the mass channels on this device.

    CUDA's cuDNN and memory-efficient attention (and the math fallback)
    accept a value head wider than the query/key head, each a multiple of 8;
    flash attention does not, and is then not selected. The CPU flash kernel
    wants q, k and v equally wide: elsewhere q and k are zero-padded too.

    Args:
        device_type (str): ``'cpu'``, ``'cuda'``, ...

    Returns:
        bool: True on CUDA.
    """
    return device_type == 'cuda'


def mass_value_width(head_dims: int, device_type: str) -> int:
    """The value's head width once the mass channels are appended (and the
    query's and key's, where they are padded too).

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
    built once per step on the corruption's device.

    Args:
        corruption (Corruption): The batch's corruption.
        num_extra_tokens (int): Tokens before the patches (class token).
        head_dims (int): The head width of the encoder's blocks.
        dtype (torch.dtype): The dtype of the queries, keys and values.
        device_type (str, optional): Sets the layout: the padded width (see
            :func:`mass_value_width`) and whether only the value is padded
            (:func:`value_only_mass`). Defaults to the corruption's device.
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
        device_type = device_type or device.type
        self.head_dims = head_dims
        self.width = mass_value_width(head_dims, device_type)
        self.value_only = value_only_mass(device_type)
        self.num_extra_tokens = num_extra_tokens
        self.masked_index = corruption.masked_index + num_extra_tokens
        self.noised_index = corruption.noised_index + num_extra_tokens
        pad = (num_extra_tokens, 0)
        is_m = F.pad(mask, pad).float()
        is_s = F.pad(noised, pad).float()
        # What is appended per token, (B, L, 1, extra) to v alone, or
        # (B, L, 3, 1, extra) to (q, k, v): zeros for q and k; the indicators
        # of S and M for v.
        if self.value_only:
            extra = torch.zeros(B, L, 1, self.width - head_dims,
                                device=device)
            extra[:, :, 0, 0] = is_s
            extra[:, :, 0, 1] = is_m
        else:
            extra = torch.zeros(B, L, 3, 1, self.width - head_dims,
                                device=device)
            extra[:, :, 2, 0, 0] = is_s
            extra[:, :, 2, 0, 1] = is_m
        self.extra = extra.to(dtype)
        # The rows of M read the mass on S, the rows of S the mass on M.
        num_m = max(corruption.masked_index.shape[1], 1)
        num_s = max(corruption.noised_index.shape[1], 1)
        self.row_weights = torch.stack([is_m / num_m, is_s / num_s], -1)
        self._selectors = {}

    def split_qkv(self, qkv: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """A block's ``(B, L, 3, H, head_dims)`` queries, keys and values as
        ``(B, H, L, width)`` attention inputs with the mass channels.

        With :attr:`value_only` the value alone is copied (one
        ``(B, L, H, width)`` tensor) and the queries and keys stay views at
        ``head_dims``; otherwise q, k and v are copied at ``width`` at once.

        Args:
            qkv (Tensor): ``(B, L, 3, H, head_dims)``.

        Returns:
            Tuple[Tensor, Tensor, Tensor]: q, k and v, ``(B, H, L, .)``.
        """
        H = qkv.shape[3]
        extra = self.extra.to(qkv.dtype)
        if not self.value_only:
            extra = extra.expand(-1, -1, -1, H, -1)
            return torch.cat([qkv, extra], -1).permute(2, 0, 3, 1, 4).unbind(0)
        q, k, v = qkv.unbind(2)
        v = torch.cat([v, extra.expand(-1, -1, H, -1)], -1)
        return q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)

    def selector(self, num_heads: int, like: Tensor) -> Tensor:
        """``(2 H, H * width)``: rows that copy each head's mass channels out
        of the padded attention output (one 1 per row), made once per step
        on ``like``'s device.

        Args:
            num_heads (int): The block's heads ``H``.
            like (Tensor): Gives the dtype and device.
        """
        key = (num_heads, like.dtype)
        if key not in self._selectors:
            d, w = self.head_dims, self.width
            rows = torch.zeros(num_heads, MASS_CHANNELS, num_heads, w,
                               dtype=like.dtype, device=like.device)
            eye = torch.eye(num_heads, dtype=like.dtype, device=like.device)
            for c in range(MASS_CHANNELS):
                rows[:, c, :, d + c] = eye
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
        product. The weighted sum of the mass channels that gives ``c`` runs
        in fp32, outside autocast.

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
            return y, mass_reduction(mass.view(B, L, H, MASS_CHANNELS),
                                     self.row_weights)


def mass_reduction(mass: Tensor, row_weights: Tensor) -> Tensor:
    """``c`` per sample and head: the mass channels weighted by their rows,
    summed, in fp32 (autocast would run the product in its lower dtype).

    Args:
        mass (Tensor): ``(B, L, H, 2)`` the mass channels of every row.
        row_weights (Tensor): ``(B, L, 2)`` fp32 ``1/|M|`` on the rows of
            ``M`` (channel 0) and ``1/|S|`` on the rows of ``S`` (channel 1).

    Returns:
        Tensor: ``(B, H)`` fp32 ``c``.
    """
    with torch.autocast(mass.device.type, enabled=False):
        return torch.einsum('blhc,blc->bh', mass.float(), row_weights.float())


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
    # The profiler ranges: what the loss adds (padding v, or q, k and v, and
    # the projection's weight, the reduction) and the probed blocks'
    # attention call and projection (mostly the block's own work).
    with record_function(LOSS_RANGE):
        q, k, v = probe.split_qkv(qkv)
    with record_function(ATTENTION_RANGE):
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, scale=probe.head_dims**-0.5)
    return probe.project(out, proj)
