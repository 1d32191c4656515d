"""Diffusion-style pixel noise on every patch, for the decoder-style baselines.

DiffMAE and the MaskDiT-style baseline noise image patches with the same
cosine schedule and the same per-patch noise scale as NoiseMIM
(:func:`~noisemim.models.corruption.add_noise`), so that the cells of the study
differ only in *where* the noise goes.
"""
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import torch
from torch import Tensor

from .corruption import add_noise, cosine_alpha_bar
from .patches import patchify


def check_t_range(t_range: Sequence[float]) -> Tuple[float, float]:
    """Validate ``(t_min, t_max)``.

    Args:
        t_range (Sequence[float]): The range of the noise level ``t``.

    Returns:
        Tuple[float, float]: ``(t_min, t_max)`` as floats.

    Raises:
        ValueError: Unless ``0 <= t_min <= t_max <= 1``.
    """
    if (not isinstance(t_range, (tuple, list)) or len(t_range) != 2
            or not 0 <= t_range[0] <= t_range[1] <= 1):
        raise ValueError('t_range must be (t_min, t_max) with '
                         f'0 <= t_min <= t_max <= 1, got {t_range!r}')
    return float(t_range[0]), float(t_range[1])


@dataclass
class PixelNoise:
    """The noise of one batch.

    Attributes:
        t (Tensor): ``(B,)`` noise levels.
        alpha_bar (Tensor): ``(B,)`` ``alpha_bar(t)`` (cosine schedule).
        eps (Tensor): ``(B, N, P)`` standard normal noise for every patch.
    """
    t: Tensor
    alpha_bar: Tensor
    eps: Tensor


def draw_pixel_noise(batch_size: int,
                     num_patches: int,
                     patch_channels: int,
                     t_range: Tuple[float, float],
                     device: torch.device,
                     generator: Optional[torch.Generator] = None
                     ) -> PixelNoise:
    """Draw ``t ~ U[t_min, t_max]`` per sample and ``eps ~ N(0, I)`` per patch.

    Args:
        batch_size (int): ``B``.
        num_patches (int): ``N``.
        patch_channels (int): ``P = patch_size**2 * 3``.
        t_range (Tuple[float, float]): ``(t_min, t_max)``.
        device (torch.device): Where to draw.
        generator (torch.Generator, optional): Defaults to torch's global RNG
            (seeded per rank by the mmengine Runner).

    Returns:
        PixelNoise: The batch's noise.
    """
    t_min, t_max = t_range
    t = t_min + (t_max - t_min) * torch.rand(
        batch_size, generator=generator, device=device)
    eps = torch.randn((batch_size, num_patches, patch_channels),
                      generator=generator,
                      device=device)
    return PixelNoise(t=t, alpha_bar=cosine_alpha_bar(t), eps=eps)


def noise_patches(images: Tensor, patch_size: int,
                  noise: PixelNoise) -> Tensor:
    """Noise every patch: ``sqrt(ab) * x + sqrt(1 - ab) * rms(x) * eps``.

    Args:
        images (Tensor): ``(B, C, H, W)`` normalised images.
        patch_size (int): The patch side in pixels.
        noise (PixelNoise): The noise, with ``eps`` of ``(B, N, P)``.

    Returns:
        Tensor: ``(B, N, P)`` noised flattened patches.
    """
    patches = patchify(images, patch_size)
    every = torch.arange(patches.shape[1], device=images.device)
    noised, _ = add_noise(patches, every.expand(patches.shape[0], -1),
                          noise.alpha_bar, noise.eps.to(patches.dtype))
    return noised
