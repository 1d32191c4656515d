"""Per-sample random numbers: a pure function of ``(seed, p, stream, index)``.

Each sample's draws (NoiseMIM's mask, noised set and noise, the block-wise
mask) are a pure function of ``(seed, p)``, where ``p`` is the sample's
position in the stream of training samples and ``seed`` the run's seed. Every
rank draws only its own rows (``eps`` of the local batch: ~59 MB at ViT-B with
512 images per GPU instead of ~478 MB for the global batch of 4096 on every
rank). Inside an mmengine ``Runner``::

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
sample on a GPU). Here the numbers are an integer hash, with no loop, no host
synchronisation and no generator state:

* the mixing function is ``lowbias32`` (C. Wellons, constants ``0x21f0aaad``
  and ``0xd35a2d97``), a bijection of ``[0, 2**32)``;
* a per-sample key absorbs the seed, ``p`` and the stream (one stream per kind
  of draw) one 32-bit word at a time; an element's bits are
  ``mix(key ^ mix(j))`` for element index ``j``;
* uniforms are the top 23 bits, ``(b + 0.5) / 2**23``, strictly inside
  ``(0, 1)`` and exact in float32; normals come from pairs of uniforms by
  Box-Muller (so ``|eps| < 5.8``, a cut at probability ~1e-8);
* orders (the mask units' and the noised patches') sort the 32-bit integers
  themselves with a stable sort, so ties cannot make a sample's draw depend on
  the batch it is in.

The per-element work runs on 32-bit lanes (``int32`` tensors holding the
unsigned bits: products wrap modulo ``2**32``, right shifts are masked to be
logical), in place. On CUDA the keys, the integers, the uniforms and the
Box-Muller step run as ``torch.compile``-d kernels
(:func:`use_compiled_draws`); the first call of each shape is checked bit
for bit against the eager ops, and a kernel that differs (a compiler may
round ``log``/``cos`` apart from eager) or fails to compile stays eager.
The numbers are those of the first version (``int64`` lanes, :func:`mix32`;
``tests/test_corruption.py`` holds digests of its numbers and a reference
computation). The integer parts (``M``, ``S``) are bit-identical on every
device; ``t`` and ``eps`` agree up to float32 rounding of ``log``/``cos``
between CPU and GPU.

:meth:`SampleRandom.for_batch` is reusable by any per-sample draw (e.g. a
block-wise mask): pass a ``salt`` so its numbers are not NoiseMIM's. With an
explicit ``torch.Generator`` (tests, benchmarks, analysis tools) the seed is
drawn from it and ``p`` is the row of the local batch. Outside a Runner the
seed comes from torch's global RNG, so ``torch.manual_seed`` reproduces it.
"""
import functools
import math
import warnings
from typing import Callable, Dict, Optional, Set, Tuple, Union

import torch
from mmengine.dist import get_dist_info
from mmengine.logging import MessageHub
from torch import Tensor
from torch.utils._python_dispatch import _get_current_dispatch_mode

#: ``MessageHub`` runtime info: rank 0's seed, the same on every rank.
SHARED_SEED_KEY = 'shared_seed'
#: ``MessageHub`` runtime info: samples loaded per iteration over all ranks.
SAMPLES_PER_ITER_KEY = 'samples_per_iter'

_MASK32 = 0xFFFFFFFF
_C1, _C2 = 0x21F0AAAD, 0xD35A2D97  # lowbias32's multipliers
_INDEX_SALT = 0x85EBCA6B

IntLike = Union[int, Tensor]


def _mul32(x: IntLike, c: int) -> IntLike:
    """``(x * c) mod 2**32`` for ``0 <= x, c < 2**32`` without passing 2**63."""
    low = x * (c & 0xFFFF)
    high = ((x * (c >> 16)) & 0xFFFF) << 16
    return (low + high) & _MASK32


