"""Where a training loop leaves the device idle, and what the optimizer launches.

:class:`IterationProfileHook` profiles a few iterations of a real mmengine
training loop (data loader, hooks, ``train_step``) with ``torch.profiler`` and
writes a summary: the device's busy share of the profiled span and its idle
gaps (host syncs, data waits and launch overhead show up as gaps), the host
time between iterations (the loader and the hooks), and the optimizer step's
aten ops, kernel launches and host time. On a CPU the "device" activity is
the outermost aten ops of the process: the same code runs, as a stand-in.
"""
import json
import os.path as osp
import time
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from .profiling import descendants

#: ``torch.optim.Optimizer`` wraps every ``step`` in this range.
OPTIMIZER_RANGE = 'Optimizer.step#'
#: CUDA runtime/driver calls that launch a kernel.
LAUNCHES = ('cudaLaunchKernel', 'cudaLaunchKernelExC', 'cuLaunchKernel',
            'cuLaunchKernelEx', 'cudaLaunchCooperativeKernel',
            'cudaGraphLaunch')
Interval = Tuple[float, float]


def _device_name(event) -> str:
    return getattr(event.device_type, 'name', str(event.device_type))


def device_intervals(events: Sequence, device: str) -> List[Interval]:
    """``(start, end)`` microseconds of the device's activity.

    Args:
        events (Sequence): ``torch.profiler.profile().events()``.
        device (str): ``'cuda'``: kernels, copies and memsets on the GPU;
            ``'cpu'``: the outermost aten ops (in the forward, the backward
            nodes and the optimizer alike; the stand-in).

    Returns:
        List[Interval]: One interval per activity, unsorted.
    """
    if device == 'cuda':
        return [(e.time_range.start, e.time_range.end) for e in events
                if _device_name(e) == 'CUDA' and not getattr(
                    e, 'is_user_annotation', False)]
    return [(e.time_range.start, e.time_range.end) for e in events
            if _device_name(e) == 'CPU' and e.name.startswith('aten::')
            and not _has_aten_ancestor(e)]


def _has_aten_ancestor(event) -> bool:
    parent = event.cpu_parent
    while parent is not None:
        if parent.name.startswith('aten::'):
            return True
        parent = parent.cpu_parent
    return False


def merge_intervals(intervals: Iterable[Interval]) -> List[Interval]:
    """The union of intervals, as sorted disjoint intervals."""
    merged: List[List[float]] = []
    for start, end in sorted(intervals):
        if end < start:
            raise ValueError(f'an interval ends before it starts: '
                             f'({start}, {end})')
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(s, e) for s, e in merged]


def idle_summary(intervals: Iterable[Interval], iterations: int,
                 largest: int = 3) -> Dict[str, float]:
    """The device's busy and idle time over the span of its activity.

    Args:
        intervals (Iterable[Interval]): Activity in microseconds.
        iterations (int): Iterations the span holds.
        largest (int): How many of the longest gaps to list.

    Returns:
        dict: ``span_ms``, ``busy_ms``, ``idle_ms``, ``busy_share``,
        ``idle_ms_per_iter``, ``gaps`` (count of gaps between activities),
        ``largest_gaps_ms`` (longest first).
    """
    if iterations < 1:
        raise ValueError(f'iterations must be >= 1, got {iterations}')
    merged = merge_intervals(intervals)
    if not merged:
        raise ValueError('no device activity was recorded')
    span = merged[-1][1] - merged[0][0]
    busy = sum(e - s for s, e in merged)
    gaps = sorted((b[0] - a[1] for a, b in zip(merged, merged[1:])),
                  reverse=True)
    return dict(span_ms=span / 1e3, busy_ms=busy / 1e3,
                idle_ms=(span - busy) / 1e3,
                busy_share=busy / span if span else 1.,
                idle_ms_per_iter=(span - busy) / 1e3 / iterations,
                gaps=len(gaps),
                largest_gaps_ms=[g / 1e3 for g in gaps[:largest]])


