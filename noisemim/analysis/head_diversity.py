"""Attention-head diversity: KL divergence between the heads of each block.

For the attention distributions ``P_h(. | i)`` of heads ``h`` over the keys
for every query token ``i``, the diversity of a block is read from the matrix

    ``K[h, g] = mean over images and queries i of KL(P_h(.|i) || P_g(.|i))``

``K`` has a zero diagonal; identical heads give ``K = 0``. A head's value is
its mean KL to the other heads, a block's value the mean over all pairs.
"""
from typing import Dict, List, Optional

import torch
from torch import Tensor, nn

from ..models.backbones.noisemim_vit import QueryKey
from .images import image_batches
from .probes import attention_logits, probe_encoder


def head_kl_matrix(log_probs: Tensor) -> Tensor:
    """Pairwise KL divergences between heads, averaged over images and queries.

    Args:
        log_probs (Tensor): ``(B, heads, L_q, L_k)`` log attention
            probabilities (rows are distributions over the keys).

    Returns:
        Tensor: ``(heads, heads)``, ``K[h, g] = mean_{b, i} KL(P_h || P_g)``.
    """
    if log_probs.dim() != 4:
        raise ValueError('log_probs must be (B, heads, L_q, L_k), got shape '
                         f'{tuple(log_probs.shape)}')
    B, _, L, _ = log_probs.shape
    probs = log_probs.exp()
    neg_entropy = (probs * log_probs).sum(-1).mean(dim=(0, 2))
    cross = torch.einsum('bhqk,bgqk->hg', probs, log_probs) / (B * L)
    kl = neg_entropy[:, None] - cross
    return kl.fill_diagonal_(0.)


def per_head_kl(kl: Tensor) -> Tensor:
    """Each head's mean KL to the other heads.

    Args:
        kl (Tensor): ``(heads, heads)`` from :func:`head_kl_matrix`.

    Returns:
        Tensor: ``(heads,)``.
    """
    heads = kl.shape[0]
    if heads < 2:
        raise ValueError('head diversity needs at least 2 heads, got 1')
    return kl.sum(1) / (heads - 1)


class HeadDiversity:
    """Accumulates :func:`head_kl_matrix` per block over batches of images."""

    def __init__(self) -> None:
        self._sums: Dict[int, Tensor] = {}
        self.num_images = 0

    def update(self, blocks: List[int], attention: List[QueryKey]) -> None:
        """Add one batch.

        Args:
            blocks (List[int]): Block indices of ``attention``.
            attention (List[QueryKey]): Each block's queries and keys.
        """
        for b, qk in zip(blocks, attention):
            log_probs = attention_logits(qk).log_softmax(-1)
            kl = head_kl_matrix(log_probs) * qk.q.shape[0]
            self._sums[b] = self._sums.get(b, 0) + kl.double()
        self.num_images += attention[0].q.shape[0]

    def compute(self) -> Dict[int, Tensor]:
        """The mean KL matrix of each block over all images seen.

        Returns:
            Dict[int, Tensor]: Block index -> ``(heads, heads)`` float64.
        """
        if not self.num_images:
            raise RuntimeError('HeadDiversity.compute() before any update()')
        return {b: s / self.num_images for b, s in sorted(self._sums.items())}


def measure_head_diversity(model: nn.Module,
                           paths: List[str],
                           batch_size: int = 8,
                           desc: Optional[str] = None) -> Dict[int, Tensor]:
    """The KL matrix between heads of every block of a model's encoder.

    Args:
        model (nn.Module): A model with a ViT ``backbone``.
        paths (List[str]): The images.
        batch_size (int): Images per forward pass.
        desc (str, optional): Progress bar label; None hides it.

    Returns:
        Dict[int, Tensor]: Block -> ``(heads, heads)`` mean KL matrix.
    """
    meter = HeadDiversity()
    for inputs in image_batches(model, paths, batch_size, desc):
        probe = probe_encoder(model, inputs)
        meter.update(list(range(len(probe.attention))), probe.attention)
    return meter.compute()
