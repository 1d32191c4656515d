"""A linear head that regresses a target for a subset of tokens."""
from typing import Optional

from mmengine.model import BaseModule
from mmpretrain.registry import MODELS
from torch import Tensor, nn


@MODELS.register_module()
class TokenRegressionHead(BaseModule):
    """Linear prediction from tokens, with a reconstruction loss.

    NoiseMIM uses two of them, which is part of disentangling its two tasks:
    the MIM head (masked patches) and the denoise head (noised patches).

    Args:
        in_channels (int): Token width.
        out_channels (int): Target width (``patch_size**2 * 3`` for pixels).
        loss (dict): The loss, by default mmpretrain's
            ``PixelReconstructionLoss`` with L2.
        loss_weight (float): Multiplies the loss (its share of the total).
            Defaults to 1.0.
        init_cfg (dict, optional): Initialisation config.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 loss: dict = dict(
                     type='PixelReconstructionLoss', criterion='L2'),
                 loss_weight: float = 1.0,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if not (isinstance(loss_weight, (int, float)) and loss_weight >= 0):
            raise ValueError('loss_weight must be a number >= 0, got '
                             f'{loss_weight!r}')
        self.predictor = nn.Linear(in_channels, out_channels)
        self.loss_module = MODELS.build(loss)
        self.loss_weight = float(loss_weight)

    def forward(self, tokens: Tensor) -> Tensor:
        """Predict ``(B, n, out_channels)`` from ``(B, n, in_channels)``."""
        return self.predictor(tokens)

    def loss(self,
             tokens: Tensor,
             target: Tensor,
             mask: Optional[Tensor] = None) -> Tensor:
        """The loss of the prediction from ``tokens`` against ``target``.

        Args:
            tokens (Tensor): ``(B, n, in_channels)``.
            target (Tensor): ``(B, n, out_channels)``.
            mask (Tensor, optional): ``(B, n)``; 1 where the loss applies.

        Returns:
            Tensor: ``loss_weight`` times the mean over channels, then over
            the tokens of ``mask``.
        """
        pred = self(tokens).float()
        if mask is not None:
            mask = mask.float()
        loss = self.loss_module(pred, target.float(), mask)
        return loss if self.loss_weight == 1 else self.loss_weight * loss
