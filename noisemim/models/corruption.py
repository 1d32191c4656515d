"""The corruption of NoiseMIM: the mask ``M``, the noised set ``S`` and the noise.

Everything here is vectorised over the batch (no Python loops over samples or
tokens):

* The mask ``M`` is SimMIM's: a random ``mask_ratio`` share of ``mask_unit``-pixel
  squares (``mask_unit // patch_size`` patches on a side) is masked.
* The noised set ``S`` is a random ``noise_ratio`` share of the visible patches,
  so ``M`` and ``S`` are disjoint by construction.
* The noise level ``t ~ U[t_min, t_max]`` per sample sets ``alpha_bar(t)`` of a
  cosine schedule, and ``eps ~ N(0, I)`` is drawn for the tokens of ``S``.

Each sample's corruption is a pure function of ``(seed, p)``: the run's seed
and the sample's position in the stream of training samples, the same on any
number of GPUs and after ``--resume`` (see :mod:`noisemim.models.sample_rng`).
"""
import math
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

# (SampleRandom, step_seed and the MessageHub keys are also imported from
# here by older code.)
from .sample_rng import (SAMPLES_PER_ITER_KEY, SHARED_SEED_KEY,  # noqa: F401
                         SampleRandom, mix32, step_seed)

# Streams of NoiseMIM's draws (one per kind of number).
STREAM_MASK, STREAM_NOISED, STREAM_T, STREAM_EPS = 1, 2, 3, 4


def cosine_alpha_bar(t: Tensor, s: float = 0.008, clip: float = 1e-4) -> Tensor:
    """The cosine schedule ``alpha_bar(t) = cos^2(((t + s) / (1 + s)) * pi / 2)``.

    Args:
        t (Tensor): Noise levels in ``[0, 1]``.
        s (float): The offset of the schedule. Defaults to 0.008.
        clip (float): ``alpha_bar`` is clipped to ``[clip, 1 - clip]``.

    Returns:
        Tensor: ``alpha_bar(t)``, the share of the clean signal's variance.
    """
    alpha_bar = torch.cos((t + s) / (1 + s) * math.pi / 2)**2
    return alpha_bar.clamp(clip, 1 - clip)


def add_noise(tokens: Tensor,
              index: Tensor,
              alpha_bar: Tensor,
              eps: Tensor,
              scale_grad: bool = True) -> Tuple[Tensor, Tensor]:
    """Noise the tokens at ``index``: ``sqrt(ab) * h + sqrt(1 - ab) * rms(h) * eps``.

    ``rms(h)`` is the root mean square of each token over channels, so the
    noise level does not depend on the scale of the residual stream. By
    default it stays in the autograd graph: the noised token is then
    proportional to ``h`` (scaling ``h`` scales the noise too), and the
    gradient knows it. Detached, the gradient sees a fixed noise and keeps
    asking the blocks below to grow the residual stream to beat it, which
    never helps (the noise grows with it); with the noise at block 2 of the
    study's ViT the stream grew ~90x there (``docs/method.md``).

    Args:
        tokens (Tensor): ``(B, L, C)`` tokens.
        index (Tensor): ``(B, n)`` indices into ``L`` of the tokens to noise.
        alpha_bar (Tensor): ``(B,)`` noise schedule value per sample.
        eps (Tensor): ``(B, n, C)`` standard normal noise.
        scale_grad (bool): Keep ``rms(h)`` in the autograd graph.
            ``False`` detaches it (the earlier behaviour). Defaults to True.

    Returns:
        Tuple[Tensor, Tensor]: The tokens with ``index`` noised, and the clean
        tokens at ``index`` (``(B, n, C)``).
    """
    gather_index = index.unsqueeze(-1).expand(-1, -1, tokens.shape[-1])
    clean = tokens.gather(1, gather_index)
    # (clamped so that an all-zero token has a zero gradient, not NaN)
    rms = clean.float().pow(2).mean(-1, keepdim=True).clamp_min(1e-12).sqrt()
    if not scale_grad:
        rms = rms.detach()
    ab = alpha_bar.view(-1, 1, 1)
    noisy = ab.sqrt() * clean + (1 - ab).sqrt() * rms * eps
    return tokens.scatter(1, gather_index, noisy.to(tokens.dtype)), clean


@dataclass
class Corruption:
    """One batch's corruption. Patch indices exclude the class token.

    Attributes:
        mask (Tensor): ``(B, N)`` bool, True for the masked patches ``M``.
        noised (Tensor): ``(B, N)`` bool, True for the noised patches ``S``.
        masked_index (Tensor): ``(B, |M|)`` sorted indices of ``M``.
        noised_index (Tensor): ``(B, |S|)`` sorted indices of ``S``.
        t (Tensor): ``(B,)`` noise levels.
        alpha_bar (Tensor): ``(B,)`` ``alpha_bar(t)``.
        eps (Tensor): ``(B, |S|, C)`` the standard normal noise.
    """
    mask: Tensor
    noised: Tensor
    masked_index: Tensor
    noised_index: Tensor
    t: Tensor
    alpha_bar: Tensor
    eps: Tensor

    @property
    def num_noised(self) -> int:
        return self.noised_index.shape[1]


