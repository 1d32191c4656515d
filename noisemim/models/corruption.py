"""The corruption of NoiseMIM: the mask ``M``, the noised set ``S`` and the noise.

Everything here is vectorised over the batch (no Python loops over samples or
tokens) and drawn from one ``torch.Generator`` per step:

* The mask ``M`` is SimMIM's: a random ``mask_ratio`` share of ``mask_unit``-pixel
  squares (``mask_unit // patch_size`` patches on a side) is masked.
* The noised set ``S`` is a random ``noise_ratio`` share of the visible patches,
  so ``M`` and ``S`` are disjoint by construction.
* The noise level ``t ~ U[t_min, t_max]`` per sample sets ``alpha_bar(t)`` of a
  cosine schedule, and ``eps ~ N(0, I)`` is drawn for the tokens of ``S``.

Reproducibility: inside an mmengine ``Runner`` the generator is seeded from the
run's seed and the current iteration (both read from the ``MessageHub``), and
the corruption of the *whole* global batch is drawn on every rank, each rank
keeping the rows of the samples that mmengine's samplers give it
(``rank::world_size``). The corruption of a sample is therefore the same after
``--resume`` and with any number of processes. Outside a Runner the generator is
seeded from torch's global RNG, so ``torch.manual_seed`` reproduces it.
"""
import math
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple, Union

import torch
from mmengine.dist import get_dist_info
from mmengine.logging import MessageHub
from torch import Tensor


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


def add_noise(tokens: Tensor, index: Tensor, alpha_bar: Tensor,
              eps: Tensor) -> Tuple[Tensor, Tensor]:
    """Noise the tokens at ``index``: ``sqrt(ab) * h + sqrt(1 - ab) * rms(h) * eps``.

    ``rms(h)`` is the detached root mean square of each token over channels, so
    the noise level does not depend on the scale of the residual stream.

    Args:
        tokens (Tensor): ``(B, L, C)`` tokens.
        index (Tensor): ``(B, n)`` indices into ``L`` of the tokens to noise.
        alpha_bar (Tensor): ``(B,)`` noise schedule value per sample.
        eps (Tensor): ``(B, n, C)`` standard normal noise.

    Returns:
        Tuple[Tensor, Tensor]: The tokens with ``index`` noised, and the clean
        tokens at ``index`` (``(B, n, C)``).
    """
    gather_index = index.unsqueeze(-1).expand(-1, -1, tokens.shape[-1])
    clean = tokens.gather(1, gather_index)
    rms = clean.detach().float().pow(2).mean(-1, keepdim=True).sqrt()
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
        """Draw the corruption of a batch.

        Args:
            batch_size (int): The number of samples on this rank.
            patch_resolution (Tuple[int, int]): The patch grid ``(h, w)``.
            device (str | torch.device): Where to put the tensors.
            generator (torch.Generator, optional): Use this generator for the
                local batch alone. By default the generator is seeded from the
                Runner's seed and iteration (see the module docstring).

        Returns:
            Corruption: The corruption of the local batch.
        """
        rank, world_size = 0, 1
        if generator is None:
            rank, world_size = get_dist_info()
            generator = torch.Generator(device).manual_seed(step_seed())
        total = batch_size * world_size
        h, w = patch_resolution
        num_masked, num_noised = self.counts(patch_resolution)

        def rand(*shape: int) -> Tensor:
            return torch.rand(shape, generator=generator, device=device)

        # M: rank the mask units of each sample at random, mask the first ones.
        u = self.unit
        unit_rank = rand(total, (h // u) * (w // u)).argsort(1).argsort(1)
        unit_mask = unit_rank < num_masked // u**2
        mask = unit_mask.view(total, h // u, 1, w // u, 1).expand(
            -1, -1, u, -1, u).reshape(total, h * w)
        # S: the first visible patches in a second random order.
        order = rand(total, h * w).masked_fill(mask, 2.).argsort(1)
        noised_index = order[:, :num_noised].sort(1).values
        noised = torch.zeros_like(mask).scatter_(1, noised_index, True)
        masked_index = (~mask).to(torch.uint8).argsort(dim=1, stable=True)
        masked_index = masked_index[:, :num_masked]
        t_min, t_max = self.t_range
        t = t_min + (t_max - t_min) * rand(total)
        eps = torch.randn((total, num_noised, self.noise_channels),
                          generator=generator,
                          device=device)
        rows = slice(rank, total, world_size)
        return Corruption(
            mask=mask[rows],
            noised=noised[rows],
            masked_index=masked_index[rows],
            noised_index=noised_index[rows],
            t=t[rows],
            alpha_bar=cosine_alpha_bar(t[rows]),
            eps=eps[rows])


def step_seed() -> int:
    """A seed for this training step, from the Runner's seed and iteration.

    Returns:
        int: a fixed mix of the run's seed (the same on every rank: the
        ``shared_seed`` that ``RandomnessHook`` publishes, else ``seed``) and
        ``iter`` while an mmengine Runner trains, else a draw from torch's
        global RNG.
    """
    hub = MessageHub.get_current_instance()
    # 'shared_seed' (RandomnessHook) is rank 0's seed on every rank; 'seed' is
    # seed + rank under randomness.diff_rank_seed=True.
    seed = hub.get_info('shared_seed', hub.get_info('seed'))
    iteration = hub.get_info('iter')
    if seed is None or iteration is None:
        return int(torch.randint(2**62, (1, )).item())
    # A fixed integer mix (Python's str hashing is salted per process).
    return (int(seed) * 6364136223846793005 +
            int(iteration) * 1442695040888963407 + 1) % 2**62
