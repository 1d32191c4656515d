"""Count the ops and time the per-sample random numbers of one batch.

One call is what a NoiseMIM training step draws: the corruption of a batch
(``CorruptionSampler.sample``: mask, noised set, ``t`` and ``eps``) at the
NoiseMIM ViT-B/16 config's sizes by default. It counts the top-level ops and
compiled regions a profiler sees (views left out), the aten ops of an eager
draw (a ``TorchDispatchMode``) and those over at least ``batch * |S| * C / 2``
elements (the per-element lanes), and times the draws on this process's CPU
time (``time.process_time``), paired round by round with a baseline::

    # the numbers before the 32-bit lanes, from git, as the baseline
    git show b2483d8:noisemim/models/corruption.py > /tmp/corruption_before.py
    python tools/misc/benchmark_rng.py --baseline /tmp/corruption_before.py

The baseline file is a ``corruption.py`` with its own ``SampleRandom`` and
``CorruptionSampler``; both draws are checked to be bit-identical first.
"""
import argparse
import importlib.util
import statistics
import time
from collections import Counter

import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils._python_dispatch import TorchDispatchMode

from noisemim.models import sample_rng
from noisemim.models.corruption import CorruptionSampler


class OpCounter(TorchDispatchMode):
    """Counts the aten ops that compute (no views, no bare allocations),
    and those whose output has ``>= big`` elements."""

    NO_KERNEL = {'empty', 'empty_like', 'empty_strided'}

    def __init__(self, big: int) -> None:
        super().__init__()
        self.big = big
        self.ops, self.big_ops = Counter(), Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = str(func.overloadpacket.__name__)
        if func.is_view or name in self.NO_KERNEL:
            return out
        self.ops[name] += 1
        first = out[0] if isinstance(out, (tuple, list)) and out else out
        if isinstance(first, torch.Tensor) and first.numel() >= self.big:
            self.big_ops[name] += 1
        return out


VIEWS = {'view', 'select', 'reshape', 'slice', 'expand', 'alias', 'unsqueeze',
         'as_strided', '_unsafe_view', 'detach'}


def profiled_ops(fn) -> int:
    """Top-level ops and compiled regions that ``fn`` runs (the profiler's
    view, which also sees inside compiled code's launches), less views."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    names = [e.name for e in prof.events() if e.cpu_parent is None]
    return sum(1 for n in names if not n.startswith('TorchDynamo')
               and n.split('::')[-1] not in VIEWS)


def load(path: str):
    spec = importlib.util.spec_from_file_location('baseline_rng', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--batch-size', type=int, default=512)
    parser.add_argument('--grid', type=int, default=14, help='patches a side')
    parser.add_argument('--channels', type=int, default=768)
    parser.add_argument('--repeats', type=int, default=7)
    parser.add_argument('--baseline', help='an older corruption.py')
    parser.add_argument('--compiled', action='store_true',
                        help='also time the torch.compile-d draws')
    args = parser.parse_args()
    torch.set_num_threads(1)
    settings = dict(patch_size=16, mask_ratio=0.6, mask_unit=32,
                    noise_ratio=0.5, t_range=(0., 1.),
                    noise_channels=args.channels)
    grid = (args.grid, args.grid)
    positions = torch.arange(args.batch_size) + 10**6
    rows = {'now (int32 lanes, eager)': (sample_rng, CorruptionSampler,
                                         False)}
    if args.compiled:
        rows['now (compiled where exact)'] = (sample_rng, CorruptionSampler,
                                              True)
    if args.baseline:
        old = load(args.baseline)
        rows['baseline'] = (old, old.CorruptionSampler, False)

    def draw(row):
        module, sampler_cls, compiled = rows[row]
        sample_rng.use_compiled_draws(compiled)
        return sampler_cls(**settings).sample(
            module.SampleRandom(11, positions), grid)

    num_noised = CorruptionSampler(**settings).counts(grid)[1]
    big = args.batch_size * num_noised * args.channels // 2
    reference = draw(next(iter(rows)))
    for row in rows:
        out = draw(row)
        for name in ('mask', 'noised_index', 't', 'eps'):
            assert torch.equal(getattr(out, name), getattr(reference, name)), \
                f'{row}: {name} differs'
    times = {row: [] for row in rows}
    for r in range(args.repeats):
        order = list(rows)[r % len(rows):] + list(rows)[:r % len(rows)]
        for row in order:
            start = time.process_time()
            draw(row)
            times[row].append(time.process_time() - start)
    print(f'batch {args.batch_size}, grid {args.grid}x{args.grid}, '
          f'|S| {num_noised}, C {args.channels}: {big * 2:,} eps lanes; '
          f'one thread, CPU time, median of {args.repeats}')
    first = next(iter(rows))
    for row in rows:
        ops = f'{profiled_ops(lambda: draw(row))} ops or compiled regions'
        if not rows[row][2]:
            counter = OpCounter(big)
            with counter:
                draw(row)
            ops += (f'; {sum(counter.ops.values())} aten ops, '
                    f'{sum(counter.big_ops.values()):3d} over the eps lanes '
                    f'({dict(counter.big_ops)})')
        ratio = [t / f for t, f in zip(times[row], times[first])]
        print(f'{row}: {1e3 * statistics.median(times[row]):.1f} ms, '
              f'x{statistics.median(ratio):.2f} of the first row; {ops}')
    sample_rng.use_compiled_draws(None)


if __name__ == '__main__':
    main()
