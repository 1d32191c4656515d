"""Dynamic Token Morphing (DTM): contextualised targets from merged teacher tokens.

Kim, Heo and Han, "Morphing Tokens Draw Strong Masked Image Models"
(arXiv 2401.00254), as its official code does it:

* **Morphing** groups the teacher's ``N`` patch tokens by ToMe's bipartite soft
  matching (Bolya et al., 2023), iterated ``iters`` times: split the current
  groups alternately into sets ``A`` (even) and ``B`` (odd), match every group
  of ``A`` to its most cosine-similar group of ``B``, and merge the ``r`` best
  matched ``A`` groups into their partners (at most half of the remaining
  groups per iteration). The next iteration matches the groups' mean tokens.
* The membership of the groups is the **source matrix** ``S`` (``G x N``, one
  1 per token column); ``G = N - merged tokens``.
* The **dynamic scheduler** draws, per step and for each of ``L`` losses, the
  number of merged tokens ``num_merge ~ U{0..196}`` and of iterations
  ``iters ~ U{1..14}``; ``r = ceil(num_merge / iters)`` per iteration.
* **Aggregation** replaces every token of the student's predictions and of the
  teacher's targets by the mean of its group (``S^T (S x / |group|)``), so the
  loss still covers all ``N`` tokens. ``r = 0`` is plain token-wise
  distillation.

The draws come from a ``torch.Generator`` seeded like the corruption of
:mod:`noisemim.models.corruption` (from the Runner's seed and iteration), so a
step morphs the same way after ``--resume``. By default every rank draws the
same morphings (a global batch sees ``L`` schedules per step, whatever the
number of GPUs); ``per_rank_draws=True`` mixes the rank into the seed, so each
rank draws its own, as the official code's per-process ``random`` does.

As the official code, the first patch token is never merged by default
(``protect_first=True``: ToMe's ``class_token=True`` on patch tokens alone);
``protect_first=False`` is plain ToMe.
"""
import math
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from mmengine.dist import get_dist_info
from torch import Tensor

from .sample_rng import mix32, step_seed

# Mixed into ``step_seed()`` so the morphing draws are not the corruption's.
MORPHING_SEED_SALT = 0x5EED_D7A1


