"""NoiseMIM: masked image modeling plus feature noise inside the encoder.

``L = L_mim + L_denoise + lambda * L_disruption`` (see ``DisruptionLoss``):

1. mask ``M`` (mask token) and noise a disjoint set ``S`` of visible tokens at
   the input of block ``noise_layer``;
2. restore with two separate linear heads on the final normalised tokens: the
   MIM head on ``M``, the denoise head on ``S``;
3. keep ``M`` and ``S`` apart in attention (disruption loss, or a hard mask).
"""
from typing import Dict, List, Optional, Union

import torch.nn.functional as F
from mmpretrain.models.selfsup import BaseSelfSupervisor
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample
from torch import Tensor

from ..backbones.noisemim_vit import (NOISE_LAYER_PIXEL, EncoderOutput,
                                      NoiseMIMViT)
from ..corruption import Corruption
from ..patches import patchify

DENOISE_TARGETS = ('pixel', 'feature', 'noise')


def normalize_patches(patches: Tensor, eps: float = 1e-6) -> Tensor:
    """Per-patch normalised pixels (MAE's ``norm_pix``).

    Args:
        patches (Tensor): ``(B, N, P)`` flattened patches.
        eps (float): Added to the variance. Defaults to 1e-6.

    Returns:
        Tensor: Each patch with zero mean and unit variance.
    """
    mean = patches.mean(dim=-1, keepdim=True)
    var = patches.var(dim=-1, keepdim=True)
    return (patches - mean) / (var + eps)**.5


def gather_tokens(tokens: Tensor, index: Tensor) -> Tensor:
    """``tokens[b, index[b]]`` for ``(B, L, C)`` tokens and ``(B, n)`` index."""
    return tokens.gather(1, index.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))


