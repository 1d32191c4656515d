"""DiffMAE (our reimplementation): decoder-style, substitutive, pixel noise.

MAE's encoder sees the visible patches only. The decoder receives the masked
patches *noised* at a level ``t`` in place of mask tokens, attends to the
encoder's output and predicts their clean pixels::

    latent = MAEViT(visible patches)
    x_t    = sqrt(ab(t)) * x_M + sqrt(1 - ab(t)) * rms(x_M) * eps
    L_mim  = || DiffMAEDecoder(latent, x_t, t)_M - target(x_M) ||^2
"""
from typing import Dict, List, Optional

from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample
from torch import Tensor

from ..necks.diffmae_decoder import DiffMAEDecoder
from ..pixel_noise import PixelNoise, draw_pixel_noise, noise_patches
from .pixel_noise_mae import PixelNoiseMAE


@MODELS.register_module()
class DiffMAE(PixelNoiseMAE):
    """DiffMAE pre-training on mmpretrain's MAE parts.

    Args:
        backbone (dict): An ``MAEViT`` config.
        neck (dict): A :class:`DiffMAEDecoder` config.
        head (dict): An ``MAEPretrainHead`` config (target and loss).
        t_range (Sequence[float]): Range of ``t``. Defaults to ``(0., 1.)``.
        data_preprocessor (dict, optional): Defaults to
            ``SelfSupDataPreprocessor``.
        init_cfg (dict, optional): Initialisation config.
    """
    required = ('neck', DiffMAEDecoder)

    def loss(self,
             inputs: Tensor,
             data_samples: List[DataSample],
             noise: Optional[PixelNoise] = None,
             **kwargs) -> Dict[str, Tensor]:
        """The loss of a batch.

        Args:
            inputs (Tensor): ``(B, 3, H, W)`` normalised images.
            data_samples (List[DataSample]): Unused.
            noise (PixelNoise, optional): Drawn if not given.

        Returns:
            Dict[str, Tensor]: ``loss_mim``, the reconstruction of the clean
            masked patches.
        """
        latent, mask, ids_restore = self.backbone(inputs)
        patch_size = self.head.patch_size
        if noise is None:
            noise = draw_pixel_noise(inputs.shape[0], mask.shape[1],
                                     patch_size**2 * inputs.shape[1],
                                     self.t_range, inputs.device)
        noised = noise_patches(inputs, patch_size, noise)
        pred = self.neck(latent, ids_restore, noised, noise.t)
        return dict(loss_mim=self.head.loss(pred, inputs, mask))