def optimizer_summary(events: Sequence, steps: int) -> Dict[str, float]:
    """What one optimizer step costs the host, from the profiler's events.

    Args:
        events (Sequence): ``torch.profiler.profile().events()``.
        steps (int): Optimizer steps profiled.

    Returns:
        dict: Per step: ``aten_ops`` (aten calls made by the optimizer's
        code, not counting those nested inside another aten op),
        ``launches`` (CUDA kernel launches, 0 on CPU), ``host_ms`` (the
        step's CPU time span), and ``steps`` found.
    """
    ranges = [e for e in events if e.name.startswith(OPTIMIZER_RANGE)
              and _device_name(e) == 'CPU']
    aten = launches = 0
    for r in ranges:
        for d in descendants(r):
            if d.name in LAUNCHES:
                launches += 1
            elif d.name.startswith('aten::'):
                parent = d.cpu_parent
                if parent is r or not parent.name.startswith('aten::'):
                    aten += 1
    host = sum(r.time_range.end - r.time_range.start for r in ranges)
    n = max(steps, 1)
    return dict(steps=len(ranges), aten_ops=aten / n, launches=launches / n,
                host_ms=host / 1e3 / n)


@HOOKS.register_module()
class IterationProfileHook(Hook):
    """Profile ``iters`` training iterations from iteration ``start`` on.

    Writes ``out_file`` (JSON, in the work dir unless absolute) with
    :func:`idle_summary` (``device``), :func:`optimizer_summary`
    (``optimizer``), the host milliseconds per iteration (``iter_ms``:
    ``before_train_iter`` to ``after_train_iter``, data already loaded) and
    between iterations (``between_ms``: the data wait and the hooks). If
    the summary cannot be made, it holds ``error`` and training goes on.

    Args:
        start (int): First profiled iteration (0-based; after warm-up).
        iters (int): Iterations profiled.
        out_file (str): The summary's file.
    """
    priority = 'VERY_LOW'

    def __init__(self, start: int = 5, iters: int = 5,
                 out_file: str = 'iteration_profile.json') -> None:
        if start < 0 or iters < 1:
            raise ValueError(f'IterationProfileHook needs start >= 0 and '
                             f'iters >= 1, got start={start}, iters={iters}')
        self.start, self.iters, self.out_file = start, iters, out_file
        self._profiler = None
        self._marks: List[Tuple[float, float]] = []
        self._cuda = False

    def before_train_iter(self, runner, batch_idx: int,
                          data_batch: Optional[dict] = None) -> None:
        if runner.iter == self.start:
            from torch.profiler import ProfilerActivity, profile
            self._cuda = torch.cuda.is_available() and next(
                runner.model.parameters()).is_cuda
            activities = [ProfilerActivity.CPU]
            if self._cuda:
                activities.append(ProfilerActivity.CUDA)
            self._profiler = profile(activities=activities)
            self._profiler.__enter__()
        if self._profiler is not None:
            self._marks.append((time.perf_counter(), 0.))

    def after_train_iter(self, runner, batch_idx: int,
                         data_batch: Optional[dict] = None,
                         outputs: Optional[dict] = None) -> None:
        if self._profiler is None:
            return
        self._marks[-1] = (self._marks[-1][0], time.perf_counter())
        if runner.iter + 1 < self.start + self.iters:
            return
        if self._cuda:
            torch.cuda.synchronize()
        self._profiler.__exit__(None, None, None)
        events = self._profiler.events()
        self._profiler = None
        try:
            summary = self.summarise(events, self._marks, self._cuda)
        except Exception as error:  # a summary, not the training, fails
            summary = dict(error=f'{type(error).__name__}: {error}')
        path = (self.out_file if osp.isabs(self.out_file) else osp.join(
            runner.work_dir, self.out_file))
        with open(path, 'w') as f:
            json.dump(summary, f, indent=2)
        runner.logger.info(f'IterationProfileHook: {json.dumps(summary)}')

    @staticmethod
    def summarise(events: Sequence, marks: Sequence[Tuple[float, float]],
                  cuda: bool) -> dict:
        """The JSON summary of a profiled stretch of iterations.

        Args:
            events (Sequence): The profiler's events.
            marks (Sequence[Tuple[float, float]]): Host ``(start, end)``
                seconds of each iteration.
            cuda (bool): Whether the device is a GPU.

        Returns:
            dict: See the class docstring.
        """
        iters = len(marks)
        between = [b[0] - a[1] for a, b in zip(marks, marks[1:])]
        return dict(
            device='cuda' if cuda else 'cpu (aten ops as the device)',
            iterations=iters,
            iter_ms=sum(e - s for s, e in marks) / iters * 1e3,
            between_ms=(sum(between) / len(between) * 1e3
                        if between else 0.),
            idle=idle_summary(device_intervals(events,
                                               'cuda' if cuda else 'cpu'),
                              iters),
            optimizer=optimizer_summary(events, iters))
