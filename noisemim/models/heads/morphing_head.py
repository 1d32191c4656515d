"""DTM's head: a linear prediction of teacher tokens, with the morphed loss."""
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmpretrain.registry import MODELS
from torch import Tensor, nn

from ..morphing import morph_average


@MODELS.register_module()
class MorphingHead(BaseModule):
    """Linear prediction of the teacher's tokens, compared after morphing.

    For each of the ``L`` source matrices ``S``, the student's predictions and
    the teacher's targets are both averaged within the groups of ``S`` and
    compared token by token with smooth-L1 (mean over channels, then over the
    tokens); the loss is the mean over the ``L`` morphings. With no merge
    (``S = I``) it is plain token-wise distillation.

    Args:
        in_channels (int): Student token width.
        out_channels (int): Teacher token width (512 for CLIP ViT-B/16).
        beta (float): Smooth-L1's change point. Defaults to 2.0.
        init_cfg (dict, optional): Initialisation config.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 beta: float = 2.0,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if not beta > 0:
            raise ValueError(f'beta must be > 0, got {beta!r}')
        self.predictor = nn.Linear(in_channels, out_channels)
        self.beta = beta

    def forward(self, tokens: Tensor) -> Tensor:
        """Predict ``(B, N, out_channels)`` from ``(B, N, in_channels)``."""
        return self.predictor(tokens)

    def loss(self,
             tokens: Tensor,
             target: Tensor,
             sources: Sequence[Tensor],
             mask: Optional[Tensor] = None) -> Tensor:
        """The morphed distillation loss.

        Args:
            tokens (Tensor): ``(B, N, in_channels)`` student tokens.
            target (Tensor): ``(B, N, out_channels)`` teacher tokens.
            sources (Sequence[Tensor]): ``L`` source matrices ``(B, G, N)``.
            mask (Tensor, optional): ``(B, N)``; the loss covers these tokens
                only. By default all ``N`` tokens, as DTM does.

        Returns:
            Tensor: The mean over the morphings of the smooth-L1 loss.
        """
        pred = self(tokens).float()
        target = target.float()
        if pred.shape != target.shape:
            raise ValueError(f'The predictions {tuple(pred.shape)} and the '
                             f'teacher tokens {tuple(target.shape)} differ: '
                             'the student and the teacher need the same '
                             'patch grid and out_channels = teacher width.')
        if not sources:
            raise ValueError('sources must hold at least one source matrix')
        losses = []
        for source in sources:  # the L morphings (L = 2 by default)
            per_token = F.smooth_l1_loss(
                morph_average(pred, source),
                morph_average(target, source),
                reduction='none',
                beta=self.beta).mean(-1)
            if mask is None:
                losses.append(per_token.mean())
            else:
                weight = mask.to(per_token.dtype)
                losses.append((per_token * weight).sum() /
                              weight.sum().clamp(min=1.))
        return torch.stack(losses).mean()
