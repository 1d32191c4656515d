"""Fourier analysis of feature maps, after Park & Kim, "How do vision
transformers work?" (ICLR 2022).

A block's patch tokens ``(B, N, C)`` are arranged as a feature map
``(B, C, h, w)``; the log amplitude ``log(|FFT2| + eps)`` is averaged over
images and channels and read along the diagonal of the frequency plane, from
the zero frequency to the highest one (``pi`` in both directions). The result
is reported relative to the zero frequency:
``Delta log amplitude(f) = log A(f) - log A(0)``.
A more negative value at ``pi`` means the block suppresses high frequencies
more (a low-pass filter).

Unlike Park & Kim's code, whose ``fftshift``-ed half diagonal stops one bin
short of ``pi`` on even grids, the diagonal here includes the Nyquist
frequency, so a checkerboard map has all its energy at the last point.
"""
from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn

from .images import image_batches
from .probes import probe_encoder

EPS = 1e-6


def tokens_to_feature_map(tokens: Tensor,
                          patch_resolution: Tuple[int, int]) -> Tensor:
    """``(B, N, C)`` patch tokens -> ``(B, C, h, w)`` feature map.

    Args:
        tokens (Tensor): Patch tokens in row-major grid order.
        patch_resolution (Tuple[int, int]): The grid ``(h, w)``.

    Returns:
        Tensor: The feature map.
    """
    B, N, C = tokens.shape
    h, w = patch_resolution
    if h * w != N:
        raise ValueError(f'{N} tokens do not form a {h}x{w} patch grid')
    return tokens.transpose(1, 2).reshape(B, C, h, w)


def diagonal_frequencies(size: Tuple[int, int]) -> Tuple[Tensor, Tensor]:
    """FFT indices along the diagonal from frequency 0 to the highest one.

    Args:
        size (Tuple[int, int]): The map's ``(h, w)``, each at least 2.

    Returns:
        Tuple[Tensor, Tensor]: Row and column FFT indices,
        ``min(h, w) // 2 + 1`` points; the last is ``(h // 2, w // 2)``
        (``pi`` for even sizes).
    """
    h, w = size
    if min(h, w) < 2:
        raise ValueError(
            f'a feature map needs at least 2x2 cells, got {h}x{w}')
    n = min(h, w) // 2 + 1
    steps = torch.arange(n, dtype=torch.float64) / (n - 1)
    return (steps * (h // 2)).round().long(), (steps * (w // 2)).round().long()


def amplitude_spectrum(feature_map: Tensor) -> Tensor:
    """``|FFT2|`` of each channel of each image, ``(B, C, h, w)``.

    Args:
        feature_map (Tensor): ``(B, C, h, w)``.

    Returns:
        Tensor: The amplitudes (unshifted: index 0 is the zero frequency).
    """
    return torch.fft.fft2(feature_map.double()).abs()


def diagonal_log_amplitude(feature_map: Tensor, eps: float = EPS) -> Tensor:
    """Mean log amplitude over images and channels along the diagonal.

    Args:
        feature_map (Tensor): ``(B, C, h, w)``.
        eps (float): Added to the amplitude before the log. Defaults to 1e-6.

    Returns:
        Tensor: ``(min(h, w) // 2 + 1,)`` from frequency 0 to the highest.
    """
    log_amp = (amplitude_spectrum(feature_map) + eps).log().mean(dim=(0, 1))
    rows, cols = diagonal_frequencies(feature_map.shape[-2:])
    return log_amp[rows, cols]


def relative_log_amplitude(feature_map: Tensor, eps: float = EPS) -> Tensor:
    """``Delta log amplitude``: :func:`diagonal_log_amplitude` minus its value
    at the zero frequency.

    Args:
        feature_map (Tensor): ``(B, C, h, w)``.
        eps (float): Added to the amplitude before the log.

    Returns:
        Tensor: ``(min(h, w) // 2 + 1,)``; index 0 is 0, the last is the
        highest frequency.
    """
    profile = diagonal_log_amplitude(feature_map, eps)
    return profile - profile[0]


class SpectrumMeter:
    """Averages :func:`diagonal_log_amplitude` per block over batches."""

    def __init__(self) -> None:
        self._sums: Dict[int, Tensor] = {}
        self.num_images = 0

    def update(self, blocks: List[int], feature_maps: List[Tensor]) -> None:
        """Add one batch.

        Args:
            blocks (List[int]): Block indices.
            feature_maps (List[Tensor]): Each block's ``(B, C, h, w)`` map.
        """
        for b, fmap in zip(blocks, feature_maps):
            profile = diagonal_log_amplitude(fmap) * fmap.shape[0]
            self._sums[b] = self._sums.get(b, 0) + profile
        self.num_images += feature_maps[0].shape[0]

    def compute(self) -> Dict[int, Tensor]:
        """Per block, the relative log amplitude averaged over all images.

        Returns:
            Dict[int, Tensor]: Block index -> ``(n,)`` ``Delta log amplitude``
            profile.
        """
        if not self.num_images:
            raise RuntimeError('SpectrumMeter.compute() before any update()')
        out = {}
        for b, s in sorted(self._sums.items()):
            profile = s / self.num_images
            out[b] = profile - profile[0]
        return out


def measure_feature_spectrum(model: nn.Module,
                             paths: List[str],
                             batch_size: int = 8,
                             desc: Optional[str] = None) -> Dict[int, Tensor]:
    """Relative log amplitude profile of every block's patch-token features.

    Args:
        model (nn.Module): A model with a ViT ``backbone``.
        paths (List[str]): The images.
        batch_size (int): Images per forward pass.
        desc (str, optional): Progress bar label; None hides it.

    Returns:
        Dict[int, Tensor]: Block -> ``Delta log amplitude`` from frequency 0
        to the highest (float64).
    """
    meter = SpectrumMeter()
    for inputs in image_batches(model, paths, batch_size, desc):
        probe = probe_encoder(model, inputs)
        maps = [
            tokens_to_feature_map(f[:, probe.num_extra_tokens:],
                                  probe.patch_resolution)
            for f in probe.features
        ]
        meter.update(list(range(len(maps))), maps)
    return meter.compute()