@MODELS.register_module()
class NoiseMIM(BaseSelfSupervisor):
    """NoiseMIM pre-training.

    Args:
        backbone (dict): A :class:`NoiseMIMViT` config.
        mim_head (dict): The MIM head (``TokenRegressionHead`` to pixels).
        denoise_head (dict, optional): The denoise head. Needed when the
            backbone's ``noise_ratio > 0``.
        disruption (dict, optional): A ``DisruptionLoss`` config; None turns
            the disentanglement off. Defaults to the ``'mass'`` loss, 0.1.
        norm_pix (bool): Pixel targets are per-patch normalised.
            Defaults to True.
        denoise_target (str): ``'pixel'`` (clean pixels of the noised
            patches), ``'feature'`` (the clean hidden state where the noise
            was added, detached and layer-normalised) or ``'noise'``
            (``eps``). Defaults to ``'pixel'``.
        data_preprocessor (dict, optional): Defaults to
            ``SelfSupDataPreprocessor``.
        init_cfg (dict, optional): Initialisation config.
    """

    def __init__(self,
                 backbone: dict,
                 mim_head: dict,
                 denoise_head: Optional[dict] = None,
                 disruption: Optional[dict] = dict(type='DisruptionLoss'),
                 norm_pix: bool = True,
                 denoise_target: str = 'pixel',
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[Union[dict, List[dict]]] = None) -> None:
        super().__init__(
            backbone=backbone,
            data_preprocessor=data_preprocessor,
            init_cfg=init_cfg)
        if not isinstance(self.backbone, NoiseMIMViT):
            raise TypeError('NoiseMIM needs a NoiseMIMViT backbone, got '
                            f'{type(self.backbone).__name__}')
        if denoise_target not in DENOISE_TARGETS:
            raise ValueError(f'denoise_target must be one of '
                             f'{DENOISE_TARGETS}, got {denoise_target!r}')
        vit = self.backbone
        pixel_noise = vit.noise_layer == NOISE_LAYER_PIXEL
        if denoise_target == 'feature' and pixel_noise:
            raise ValueError("denoise_target='feature' needs feature noise; "
                             "noise_layer='pixel' has no clean hidden state.")
        self.norm_pix = norm_pix
        self.denoise_target = denoise_target
        self.mim_head = MODELS.build(mim_head)
        pixels = vit.corruption_sampler.patch_size**2 * 3
        self._check_width('mim_head', self.mim_head, pixels)

        self.noisy = vit.corruption_sampler.noise_ratio > 0
        # mask_ratio=0: no masked token, no MIM task (denoising only).
        self.masking = vit.corruption_sampler.mask_ratio > 0
        if not (self.masking or self.noisy):
            raise ValueError('mask_ratio=0 and noise_ratio=0 leave nothing '
                             'to restore; set one of them above 0')
        self.denoise_head = None
        if self.noisy:
            if denoise_head is None:
                raise ValueError('noise_ratio > 0 needs a denoise_head.')
            self.denoise_head = MODELS.build(denoise_head)
            feature_width = (pixels if pixel_noise or denoise_target == 'pixel'
                             else vit.embed_dims)
            self._check_width('denoise_head', self.denoise_head, feature_width)

        self.disruption = None
        if self.noisy and disruption is not None:
            if not self.masking:
                raise ValueError(
                    'mask_ratio=0 leaves no masked token for the disruption '
                    'loss to keep apart from the noised ones; set '
                    'disruption=None')
            self.disruption = MODELS.build(disruption)
            layers = self.disruption.layers
            if layers is None:
                layers = range(vit.first_noised_block, vit.num_layers)
            bad = [i for i in layers if not 0 <= i < vit.num_layers]
            if bad or not layers:
                raise ValueError(
                    f'disruption layers must be block indices in '
                    f'[0, {vit.num_layers - 1}], got {list(layers)!r}')
            self.disruption_layers = tuple(layers)

    @staticmethod
    def _check_width(name: str, head, expected: int) -> None:
        width = head.predictor.out_features
        if width != expected:
            raise ValueError(f'{name}.out_channels must be {expected} for '
                             f'this backbone and target, got {width}')

    def extract_feat(self, inputs: Tensor):
        """Features of clean images, as the downstream backbone gives them."""
        return self.backbone(inputs)

    def corrupted_forward(self,
                          inputs: Tensor,
                          corruption: Optional[Corruption] = None):
        """Run the corrupted encoder.

        Args:
            inputs (Tensor): ``(B, 3, H, W)`` normalised images.
            corruption (Corruption, optional): Drawn if not given.

        Returns:
            Tuple[Corruption, EncoderOutput]: The corruption and the encoder's
            output (with the queries and keys the disruption loss needs).
        """
        if corruption is None:
            corruption = self.backbone.sample_corruption(inputs)
        layers = self.disruption_layers if self.disruption else ()
        mode = self.disruption.mode if self.disruption else None
        out = self.backbone(
            inputs,
            corruption,
            probe_layers=layers if mode == 'entropy' else (),
            blocked_layers=layers if mode == 'hard' else (),
            mass_layers=layers if mode == 'mass' else ())
        return corruption, out

    def mim_loss(self, inputs: Tensor, pixels: Tensor, corruption: Corruption,
                 out: EncoderOutput) -> Tensor:
        """``L_mim``: the MIM head's loss on the masked patches.

        Args:
            inputs (Tensor): ``(B, 3, H, W)`` normalised images.
            pixels (Tensor): ``(B, N, p*p*3)`` the pixel targets.
            corruption (Corruption): The batch's corruption.
            out (EncoderOutput): The corrupted encoder's output.

        Returns:
            Tensor: The loss (subclasses may change the target, e.g.
            ``NoiseMIMDTM``'s morphed teacher tokens).
        """
        return self.mim_head.loss(out.tokens, pixels, corruption.mask)

    def loss(self, inputs: Tensor, data_samples: List[DataSample],
             **kwargs) -> Dict[str, Tensor]:
        """The loss terms of a batch.

        Args:
            inputs (Tensor): ``(B, 3, H, W)`` normalised images.
            data_samples (List[DataSample]): Unused.

        Returns:
            Dict[str, Tensor]: ``loss_mim`` (unless ``mask_ratio=0``), and
            with noise ``loss_denoise`` and (unless the disentanglement is
            hard or off) ``loss_disruption``.
        """
        corruption, out = self.corrupted_forward(inputs)
        patches = patchify(inputs, self.backbone.patch_size).float()
        pixels = normalize_patches(patches) if self.norm_pix else patches
        losses = {}
        if self.masking:
            losses['loss_mim'] = self.mim_loss(inputs, pixels, corruption, out)
        if not self.noisy:
            return losses

        noised_tokens = gather_tokens(out.tokens, corruption.noised_index)
        if self.denoise_target == 'pixel':
            target = gather_tokens(pixels, corruption.noised_index)
        elif self.denoise_target == 'feature':
            clean = out.clean.detach().float()
            target = F.layer_norm(clean, clean.shape[-1:])
        else:
            target = corruption.eps
        losses['loss_denoise'] = self.denoise_head.loss(noised_tokens, target)
        if self.disruption is not None and self.disruption.mode != 'hard':
            losses['loss_disruption'] = self.disruption(
                out.cross_mass if self.disruption.mode == 'mass' else
                out.attention, corruption, self.backbone.num_extra_tokens)
        return losses
