"""NoiseMIMViT as a ViTDet backbone: windowed attention in most blocks.

ViTDet (Li et al., 2022) keeps the pre-trained plain ViT and, at detection
resolution, restricts attention in most blocks to non-overlapping windows of
the patch grid (zero-padded to a multiple of the window), with global
attention in a few blocks spread over the depth (ViT-B: blocks 2, 5, 8, 11).
Windowing only changes which tokens attend to which, so the parameters and
state-dict keys are exactly :class:`NoiseMIMViT`'s and a NoiseMIM checkpoint
loads with no missing key. ViTDet's relative position biases are not added:
they would be new, untrained parameters; the absolute position embedding is
resized from the pre-training grid instead (``VisionTransformer``'s load hook).
"""
import math
from typing import Optional, Sequence, Tuple, Union

import torch.nn.functional as F
from mmpretrain.models.backbones.vision_transformer import \
    TransformerEncoderLayer
from mmpretrain.models.utils import resize_pos_embed
from mmpretrain.registry import MODELS
from torch import Tensor

from .noisemim_vit import NoiseMIMViT


def _is_square(n: int) -> bool:
    """Whether ``n`` is the number of tokens of a square grid."""
    return n > 0 and math.isqrt(n)**2 == n


def window_partition(x: Tensor, window: int) -> Tuple[Tensor, Tuple[int, int]]:
    """Split a token grid into non-overlapping windows, zero-padding it.

    Args:
        x (Tensor): ``(B, H, W, C)`` tokens.
        window (int): Window side, in tokens.

    Returns:
        Tuple[Tensor, Tuple[int, int]]: ``(B * nH * nW, window**2, C)`` windows
        and the padded grid size ``(Hp, Wp)``.
    """
    B, H, W, C = x.shape
    pad_h, pad_w = -H % window, -W % window
    x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    Hp, Wp = H + pad_h, W + pad_w
    x = x.view(B, Hp // window, window, Wp // window, window, C)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window * window,
                                               C), (Hp, Wp)