def merge_counts(num_tokens: int,
                 r: int,
                 iters: int,
                 protect_first: bool = True) -> List[int]:
    """How many groups each matching iteration merges.

    Every iteration merges ``min(r, (groups - protected) // 2)`` groups: at
    most half of the remaining ones, as bipartite matching can pair no more.

    Args:
        num_tokens (int): The tokens ``N`` before morphing.
        r (int): The merges asked for per iteration.
        iters (int): The number of matching iterations.
        protect_first (bool): The first token is never merged. Defaults to
            True (as the official DTM code).

    Returns:
        List[int]: The merges of each iteration that merges anything.
    """
    counts, groups = [], num_tokens
    for _ in range(iters):
        merged = min(r, (groups - int(protect_first)) // 2)
        if merged <= 0:
            break
        counts.append(merged)
        groups -= merged
    return counts


def bipartite_soft_matching(metric: Tensor,
                            r: int,
                            protect_first: bool = True
                            ) -> Tuple[Tensor, Tensor, Tensor]:
    """One iteration of ToMe's matching: which ``A`` groups merge where.

    Args:
        metric (Tensor): ``(B, G, C)`` group features (their mean or summed
            tokens: only their directions matter).
        r (int): Groups of ``A`` to merge, at most ``|A|`` (minus the
            protected one).
        protect_first (bool): Group 0 never merges (ToMe's ``class_token``).
            Defaults to True (as the official DTM code).

    Returns:
        Tuple[Tensor, Tensor, Tensor]: ``(B, |A| - r)`` indices into ``A`` of
        the groups that stay, ``(B, r)`` indices into ``A`` of those that
        merge, and ``(B, r)`` indices into ``B`` of where each one goes.
    """
    metric = F.normalize(metric.float(), dim=-1)
    scores = metric[:, ::2] @ metric[:, 1::2].transpose(1, 2)
    if protect_first:
        scores[:, 0] = -math.inf
    best, best_dst = scores.max(dim=-1)
    order = best.argsort(dim=-1, descending=True)
    kept, merged = order[:, r:], order[:, :r]
    if protect_first:  # as ToMe does with a class token: keep it first
        kept = kept.sort(dim=-1).values
    return kept, merged, best_dst.gather(1, merged)


def _merge_sums(x: Tensor, kept: Tensor, merged: Tensor,
                dst: Tensor) -> Tensor:
    """Add each merged ``A`` row of ``x`` into its ``B`` row; ``[kept A, B]``.

    Args:
        x (Tensor): ``(B, G, K)`` per-group sums.
        kept, merged, dst (Tensor): From :func:`bipartite_soft_matching`.

    Returns:
        Tensor: ``(B, G - r, K)``.
    """
    a, b = x[:, ::2], x[:, 1::2]
    width = x.shape[-1]
    kept_rows = a.gather(1, kept[..., None].expand(-1, -1, width))
    moved = a.gather(1, merged[..., None].expand(-1, -1, width))
    b = b.scatter_add(1, dst[..., None].expand(-1, -1, width), moved)
    return torch.cat([kept_rows, b], dim=1)


def _new_group_index(num_groups: int, kept: Tensor, merged: Tensor,
                     dst: Tensor) -> Tensor:
    """Where each group goes in :func:`_merge_sums`' output.

    Args:
        num_groups (int): ``G`` before the merge.
        kept, merged, dst (Tensor): From :func:`bipartite_soft_matching`.

    Returns:
        Tensor: ``(B, G)`` the index of every group after the merge.
    """
    B, num_kept = kept.shape
    kept_order = torch.arange(num_kept, device=kept.device).expand(B, -1)
    a_index = torch.empty(B, (num_groups + 1) // 2, dtype=torch.long,
                          device=kept.device)
    a_index.scatter_(1, kept, kept_order)
    a_index.scatter_(1, merged, num_kept + dst)
    index = torch.empty(B, num_groups, dtype=torch.long, device=kept.device)
    index[:, ::2] = a_index
    index[:, 1::2] = num_kept + torch.arange(num_groups // 2,
                                             device=kept.device)
    return index


@torch.no_grad()
def morph(tokens: Tensor,
          r: int,
          iters: int,
          protect_first: bool = True) -> Tensor:
    """Morph tokens: the source matrix of ``iters`` rounds of ToMe matching.

    Args:
        tokens (Tensor): ``(B, N, C)`` the teacher's tokens.
        r (int): Merges per iteration, capped at half of the remaining groups
            (see :func:`merge_counts`).
        iters (int): Matching iterations.
        protect_first (bool): Token 0 is never merged. The official DTM code
            passes ToMe's ``class_token=True`` on patch tokens alone, which
            does this to the first patch. Defaults to True; False is plain
            ToMe.

    Returns:
        Tensor: ``(B, G, N)`` source matrix in ``tokens``' dtype, ``S[b, g,
        n] = 1`` iff token ``n`` is in group ``g``; ``G = N - merged``.
    """
    if tokens.dim() != 3:
        raise ValueError(f'tokens must be (B, N, C), got shape '
                         f'{tuple(tokens.shape)}')
    B, N, C = tokens.shape
    counts = merge_counts(N, r, iters, protect_first)
    if not counts:
        return torch.eye(N, dtype=tokens.dtype,
                         device=tokens.device).expand(B, N, N)
    # Per group: [sum of its tokens | its size]; each token's group.
    state = F.pad(tokens.detach().float(), (0, 1), value=1.)
    group = torch.arange(N, device=tokens.device).expand(B, N)
    for merged in counts:
        # A group's sum has its mean's direction: same cosine similarity.
        match = bipartite_soft_matching(state[..., :C], merged, protect_first)
        group = _new_group_index(state.shape[1], *match).gather(1, group)
        state = _merge_sums(state, *match)
    source = F.one_hot(group, state.shape[1]).transpose(1, 2)
    return source.to(tokens.dtype)


def group_mean(x: Tensor, source: Tensor) -> Tensor:
    """The mean of ``x`` over each group.

    Args:
        x (Tensor): ``(B, N, C)`` per-token values.
        source (Tensor): ``(B, G, N)`` source matrix.

    Returns:
        Tensor: ``(B, G, C)``.
    """
    source = source.to(x.dtype)
    return (source @ x) / source.sum(-1, keepdim=True)


def morph_average(x: Tensor, source: Tensor) -> Tensor:
    """Replace every token by the mean of its group: ``S^T (S x / |g|)``.

    Args:
        x (Tensor): ``(B, N, C)`` predictions or targets.
        source (Tensor): ``(B, G, N)`` source matrix.

    Returns:
        Tensor: ``(B, N, C)``; ``x`` itself when no token was merged.
    """
    if source.shape[1] == source.shape[2]:
        return x  # G = N: every group is one token
    return source.to(x.dtype).transpose(1, 2) @ group_mean(x, source)


@dataclass(frozen=True)
class MorphingDraw:
    """One loss's morphing: ``num_merge`` tokens over ``iters`` iterations,
    ``r`` per iteration (before the cap at half of the remaining groups)."""
    num_merge: int
    iters: int
    r: int


def _check_range(name: str, value, low: int) -> Tuple[int, int]:
    if (not isinstance(value, (tuple, list)) or len(value) != 2
            or not all(isinstance(v, int) for v in value)
            or not low <= value[0] <= value[1]):
        raise ValueError(f'{name} must be (min, max) integers with '
                         f'{low} <= min <= max, got {value!r}')
    return int(value[0]), int(value[1])


class DynamicTokenMorphing:
    """DTM's dynamic scheduler and morphing: ``L`` source matrices per step.

    Args:
        num_merge_range (Sequence[int]): ``num_merge ~ U{min..max}``, both
            included. Defaults to ``(0, 196)``.
        iters_range (Sequence[int]): ``iters ~ U{min..max}``, ``min >= 1``.
            Defaults to ``(1, 14)``.
        num_draws (int): ``L``, the morphings (losses) per step. Defaults to 2.
        protect_first (bool): See :func:`morph`. Defaults to True (the
            official code); False is plain ToMe.
        per_rank_draws (bool): Each rank draws its own morphings (the
            official code's per-process draws); else all ranks share them,
            and a global batch sees ``num_draws`` schedules per step.
            Defaults to False.
    """

    def __init__(self,
                 num_merge_range: Sequence[int] = (0, 196),
                 iters_range: Sequence[int] = (1, 14),
                 num_draws: int = 2,
                 protect_first: bool = True,
                 per_rank_draws: bool = False) -> None:
        self.num_merge_range = _check_range('num_merge_range',
                                            num_merge_range, 0)
        self.iters_range = _check_range('iters_range', iters_range, 1)
        if not (isinstance(num_draws, int) and num_draws >= 1):
            raise ValueError(f'num_draws must be an integer >= 1, got '
                             f'{num_draws!r}')
        self.num_draws = num_draws
        self.protect_first = bool(protect_first)
        self.per_rank_draws = bool(per_rank_draws)

    def merge_rate(self, num_merge: int, iters: int) -> int:
        """``r = ceil(num_merge / iters)``, or the floor where ``r * iters``
        would exceed the largest ``num_merge`` (as the official code does).

        Args:
            num_merge (int): Tokens to merge in all.
            iters (int): Iterations.

        Returns:
            int: Merges per iteration.
        """
        r = math.ceil(num_merge / iters)
        if r * iters > self.num_merge_range[1]:
            r = num_merge // iters
        return r

    def draw_seed(self, rank: Optional[int] = None) -> int:
        """The seed of this step's draws (see the module docstring).

        Args:
            rank (int, optional): The process's rank, used with
                ``per_rank_draws``. Defaults to mmengine's ``get_dist_info``.

        Returns:
            int: ``step_seed()`` salted, with the rank mixed in under
            ``per_rank_draws``.
        """
        seed = step_seed() ^ MORPHING_SEED_SALT
        if self.per_rank_draws:
            rank = get_dist_info()[0] if rank is None else int(rank)
            # (in the low 32 bits: the CPU generator keeps only those)
            seed ^= mix32(rank & 0xFFFFFFFF)
        return seed

    def draw(self,
             generator: Optional[torch.Generator] = None,
             rank: Optional[int] = None) -> List[MorphingDraw]:
        """Draw this step's ``L`` morphings.

        Args:
            generator (torch.Generator, optional): By default one seeded by
                :meth:`draw_seed` (the Runner's seed and iteration).
            rank (int, optional): See :meth:`draw_seed`.

        Returns:
            List[MorphingDraw]: ``num_draws`` draws.
        """
        if generator is None:
            generator = torch.Generator().manual_seed(self.draw_seed(rank))
        (m_lo, m_hi), (k_lo, k_hi) = self.num_merge_range, self.iters_range
        shape = (self.num_draws, )
        num_merge = torch.randint(m_lo, m_hi + 1, shape, generator=generator)
        iters = torch.randint(k_lo, k_hi + 1, shape, generator=generator)
        return [
            MorphingDraw(n, k, self.merge_rate(n, k))
            for n, k in zip(num_merge.tolist(), iters.tolist())
        ]

    def __call__(self,
                 tokens: Tensor,
                 draws: Optional[Sequence[MorphingDraw]] = None,
                 generator: Optional[torch.Generator] = None) -> List[Tensor]:
        """The source matrices of this step's morphings of ``tokens``.

        Args:
            tokens (Tensor): ``(B, N, C)`` the teacher's tokens.
            draws (Sequence[MorphingDraw], optional): Use these instead of
                drawing.
            generator (torch.Generator, optional): See :meth:`draw`.

        Returns:
            List[Tensor]: One ``(B, G_l, N)`` source matrix per draw.
        """
        draws = self.draw(generator) if draws is None else draws
        return [
            morph(tokens, d.r, d.iters, self.protect_first) for d in draws
        ]

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(num_merge_range='
                f'{self.num_merge_range}, iters_range={self.iters_range}, '
                f'num_draws={self.num_draws}, '
                f'protect_first={self.protect_first}, '
                f'per_rank_draws={self.per_rank_draws})')


def benchmark_morphing(batch_size: int = 64,
                       num_tokens: int = 196,
                       channels: int = 512,
                       num_merge: Union[int, str] = 'random',
                       iters: Union[int, str] = 'random',
                       repeats: int = 20,
                       warmup: int = 3,
                       device: Union[str, torch.device] = 'cpu',
                       seed: int = 0) -> Dict[str, Union[float, int, str]]:
    """Time DTM's morphing of teacher tokens at ViT-B sizes.

    One call is what a training step adds for one of the ``L`` losses: the
    morphing of ``(batch_size, num_tokens, channels)`` tokens (ViT-B/16 at 224
    px with CLIP's 512-d projection by default) and the aggregation of the
    predictions and the targets with the resulting source matrix.

    Args:
        batch_size (int): Samples per call. Defaults to 64.
        num_tokens (int): ``N``. Defaults to 196.
        channels (int): Token width. Defaults to 512.
        num_merge (int | str): Tokens merged, or ``'random'`` to draw from
            DTM's default ranges each call. Defaults to ``'random'``.
        iters (int | str): Iterations, or ``'random'``. Defaults to
            ``'random'``.
        repeats (int): Timed calls. Defaults to 20.
        warmup (int): Untimed calls first. Defaults to 3.
        device (str | torch.device): Where to run. Defaults to ``'cpu'``.
        seed (int): Seeds the tokens and the draws. Defaults to 0.

    Returns:
        dict: ``ms_per_call`` (mean), ``ms_min``, ``ms_max`` and the settings.
    """
    device = torch.device(device)
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randn(batch_size, num_tokens, channels,
                         generator=generator).to(device)
    preds = torch.randn_like(tokens)
    scheduler = DynamicTokenMorphing(
        num_merge_range=(0, num_tokens), iters_range=(1, 14), num_draws=1)

    def one_call() -> None:
        draw = scheduler.draw(generator)[0]
        n = draw.num_merge if num_merge == 'random' else int(num_merge)
        k = draw.iters if iters == 'random' else int(iters)
        source = morph(tokens, scheduler.merge_rate(n, k), k)
        morph_average(preds, source)
        morph_average(tokens, source)

    def sync() -> None:
        if device.type == 'cuda':
            torch.cuda.synchronize(device)

    for _ in range(warmup):
        one_call()
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        one_call()
        sync()
        times.append((time.perf_counter() - start) * 1e3)
    return dict(
        ms_per_call=sum(times) / len(times),
        ms_min=min(times),
        ms_max=max(times),
        batch_size=batch_size,
        num_tokens=num_tokens,
        channels=channels,
        num_merge=str(num_merge),
        iters=str(iters),
        repeats=repeats,
        device=str(device))