def mix32(x: IntLike) -> IntLike:
    """A bijective 32-bit integer hash (``lowbias32``), for ints or int64 tensors.

    The reference form: every intermediate stays below ``2**63``. The draws
    use :func:`mix32_lanes`, which gives the same numbers.

    Args:
        x (int | Tensor): Values in ``[0, 2**32)`` (an ``int64`` tensor on any
            device, or a Python int).

    Returns:
        int | Tensor: The mixed values, in ``[0, 2**32)``.
    """
    x = x ^ (x >> 16)
    x = (x * _C1) & _MASK32  # < 2**62
    x = x ^ (x >> 15)
    x = _mul32(x, _C2)
    return x ^ (x >> 15)


def signed32(x: int) -> int:
    """A Python int in ``[0, 2**32)`` as the int32 with the same bits."""
    return x - 2**32 if x >= 2**31 else x


def from_lanes(x: Tensor) -> Tensor:
    """``int32`` lanes as ``int64`` values in ``[0, 2**32)``."""
    return x.to(torch.int64) & _MASK32


def mix32_lanes(x: Tensor) -> Tensor:
    """:func:`mix32` on ``int32`` lanes, in place: 11 elementwise ops.

    Args:
        x (Tensor): ``int32`` lanes (the bits of 32-bit unsigned integers).

    Returns:
        Tensor: ``x``, mixed.
    """
    x ^= (x >> 16) & 0xFFFF  # a logical shift
    x *= _C1  # wraps modulo 2**32
    x ^= (x >> 15) & 0x1FFFF
    x *= signed32(_C2)
    x ^= (x >> 15) & 0x1FFFF
    return x


def lanes_to_uniform(bits: Tensor) -> Tensor:
    """``(b + 0.5) / 2**23`` of the top 23 bits ``b`` of ``int32`` lanes.

    The bits become the mantissa of a float in ``[1, 2)``; subtracting
    ``1 - 2**-24`` is exact (the result has at most 24 significant bits).

    Args:
        bits (Tensor): ``int32`` lanes; consumed (changed in place).

    Returns:
        Tensor: float32 uniforms in ``(0, 1)``, exact.
    """
    bits >>= 9
    bits &= 0x7FFFFF
    bits |= 0x3F800000  # the float 1.0's exponent
    return bits.view(torch.float32).sub_(1 - 2**-24)


def sample_keys(positions: Tensor, state: int) -> Tensor:
    """The samples' keys: ``mix(mix(p_low ^ state) ^ p_high)``.

    Args:
        positions (Tensor): ``(B,)`` int64 stream positions.
        state (int): The seed's state, a signed 32-bit int.

    Returns:
        Tensor: ``(B,)`` int32 lanes.
    """
    key = mix32_lanes(positions.to(torch.int32) ^ state)  # (the low 32 bits)
    key ^= (positions >> 32).to(torch.int32)
    return mix32_lanes(key)


def _lanes(key: Tensor, stream: int, index_bits: Tensor) -> Tensor:
    """``mix(mix(key ^ stream) ^ index_bits)``: ``(B, n)`` int32 lanes."""
    key = mix32_lanes(key ^ stream).unsqueeze(1)
    return mix32_lanes(key ^ index_bits)


def bits_lanes(key: Tensor, stream: int, index_bits: Tensor) -> Tensor:
    """A batch's 32-bit integers as ``(B, n)`` int64 in ``[0, 2**32)``.

    Args:
        key (Tensor): ``(B,)`` int32 lanes, the samples' keys.
        stream (int): The stream as a signed 32-bit int.
        index_bits (Tensor): ``(1, n)`` int32 lanes, ``mix(j ^ salt)``.
    """
    return from_lanes(_lanes(key, stream, index_bits))


def uniform_lanes(key: Tensor, stream: int, index_bits: Tensor) -> Tensor:
    """A batch's uniforms, ``(B, n)`` float32 (arguments as
    :func:`bits_lanes`)."""
    return lanes_to_uniform(_lanes(key, stream, index_bits))


def box_muller(u: Tensor) -> Tensor:
    """Standard normals from ``(B, pairs, 2)`` uniforms, ``(B, 2 * pairs)``.

    The float ops of the first version in the same order and on the same
    memory layout (``log`` of a strided view), so the numbers stay
    bit-identical (a CPU's vectorised and scalar ``log`` may round apart).
    """
    radius = torch.sqrt(-2 * torch.log(u[..., 0]))
    angle = (2 * math.pi) * u[..., 1]
    z = torch.stack((radius * torch.cos(angle), radius * torch.sin(angle)),
                    dim=-1)
    return z.view(u.shape[0], -1)


