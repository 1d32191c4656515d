"""The corruption of NoiseMIM: the mask ``M``, the noised set ``S`` and the noise.

Everything here is vectorised over the batch (no Python loops over samples or
tokens):

* The mask ``M`` is SimMIM's: a random ``mask_ratio`` share of ``mask_unit``-pixel
  squares (``mask_unit // patch_size`` patches on a side) is masked.
* The noised set ``S`` is a random ``noise_ratio`` share of the visible patches,
  so ``M`` and ``S`` are disjoint by construction.
* The noise level ``t ~ U[t_min, t_max]`` per sample sets ``alpha_bar(t)`` of a
  cosine schedule, and ``eps ~ N(0, I)`` is drawn for the tokens of ``S``.

Per-sample random numbers (:class:`SampleRandom`)
-------------------------------------------------
Each sample's corruption is a pure function of ``(seed, p)``, where ``p`` is the
sample's position in the stream of training samples and ``seed`` the run's
seed. Every rank draws only its own rows (``eps`` of the local batch: ~59 MB at
ViT-B with 512 images per GPU instead of ~478 MB for the global batch of
4096 on every rank). Inside an mmengine ``Runner``::

    p = iter * samples_per_iter + row * world_size + rank

where ``samples_per_iter = world_size * batch_size`` (published by
``RandomnessHook``; mmengine counts one ``iter`` per loaded batch, also
under gradient accumulation). mmengine's ``DefaultSampler`` and
``InfiniteSampler`` give rank ``r`` the samples ``r, r + W, r + 2W, ...`` of one
index stream, so ``p`` is the sample's place in that stream whatever the number
of processes ``W``, and whatever the accumulation split: iterations ``2k`` and
``2k + 1`` with batch ``B`` cover the positions of iteration ``k`` with batch
``2B``. ``p`` depends on nothing but the iteration, so it is the same after
``--resume``. (At the end of an epoch whose length is not a multiple of the
global batch the last batch is short; ``p`` stays unique there, but the 1-vs-W
match of those last samples holds only when the runs split the epoch alike.)

Why counter-based hashing and not ``torch.Generator``: a generator's output for
one sample depends on how many numbers were drawn before it, so a per-sample
key needs one generator per sample (a Python loop of ~4 kernel launches per
sample on a GPU). Here the numbers are an integer hash of
``(seed, p, stream, element index)``, computed with ``int64`` tensor ops on
any device with no loop, no host synchronisation and no generator state:

* a 32-bit mixing function (``lowbias32`` by C. Wellons, constants
  ``0x21f0aaad`` and ``0xd35a2d97``), a bijection of ``[0, 2**32)``; every
  intermediate stays below ``2**63``, so no signed ``int64`` overflow happens
  (the multiplication by the large constant is split in two 16-bit halves);
* a per-sample key absorbs the seed, ``p`` and the stream (one stream per kind
  of draw) one 32-bit word at a time; an element's bits are
  ``mix(key ^ mix(j))`` for element index ``j``;
* uniforms are the top 23 bits, ``(b + 0.5) / 2**23``, strictly inside
  ``(0, 1)`` and exact in float32; normals come from pairs of uniforms by
  Box-Muller (so ``|eps| < 5.8``, a cut at probability ~1e-8);
* orders (the mask units' and the noised patches') sort the 32-bit integers
  themselves with a stable sort, so ties cannot make a sample's draw depend on
  the batch it is in.

The integer parts (``M``, ``S``) are bit-identical on every device; ``t`` and
``eps`` agree up to float32 rounding of ``log``/``cos`` between CPU and GPU.
:meth:`SampleRandom.for_batch` is reusable by any per-sample draw (e.g. a
block-wise mask): pass a ``salt`` so its numbers are not NoiseMIM's.

With an explicit ``torch.Generator`` (tests, benchmarks, analysis tools) the
seed is drawn from it and ``p`` is the row of the local batch. Outside a
Runner the seed comes from torch's global RNG, so ``torch.manual_seed``
reproduces it.
"""
import math
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple, Union

import torch
from mmengine.dist import get_dist_info
from mmengine.logging import MessageHub
from torch import Tensor

#: ``MessageHub`` runtime info: rank 0's seed, the same on every rank.
SHARED_SEED_KEY = 'shared_seed'
#: ``MessageHub`` runtime info: samples loaded per iteration over all ranks.
SAMPLES_PER_ITER_KEY = 'samples_per_iter'

_MASK32 = 0xFFFFFFFF
# Streams of NoiseMIM's draws (one per kind of number).
STREAM_MASK, STREAM_NOISED, STREAM_T, STREAM_EPS = 1, 2, 3, 4

IntLike = Union[int, Tensor]


def _mul32(x: IntLike, c: int) -> IntLike:
    """``(x * c) mod 2**32`` for ``0 <= x, c < 2**32`` without passing 2**63."""
    low = x * (c & 0xFFFF)
    high = ((x * (c >> 16)) & 0xFFFF) << 16
    return (low + high) & _MASK32


