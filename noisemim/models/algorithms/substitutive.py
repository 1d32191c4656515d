"""Encoder-style *substitutive* corruption: masked tokens are noised instead.

The encoder-style, substitutive cell of the study. The mask ``M`` is drawn as
in NoiseMIM, but instead of the mask token the tokens of ``M`` get noise, at
the input of block ``noise_layer`` (or in pixels), and one head restores their
clean pixels. Masked and noised tokens never coexist (``S = M``), so there is
no second task to disentangle and no disruption loss.
"""
from typing import Dict, List, Optional, Tuple, Union

import torch
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample
from torch import Tensor

from ..corruption import Corruption, CorruptionSampler, SampleRandom
from ..patches import patchify
from .noisemim import NoiseMIM, normalize_patches

# The stream of the noise of M (NoiseMIM's own streams are 1-4).
STREAM_SUBSTITUTIVE_EPS = 5


def sample_substitutive_corruption(
        sampler: CorruptionSampler,
        batch_size: int,
        patch_resolution: Tuple[int, int],
        device: Union[str, torch.device] = 'cpu',
        generator: Optional[torch.Generator] = None) -> Corruption:
    """Draw ``M`` with ``sampler`` and mark it to be noised instead of masked.

    The returned corruption has an empty mask and ``S = M``, with ``eps`` for
    every token of ``M``; each sample is keyed as :class:`CorruptionSampler`
    keys it (only this rank's rows are drawn).

    Args:
        sampler (CorruptionSampler): The backbone's sampler
            (``noise_ratio=0``).
        batch_size (int): The number of samples on this rank.
        patch_resolution (Tuple[int, int]): The patch grid ``(h, w)``.
        device (str | torch.device): Where to put the tensors.
        generator (torch.Generator, optional): As :class:`CorruptionSampler`.

    Returns:
        Corruption: ``mask`` all False, ``noised`` = the drawn ``M``.
    """
    random = SampleRandom.for_batch(batch_size, device, generator)
    drawn = sampler.sample(random, patch_resolution)
    index = drawn.masked_index
    eps = random.normal(STREAM_SUBSTITUTIVE_EPS, index.shape[1],
                        sampler.noise_channels)
    return Corruption(
        mask=torch.zeros_like(drawn.mask),
        noised=drawn.mask,
        masked_index=index[:, :0],
        noised_index=index,
        t=drawn.t,
        alpha_bar=drawn.alpha_bar,
        eps=eps)


@MODELS.register_module()
class SubstitutiveNoiseMIM(NoiseMIM):
    """Encoder-style substitutive pre-training: noise replaces the mask token.

    Args:
        backbone (dict): A ``NoiseMIMViT`` config; its ``mask_ratio``,
            ``mask_unit``, ``noise_layer``, ``t_range`` and ``time_embed``
            apply to ``M``. ``noise_ratio`` (a separate noised set) must be 0
            or unset.
        mim_head (dict): The head restoring the clean pixels of ``M``.
        norm_pix (bool): Per-patch normalised pixel targets. Defaults to True.
        data_preprocessor (dict, optional): Defaults to
            ``SelfSupDataPreprocessor``.
        init_cfg (dict, optional): Initialisation config.
    """

    def __init__(self,
                 backbone: dict,
                 mim_head: dict,
                 norm_pix: bool = True,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[Union[dict, List[dict]]] = None) -> None:
        noise_ratio = backbone.get('noise_ratio', 0.)
        if noise_ratio != 0:
            raise ValueError(
                'SubstitutiveNoiseMIM noises the masked tokens themselves; '
                f'the backbone noise_ratio (a separate noised set) must be 0, '
                f'got {noise_ratio!r}')
        super().__init__(
            backbone={**backbone, 'noise_ratio': 0.},
            mim_head=mim_head,
            denoise_head=None,
            disruption=None,
            norm_pix=norm_pix,
            data_preprocessor=data_preprocessor,
            init_cfg=init_cfg)

    def sample_corruption(
            self,
            inputs: Tensor,
            generator: Optional[torch.Generator] = None) -> Corruption:
        """Draw the substitutive corruption of a batch of images.

        Args:
            inputs (Tensor): ``(B, C, H, W)`` images.
            generator (torch.Generator, optional): See
                :func:`sample_substitutive_corruption`.

        Returns:
            Corruption: ``M`` as the noised set, nothing masked.
        """
        vit = self.backbone
        grid = (inputs.shape[2] // vit.patch_size,
                inputs.shape[3] // vit.patch_size)
        return sample_substitutive_corruption(vit.corruption_sampler,
                                              inputs.shape[0], grid,
                                              inputs.device, generator)

    def loss(self,
             inputs: Tensor,
             data_samples: List[DataSample],
             corruption: Optional[Corruption] = None,
             **kwargs) -> Dict[str, Tensor]:
        """The loss of a batch.

        Args:
            inputs (Tensor): ``(B, 3, H, W)`` normalised images.
            data_samples (List[DataSample]): Unused.
            corruption (Corruption, optional): Drawn if not given.

        Returns:
            Dict[str, Tensor]: ``loss_mim``, the restoration of the clean
            pixels of ``M`` (the noised tokens).
        """
        if corruption is None:
            corruption = self.sample_corruption(inputs)
        corruption, out = self.corrupted_forward(inputs, corruption)
        pixels = patchify(inputs, self.backbone.patch_size).float()
        if self.norm_pix:
            pixels = normalize_patches(pixels)
        return dict(
            loss_mim=self.mim_head.loss(out.tokens, pixels, corruption.noised))
