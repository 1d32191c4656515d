"""MaskDiT-style pre-training (our reimplementation): decoder-style,
conjunctive, pixel noise.

The whole image is noised at a level ``t``, then masked MAE-style; the encoder
(:class:`MaskDiTViT`, with an embedding of ``t``) sees the visible noised
patches, and MAE's decoder restores clean pixels everywhere::

    x_t          = sqrt(ab(t)) * x + sqrt(1 - ab(t)) * rms(x) * eps  (all)
    pred         = MAEPretrainDecoder(MaskDiTViT(visible patches of x_t, t))
    L_mim        = || pred_M - target(x_M) ||^2      (masked: reconstruction)
    L_denoise    = || pred_V - target(x_V) ||^2      (visible: denoising)
"""
from typing import Dict, List, Optional

from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample
from torch import Tensor

from ..backbones.maskdit_vit import MaskDiTViT
from ..patches import unpatchify
from ..pixel_noise import PixelNoise, draw_pixel_noise, noise_patches
from .pixel_noise_mae import PixelNoiseMAE


@MODELS.register_module()
class MaskDiT(PixelNoiseMAE):
    """MaskDiT-style pre-training on mmpretrain's MAE parts.

    Args:
        backbone (dict): A :class:`MaskDiTViT` config.
        neck (dict): An ``MAEPretrainDecoder`` config.
        head (dict): An ``MAEPretrainHead`` config (target and loss).
        t_range (Sequence[float]): Range of ``t``. Defaults to ``(0., 1.)``.
        data_preprocessor (dict, optional): Defaults to
            ``SelfSupDataPreprocessor``.
        init_cfg (dict, optional): Initialisation config.
    """
    required = ('backbone', MaskDiTViT)

    def loss(self,
             inputs: Tensor,
             data_samples: List[DataSample],
             noise: Optional[PixelNoise] = None,
             **kwargs) -> Dict[str, Tensor]:
        """The loss terms of a batch.

        Args:
            inputs (Tensor): ``(B, 3, H, W)`` normalised images.
            data_samples (List[DataSample]): Unused.
            noise (PixelNoise, optional): Drawn if not given.

        Returns:
            Dict[str, Tensor]: ``loss_mim`` on the masked patches and
            ``loss_denoise`` on the visible (noised) ones, both against the
            clean pixels.
        """
        patch_size = self.head.patch_size
        grid = (inputs.shape[2] // patch_size, inputs.shape[3] // patch_size)
        if noise is None:
            noise = draw_pixel_noise(inputs.shape[0], grid[0] * grid[1],
                                     patch_size**2 * inputs.shape[1],
                                     self.t_range, inputs.device)
        noised = unpatchify(
            noise_patches(inputs, patch_size, noise), patch_size, grid)
        latent, mask, ids_restore = self.backbone(noised, t=noise.t)
        pred = self.neck(latent, ids_restore)
        return dict(
            loss_mim=self.head.loss(pred, inputs, mask),
            loss_denoise=self.head.loss(pred, inputs, 1 - mask))
