"""The class token's attention over the image patches.

The class token's attention row in a block is a distribution over all tokens
(class token and patches). The map drawn is its patch part renormalised to a
distribution over the patches, so every head's map sums to 1; the share the
class token keeps for the extra tokens (itself) is reported beside it.
"""
from typing import NamedTuple, Tuple

from torch import Tensor

from ..models.backbones.noisemim_vit import QueryKey
from .probes import attention_logits


class ClassAttention(NamedTuple):
    """The class token's attention in one block.

    Attributes:
        maps (Tensor): ``(B, heads, h, w)``, each head's attention over the
            patches, summing to 1.
        mean_map (Tensor): ``(B, h, w)``, the mean over heads (sums to 1).
        extra_share (Tensor): ``(B, heads)``, the attention mass on the
            extra tokens (the class token itself) before renormalising.
    """
    maps: Tensor
    mean_map: Tensor
    extra_share: Tensor


def class_token_attention(qk: QueryKey, num_extra_tokens: int,
                          patch_resolution: Tuple[int, int]) -> ClassAttention:
    """The attention of the class token (query 0) over the patches.

    Args:
        qk (QueryKey): Queries and keys of the block.
        num_extra_tokens (int): Tokens before the patches; must be at least
            1 (the class token is token 0).
        patch_resolution (Tuple[int, int]): The patch grid ``(h, w)``.

    Returns:
        ClassAttention: Per-head maps, their mean and the extra-token share.
    """
    if num_extra_tokens < 1:
        raise ValueError('class-token attention maps need a ViT with a class '
                         'token (with_cls_token=True)')
    logits = attention_logits(QueryKey(qk.q[:, :, :1], qk.k))
    row = logits.softmax(-1)[:, :, 0]  # (B, heads, L)
    patches = row[..., num_extra_tokens:]
    h, w = patch_resolution
    if patches.shape[-1] != h * w:
        raise ValueError(f'{patches.shape[-1]} patch tokens do not form a '
                         f'{h}x{w} grid')
    share = patches.sum(-1, keepdim=True)
    maps = (patches / share).reshape(*patches.shape[:2], h, w)
    return ClassAttention(maps, maps.mean(1), 1 - share.squeeze(-1))