_compile_mode: Optional[bool] = None  # None: compiled on CUDA only
_compiled: Dict[str, Callable] = {}
_off: Set[str] = set()  # failed or differed: eager
_checked: Set[Tuple] = set()


def use_compiled_draws(enabled: Optional[bool]) -> None:
    """Choose where the draws run as ``torch.compile``-d kernels.

    Args:
        enabled (bool, optional): True: on every device; False: never (eager
            ops on ``int32`` lanes); None (the default): on CUDA only. The
            first compiled call of each shape is checked against eager: a
            difference or a failure to compile warns and leaves that kernel
            eager in this process.
    """
    global _compile_mode
    _compile_mode = enabled


def _fused(name: str, fn: Callable, *args) -> Tensor:
    """``fn(*args)``, compiled where :func:`use_compiled_draws` says."""
    device = args[0].device
    wanted = (device.type == 'cuda'
              if _compile_mode is None else _compile_mode)
    if (not wanted or name in _off or torch.compiler.is_compiling()
            or _get_current_dispatch_mode() is not None):
        return fn(*args)  # (an outer compile fuses it; a mode sees aten ops)
    try:
        if name not in _compiled:
            _compiled[name] = torch.compile(fn, fullgraph=True)
            _checked.difference_update([k for k in _checked if k[0] == name])
        out = _compiled[name](*args)
        key = (name, device.type) + tuple(
            tuple(a.shape) for a in args if isinstance(a, Tensor))
        if key not in _checked:
            if not torch.equal(out, fn(*args)):
                raise RuntimeError(f'the compiled {name} differs from eager')
            _checked.add(key)
        return out
    except Exception as error:  # e.g. no compiler: eager for this kernel
        _off.add(name)
        warnings.warn(f'Per-sample random numbers: the compiled {name} is '
                      f'off ({type(error).__name__}: {error}); eager ops.')
        return fn(*args)


@functools.lru_cache(maxsize=32)
def _index_bits(count: int, device: torch.device) -> Tensor:
    """``mix(j ^ salt)`` for ``j < count`` as ``(1, count)`` int32 lanes
    (cached: it depends on nothing else)."""
    index = torch.arange(count, device=device, dtype=torch.int32)
    return mix32_lanes(index ^ signed32(_INDEX_SALT)).unsqueeze(0)


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
        self.key = _fused('keys', sample_keys, positions, signed32(state))
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

    def _stream(self, stream: int) -> int:
        if not 0 <= stream <= _MASK32:
            raise ValueError(f'stream must be in [0, 2**32), got {stream!r}')
        return signed32(int(stream))

    def bits(self, stream: int, *shape: int) -> Tensor:
        """Uniform 32-bit integers.

        Args:
            stream (int): Which kind of draw, in ``[0, 2**32)``; each stream
                gives other numbers for the same sample.
            *shape (int): The per-sample shape.

        Returns:
            Tensor: ``(B, *shape)`` int64 in ``[0, 2**32)``.
        """
        index_bits = _index_bits(math.prod(shape), self.device)
        bits = _fused('bits', bits_lanes, self.key, self._stream(stream),
                      index_bits)
        return bits.view(self.batch_size, *shape)

    def uniform(self, stream: int, *shape: int) -> Tensor:
        """Uniform float32 numbers in ``(0, 1)`` (23 random bits each, exact).

        Args:
            stream (int): See :meth:`bits`.
            *shape (int): The per-sample shape.

        Returns:
            Tensor: ``(B, *shape)`` float32.
        """
        index_bits = _index_bits(math.prod(shape), self.device)
        u = _fused('uniforms', uniform_lanes, self.key, self._stream(stream),
                   index_bits)
        return u.view(self.batch_size, *shape)

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
        z = _fused('normals', box_muller, self.uniform(stream, pairs, 2))
        return z[:, :count].reshape(self.batch_size, *shape)


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