class CorruptionSampler:
    """Draws :class:`Corruption` for a batch; see the module docstring.

    Args:
        patch_size (int): The ViT's patch size in pixels.
        mask_ratio (float): Share of mask units in ``M``, in ``[0, 1)``.
        mask_unit (int): Side of a mask unit in pixels, a multiple of
            ``patch_size``.
        noise_ratio (float): Share of the visible patches in ``S``, in ``[0, 1)``.
        t_range (Sequence[float]): ``(t_min, t_max)`` with
            ``0 <= t_min <= t_max <= 1``.
        noise_channels (int): Channels of ``eps`` (the embedding width for
            feature noise, ``patch_size**2 * 3`` for pixel noise).
    """

    def __init__(self, patch_size: int, mask_ratio: float, mask_unit: int,
                 noise_ratio: float, t_range: Sequence[float],
                 noise_channels: int) -> None:
        for name, value in (('mask_ratio', mask_ratio), ('noise_ratio',
                                                         noise_ratio)):
            if not (isinstance(value, (int, float)) and 0 <= value < 1):
                raise ValueError(f'{name} must be a number in [0, 1), '
                                 f'got {value!r}')
        if not (isinstance(mask_unit, int) and mask_unit > 0
                and mask_unit % patch_size == 0):
            raise ValueError(f'mask_unit must be a positive multiple of the '
                             f'patch size {patch_size}, got {mask_unit!r}')
        if (not isinstance(t_range, (tuple, list)) or len(t_range) != 2
                or not 0 <= t_range[0] <= t_range[1] <= 1):
            raise ValueError('t_range must be (t_min, t_max) with '
                             f'0 <= t_min <= t_max <= 1, got {t_range!r}')
        self.patch_size = patch_size
        self.mask_ratio = float(mask_ratio)
        self.unit = mask_unit // patch_size
        self.noise_ratio = float(noise_ratio)
        self.t_range = (float(t_range[0]), float(t_range[1]))
        self.noise_channels = noise_channels

    def counts(self, patch_resolution: Tuple[int, int]) -> Tuple[int, int]:
        """Sizes ``(|M|, |S|)`` for a patch grid; raises if none is visible.

        Args:
            patch_resolution (Tuple[int, int]): The patch grid ``(h, w)``.

        Returns:
            Tuple[int, int]: The number of masked and of noised patches.
        """
        h, w = patch_resolution
        if h % self.unit or w % self.unit:
            raise ValueError(
                f'The patch grid {h}x{w} is not divisible into mask units of '
                f'{self.unit}x{self.unit} patches ({self.unit * self.patch_size}'
                ' px): change mask_unit or the image size.')
        num_units = (h // self.unit) * (w // self.unit)
        num_masked = math.ceil(num_units * self.mask_ratio) * self.unit**2
        num_visible = h * w - num_masked
        if num_visible < 1:
            raise ValueError(
                f'mask_ratio={self.mask_ratio} leaves no visible patch on a '
                f'{h}x{w} patch grid with mask units of {self.unit}x'
                f'{self.unit} patches: lower mask_ratio or mask_unit.')
        return num_masked, round(self.noise_ratio * num_visible)

    def __call__(self,
                 batch_size: int,
                 patch_resolution: Tuple[int, int],
                 device: Union[str, torch.device] = 'cpu',
                 generator: Optional[torch.Generator] = None) -> Corruption:
        """Draw the corruption of this rank's batch.

        Args:
            batch_size (int): The number of samples on this rank.
            patch_resolution (Tuple[int, int]): The patch grid ``(h, w)``.
            device (str | torch.device): Where to put the tensors.
            generator (torch.Generator, optional): Seed the draw from this
                generator, for the local batch alone. By default each sample
                is keyed by the Runner's seed and its stream position (see
                the module docstring).

        Returns:
            Corruption: The corruption of the local batch.
        """
        random = SampleRandom.for_batch(batch_size, device, generator)
        return self.sample(random, patch_resolution)

    def sample(self, random: SampleRandom,
               patch_resolution: Tuple[int, int]) -> Corruption:
        """Draw the corruption of the samples that ``random`` keys.

        Args:
            random (SampleRandom): The samples' keys.
            patch_resolution (Tuple[int, int]): The patch grid ``(h, w)``.

        Returns:
            Corruption: One row per sample of ``random``.
        """
        h, w = patch_resolution
        num_masked, num_noised = self.counts(patch_resolution)
        batch = random.batch_size
        # M: rank the mask units of each sample at random, mask the first ones.
        u = self.unit
        unit_bits = random.bits(STREAM_MASK, (h // u) * (w // u))
        unit_rank = unit_bits.argsort(dim=1, stable=True).argsort(1)
        unit_mask = unit_rank < num_masked // u**2
        mask = unit_mask.view(batch, h // u, 1, w // u, 1).expand(
            -1, -1, u, -1, u).reshape(batch, h * w)
        # S: the first visible patches in a second random order.
        order = random.bits(STREAM_NOISED, h * w).masked_fill(mask, 2**32)
        noised_index = order.argsort(dim=1, stable=True)[:, :num_noised]
        noised_index = noised_index.sort(1).values
        noised = torch.zeros_like(mask).scatter_(1, noised_index, True)
        masked_index = (~mask).to(torch.uint8).argsort(dim=1, stable=True)
        masked_index = masked_index[:, :num_masked]
        t_min, t_max = self.t_range
        t = t_min + (t_max - t_min) * random.uniform(STREAM_T, 1)[:, 0]
        eps = random.normal(STREAM_EPS, num_noised, self.noise_channels)
        return Corruption(
            mask=mask,
            noised=noised,
            masked_index=masked_index,
            noised_index=noised_index,
            t=t,
            alpha_bar=cosine_alpha_bar(t),
            eps=eps)