def window_unpartition(windows: Tensor, window: int, padded: Tuple[int, int],
                       size: Tuple[int, int]) -> Tensor:
    """Inverse of :func:`window_partition`, dropping the padding.

    Args:
        windows (Tensor): ``(B * nH * nW, window**2, C)``.
        window (int): Window side, in tokens.
        padded (Tuple[int, int]): The padded grid ``(Hp, Wp)``.
        size (Tuple[int, int]): The grid ``(H, W)`` before padding.

    Returns:
        Tensor: ``(B, H, W, C)`` tokens.
    """
    (Hp, Wp), (H, W) = padded, size
    C = windows.shape[-1]
    x = windows.view(-1, Hp // window, Wp // window, window, window, C)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(-1, Hp, Wp, C)
    return x[:, :H, :W]


def windowed_block_forward(layer: TransformerEncoderLayer, x: Tensor,
                           size: Tuple[int, int], window: int) -> Tensor:
    """mmpretrain's ``TransformerEncoderLayer.forward`` with the attention
    restricted to windows.

    Drop path and layer scale act on the whole image's residual branch, as
    in the global blocks (and in ViTDet), not per window.

    Args:
        layer (TransformerEncoderLayer): The block.
        x (Tensor): ``(B, H * W, C)`` patch tokens (no class token).
        size (Tuple[int, int]): The patch grid ``(H, W)``.
        window (int): Window side, in tokens.

    Returns:
        Tensor: ``(B, H * W, C)``.
    """
    attn = layer.attn
    B, N, C = x.shape
    windows, padded = window_partition(layer.ln1(x).view(B, *size, C), window)
    n = windows.shape[1]
    qkv = attn.qkv(windows).reshape(-1, n, 3, attn.num_heads,
                                    attn.head_dims).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    out = attn.scaled_dot_product_attention(
        q, k, v, dropout_p=attn.attn_drop if attn.training else 0.)
    out = attn.proj(out.transpose(1, 2).reshape(-1, n, attn.embed_dims))
    out = window_unpartition(out, window, padded, size).reshape(B, N, C)
    x = x + attn.out_drop(attn.gamma1(attn.proj_drop(out)))
    return layer.ffn(layer.ln2(x), identity=x)


@MODELS.register_module()
class NoiseMIMViTDet(NoiseMIMViT):
    """A NoiseMIM ViT for detection, with ViTDet's windowed attention.

    Outputs the patch-token feature map (``out_type='featmap'``, no class
    token) for ViTDet's simple feature pyramid (``NoiseMIMSimpleFPN``). It is
    built without the pre-training parameters (``pretrain=False``: no
    ``mask_token`` or ``time_embed``, so no parameter goes unused under
    distributed data-parallel training); ``StrictPretrained`` drops them from
    a pre-training checkpoint and every other key loads.

    Args:
        arch, img_size, patch_size: As :class:`NoiseMIMViT`.
        window_size (int): Window side in patches; ``0`` keeps global
            attention in every block. Defaults to 14 (ViTDet: the 224 px
            pre-training grid of 16 px patches).
        global_attn_indexes (Sequence[int], optional): Blocks that keep
            global attention. Defaults to ViTDet's: the last block of each
            quarter of the depth (ViT-B: 2, 5, 8, 11; ViT-L: 5, 11, 17, 23).
        out_type (str): As ``VisionTransformer``. Defaults to ``'featmap'``.
        with_cls_token (bool): As ``VisionTransformer``; must be False with
            windows. Defaults to False.
        mask_unit (int, optional): Pre-training only; defaults to one patch
            so that any detection resolution is accepted.
        pretrain (bool): Must stay False (a downstream backbone).
            Defaults to False.
        **kwargs: As :class:`NoiseMIMViT`.
    """

    def __init__(self,
                 arch: Union[str, dict] = 'b',
                 img_size: int = 224,
                 patch_size: int = 16,
                 window_size: int = 14,
                 global_attn_indexes: Optional[Sequence[int]] = None,
                 out_type: str = 'featmap',
                 with_cls_token: bool = False,
                 mask_unit: Optional[int] = None,
                 pretrain: bool = False,
                 **kwargs) -> None:
        if pretrain:
            raise ValueError('NoiseMIMViTDet is a downstream backbone: '
                             'pretrain must be False (got True); pre-train '
                             'with NoiseMIMViT.')
        super().__init__(
            arch=arch,
            img_size=img_size,
            patch_size=patch_size,
            out_type=out_type,
            with_cls_token=with_cls_token,
            mask_unit=mask_unit or patch_size,
            pretrain=False,
            **kwargs)
        if not isinstance(window_size, int) or window_size < 0:
            raise ValueError('window_size must be an int >= 0 (0: global '
                             f'attention everywhere), got {window_size!r}')
        if window_size and with_cls_token:
            raise ValueError('windowed attention partitions the patch grid; '
                             'set with_cls_token=False (got True)')
        if global_attn_indexes is None:
            step = max(self.num_layers // 4, 1)
            global_attn_indexes = range(step - 1, self.num_layers, step)
        bad = [i for i in global_attn_indexes
               if not 0 <= i < self.num_layers]
        if bad:
            raise ValueError(
                f'global_attn_indexes must be block indexes in [0, '
                f'{self.num_layers - 1}], got {list(global_attn_indexes)}')
        self.window_size = window_size
        self.global_attn_indexes = tuple(global_attn_indexes)

    def _prepare_pos_embed(self, state_dict: dict, prefix: str, *args,
                           **kwargs) -> None:
        """Drop the class token's position embedding, then resize.

        mmpretrain's hook (1.2.0) drops it only when the patch grid keeps its
        size; from 224 px (``1 + 14 * 14``) to 1024 px without a class token
        it fails. A length ``1 + n * n`` (not itself a square) is a grid with
        a class token in front.

        Args:
            state_dict (dict): The weights being loaded (changed in place).
            prefix (str): This module's prefix in ``state_dict``.
        """
        name = prefix + 'pos_embed'
        if not self.with_cls_token and name in state_dict:
            length = state_dict[name].shape[1]
            if not _is_square(length) and _is_square(length - 1):
                state_dict[name] = state_dict[name][:, 1:]
        super()._prepare_pos_embed(state_dict, prefix, *args, **kwargs)

    def is_windowed(self, index: int) -> bool:
        """Whether block ``index`` attends within windows."""
        return bool(self.window_size) and \
            index not in self.global_attn_indexes

    def forward(self, x: Tensor, *args, **kwargs) -> Tuple[Tensor, ...]:
        """Encode images as ``VisionTransformer`` does, with windows.

        Args:
            x (Tensor): ``(B, C, H, W)`` images; any size (the patch grid is
                padded to window multiples inside the windowed blocks).

        Returns:
            tuple[Tensor]: The outputs of the blocks in ``out_indices``.
        """
        if args or kwargs:
            raise ValueError('NoiseMIMViTDet is a downstream backbone and '
                             'takes only images; pre-train with NoiseMIMViT.')
        if not self.window_size:
            return super().forward(x)
        x, size = self.patch_embed(x)
        x = x + resize_pos_embed(
            self.pos_embed,
            self.patch_resolution,
            size,
            mode=self.interpolate_mode,
            num_extra_tokens=self.num_extra_tokens)
        x = self.pre_norm(self.drop_after_pos(x))
        outs = []
        for i, layer in enumerate(self.layers):
            if self.is_windowed(i):
                x = windowed_block_forward(layer, x, size, self.window_size)
            else:
                x = layer(x)
            if i == len(self.layers) - 1 and self.final_norm:
                x = self.ln1(x)
            if i in self.out_indices:
                outs.append(self._format_output(x, size))
        return tuple(outs)