def mix32(x: IntLike) -> IntLike:
    """A bijective 32-bit integer hash (``lowbias32``), for ints or int64 tensors.

    Args:
        x (int | Tensor): Values in ``[0, 2**32)`` (an ``int64`` tensor on any
            device, or a Python int).

    Returns:
        int | Tensor: The mixed values, in ``[0, 2**32)``.
    """
    x = x ^ (x >> 16)
    x = (x * 0x21F0AAAD) & _MASK32  # < 2**62
    x = x ^ (x >> 15)
    x = _mul32(x, 0xD35A2D97)
    return x ^ (x >> 15)


class SampleRandom:
    """Random numbers keyed per sample; see the module docstring.

    Args:
        seed (int): The run's seed (any integer; taken modulo ``2**64``).
        positions (Tensor): ``(B,)`` int64, each sample's position ``p >= 0``
            in the stream of samples (unique per sample of a run).
    """

    def __init__(self, seed: int, positions: Tensor) -> None:
        if positions.dim() != 1 or positions.dtype != torch.int64:
            raise ValueError('positions must be a 1-d int64 tensor, got '
                             f'{tuple(positions.shape)} {positions.dtype}')
        seed = int(seed) % 2**64
        state = mix32(mix32((seed & _MASK32) ^ 0x9E3779B9) ^ (seed >> 32))
        state = mix32(positions.bitwise_and(_MASK32) ^ state)
        self.key = mix32(state ^ (positions >> 32))
        self.device = positions.device

    @property
    def batch_size(self) -> int:
        return self.key.shape[0]

    @classmethod
    def for_batch(cls,
                  batch_size: int,
                  device: Union[str, torch.device] = 'cpu',
                  generator: Optional[torch.Generator] = None,
                  salt: int = 0) -> 'SampleRandom':
        """The keys of this rank's batch (see the module docstring).

        Args:
            batch_size (int): The number of samples on this rank.
            device (str | torch.device): Where the numbers are drawn.
            generator (torch.Generator, optional): Seed from this generator,
                ``p`` = the row of the local batch. By default the Runner's
                shared seed and the samples' stream positions.
            salt (int): Mixed into the seed, so that different users of this
                class (e.g. the block-wise mask) draw different numbers.

        Returns:
            SampleRandom: Keys for ``batch_size`` samples.
        """
        rows = torch.arange(batch_size, device=device, dtype=torch.int64)
        if generator is not None:
            seed = int(
                torch.randint(
                    2**62, (1, ), generator=generator,
                    device=generator.device).item())
            return cls(seed ^ salt, rows)
        hub = MessageHub.get_current_instance()
        seed = hub.get_info(SHARED_SEED_KEY, hub.get_info('seed'))
        iteration = hub.get_info('iter')
        if seed is None or iteration is None:  # not inside a Runner
            seed = int(torch.randint(2**62, (1, )).item())
            return cls(seed ^ salt, rows)
        rank, world_size = get_dist_info()
        per_iter = hub.get_info(SAMPLES_PER_ITER_KEY) or world_size * batch_size
        first = int(iteration) * int(per_iter) + rank
        return cls(int(seed) ^ salt, first + rows * world_size)

    def bits(self, stream: int, *shape: int) -> Tensor:
        """Uniform 32-bit integers.

        Args:
            stream (int): Which kind of draw, in ``[0, 2**32)``; each stream
                gives other numbers for the same sample.
            *shape (int): The per-sample shape.

        Returns:
            Tensor: ``(B, *shape)`` int64 in ``[0, 2**32)``.
        """
        if not 0 <= stream <= _MASK32:
            raise ValueError(f'stream must be in [0, 2**32), got {stream!r}')
        count = math.prod(shape)
        index = torch.arange(count, device=self.device, dtype=torch.int64)
        key = mix32(self.key ^ stream)
        out = mix32(key.unsqueeze(1) ^ mix32(index ^ 0x85EBCA6B).unsqueeze(0))
        return out.view(self.batch_size, *shape)

    def uniform(self, stream: int, *shape: int) -> Tensor:
        """Uniform float32 numbers in ``(0, 1)`` (23 random bits each, exact).

        Args:
            stream (int): See :meth:`bits`.
            *shape (int): The per-sample shape.

        Returns:
            Tensor: ``(B, *shape)`` float32.
        """
        return ((self.bits(stream, *shape) >> 9).float() + 0.5) * 2.**-23

    def normal(self, stream: int, *shape: int) -> Tensor:
        """Standard normal float32 numbers (Box-Muller).

        Args:
            stream (int): See :meth:`bits`.
            *shape (int): The per-sample shape.

        Returns:
            Tensor: ``(B, *shape)`` float32.
        """
        count = math.prod(shape)
        pairs = (count + 1) // 2
        u = self.uniform(stream, pairs, 2)
        radius = torch.sqrt(-2 * torch.log(u[..., 0]))
        angle = (2 * math.pi) * u[..., 1]
        z = torch.stack((radius * torch.cos(angle), radius * torch.sin(angle)),
                        dim=-1).view(self.batch_size, 2 * pairs)
        return z[:, :count].reshape(self.batch_size, *shape)


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
    seed = hub.get_info(SHARED_SEED_KEY, hub.get_info('seed'))
    iteration = hub.get_info('iter')
    if seed is None or iteration is None:
        return int(torch.randint(2**62, (1, )).item())
    # A fixed integer mix (Python's str hashing is salted per process).
    return (int(seed) * 6364136223846793005 +
            int(iteration) * 1442695040888963407 + 1) % 2**62
