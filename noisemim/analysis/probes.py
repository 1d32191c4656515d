"""Per-block queries, keys and features of a ViT encoder on clean images.

Every analysis looks at the encoder as it is transferred: mmpretrain's
``VisionTransformer.forward`` on uncorrupted images (for a NoiseMIM backbone
this is exactly its own forward; for MAE's ``MAEViT`` it skips the masking).
Forward hooks on each block's ``attn.qkv`` Linear and on the block itself
record what the fused attention does not return, so the same probe works for
any ``VisionTransformer`` subclass of this project or of mmpretrain.
"""
from typing import List, NamedTuple, Sequence

import torch
from mmpretrain.models.backbones import VisionTransformer
from torch import Tensor, nn

from ..models.backbones.noisemim_vit import QueryKey


class EncoderProbe(NamedTuple):
    """What one clean forward pass recorded.

    Attributes:
        attention (List[QueryKey]): Per block, ``q`` and ``k`` of shape
            ``(B, heads, L, head_dims)`` with ``L = num_extra_tokens + N``.
        features (List[Tensor]): Per block, its output ``(B, L, D)`` (the
            residual stream, before the final norm).
        num_extra_tokens (int): Tokens before the patches (the class token).
        patch_resolution (tuple): The patch grid ``(h, w)``.
    """
    attention: List[QueryKey]
    features: List[Tensor]
    num_extra_tokens: int
    patch_resolution: tuple


def vit_encoder(model: nn.Module) -> VisionTransformer:
    """The ViT encoder of a model: its ``backbone``, or the model itself.

    Args:
        model (nn.Module): A pre-training model (NoiseMIM, MAE, ...) or a
            ViT backbone.

    Returns:
        VisionTransformer: The encoder.
    """
    encoder = getattr(model, 'backbone', model)
    if not isinstance(encoder, VisionTransformer):
        raise TypeError(
            'the analyses need an mmpretrain VisionTransformer encoder '
            f'(model.backbone), got {type(encoder).__name__}')
    return encoder


def attention_logits(qk: QueryKey) -> Tensor:
    """Scaled dot products ``q k^T / sqrt(head_dims)``, ``(B, heads, L, L)``.

    Args:
        qk (QueryKey): Queries and keys of one block.

    Returns:
        Tensor: The attention logits (float32).
    """
    q, k = qk.q.float(), qk.k.float()
    return q @ k.transpose(-2, -1) * q.shape[-1]**-0.5


@torch.no_grad()
def probe_encoder(model: nn.Module, inputs: Tensor,
                  blocks: Sequence[int] = ()) -> EncoderProbe:
    """Run the clean encoder once and record each block's q, k and output.

    Args:
        model (nn.Module): A model with a ViT ``backbone`` (or a ViT).
        inputs (Tensor): ``(B, 3, H, W)`` normalised images.
        blocks (Sequence[int]): Blocks to record; all when empty.

    Returns:
        EncoderProbe: The queries, keys and features of the blocks, in the
        order of ``blocks``.
    """
    vit = vit_encoder(model)
    blocks = list(blocks) or list(range(len(vit.layers)))
    bad = [b for b in blocks if not 0 <= b < len(vit.layers)]
    if bad:
        raise ValueError(f'blocks must be in [0, {len(vit.layers) - 1}], '
                         f'got {bad}')
    qkv, features = {}, {}

    def keep(store: dict, index: int):
        return lambda module, args, output: store.__setitem__(index, output)

    handles = []
    for b in blocks:
        layer = vit.layers[b]
        handles.append(layer.attn.qkv.register_forward_hook(keep(qkv, b)))
        handles.append(layer.register_forward_hook(keep(features, b)))
    try:
        VisionTransformer.forward(vit, inputs)
    finally:
        for handle in handles:
            handle.remove()

    attention = []
    for b in blocks:
        attn = vit.layers[b].attn
        B, L, _ = qkv[b].shape
        q, k, _ = qkv[b].reshape(B, L, 3, attn.num_heads,
                                 attn.head_dims).permute(2, 0, 3, 1, 4)
        attention.append(QueryKey(q, k))
    grid = (inputs.shape[2] // vit.patch_embed.projection.stride[0],
            inputs.shape[3] // vit.patch_embed.projection.stride[1])
    return EncoderProbe(attention, [features[b] for b in blocks],
                        vit.num_extra_tokens, grid)
