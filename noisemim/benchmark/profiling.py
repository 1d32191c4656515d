"""The share of a training step spent in named ``record_function`` ranges.

A range opened in the forward pass (e.g. ``noisemim.disruption_loss``) also
costs time in the backward pass. Each backward node is recorded by the
profiler under ``autograd::engine::evaluate_function: ...`` with the sequence
number of the forward op that created it, so a range's cost is its own
forward time plus the backward nodes of the ops it ran (including any
activation-checkpoint recomputation done inside them).

Three traps, each handled here:

* Every op records the *next* sequence number, so an op that creates no
  backward node (a ``detach``, an integer op, a reduction of a detached
  tensor) carries the number of the next node created, possibly by an op
  outside the range. A node is counted only when the op that created it is
  inside the range: of the outermost ops with that number, the last one.
* With CUDA activity the profiler records a ``record_function`` range twice,
  as a CPU op and as a GPU user annotation; only the CPU op is counted.
* Numerator and denominator use one clock: the profiler's CPU clock (the
  span of the profiled steps) or, on a GPU, the device time of the kernels
  (the step's total device time is that of all its top-level ops).
"""
from typing import Dict, Iterable, List, Sequence, Set, Tuple

BACKWARD_PREFIX = 'autograd::engine::evaluate_function'


def _cost(event, device_time: bool) -> float:
    return event.device_time_total if device_time else event.cpu_time_total


def _on_cpu(event) -> bool:
    return getattr(event.device_type, 'name', str(event.device_type)) == 'CPU'


def descendants(event) -> Iterable:
    """Every profiler event below ``event`` on the CPU side (depth first)."""
    stack = list(event.cpu_children)
    while stack:
        child = stack.pop()
        yield child
        stack.extend(child.cpu_children)


def _has_counted_ancestor(event, counted: Set[int]) -> bool:
    parent = event.cpu_parent
    while parent is not None:
        if id(parent) in counted:
            return True
        parent = parent.cpu_parent
    return False


def node_creators(events: Sequence) -> Dict[Tuple[int, int], int]:
    """The forward op that created each backward node.

    Args:
        events (Sequence): The profiler's events.

    Returns:
        Dict[Tuple[int, int], int]: ``(thread, sequence_nr)`` of a node ->
        ``id`` of the forward op that created it (the last of the outermost
        forward ops that recorded that number).
    """
    creators: Dict[Tuple[int, int], object] = {}
    for e in events:
        if (e.sequence_nr < 0 or not _on_cpu(e)
                or e.name.startswith(BACKWARD_PREFIX)):
            continue
        parent = e.cpu_parent
        if parent is not None and parent.sequence_nr == e.sequence_nr:
            continue  # nested inside an op with the same number
        key = (e.thread, e.sequence_nr)
        last = creators.get(key)
        if last is None or e.time_range.start >= last.time_range.start:
            creators[key] = e
    return {key: id(e) for key, e in creators.items()}


def step_total(events: Sequence, device_time: bool = False) -> float:
    """The profiled steps' time, on the clock of the ranges' costs.

    Args:
        events (Sequence): The profiler's events.
        device_time (bool): The device time of all top-level ops' kernels;
            else the CPU-clock span from the first op's start to the last
            op's end.

    Returns:
        float: Microseconds.
    """
    top = [e for e in events if e.cpu_parent is None and _on_cpu(e)]
    if not top:
        return 0.
    if device_time:
        return float(sum(e.device_time_total for e in top))
    return float(max(e.time_range.end for e in top) -
                 min(e.time_range.start for e in top))


def range_shares(events: Sequence, names: Sequence[str],
                 total_us: float = None,
                 device_time: bool = False) -> Dict[str, float]:
    """Forward plus backward time of each named range, as a share of the steps.

    Args:
        events (Sequence): ``torch.profiler.profile().events()``.
        names (Sequence[str]): ``record_function`` names.
        total_us (float, optional): The steps' time in microseconds, on the
            same clock. Defaults to :func:`step_total`.
        device_time (bool): Use the accelerator time of the ops (CUDA) rather
            than their CPU time.

    Returns:
        Dict[str, float]: Name -> share of ``total_us`` (0 if never run).
    """
    if total_us is None:
        total_us = step_total(events, device_time)
    creators = node_creators(events)
    backward_events = [e for e in events if e.name.startswith(BACKWARD_PREFIX)]
    shares = {}
    for name in names:
        ranges = [e for e in events if e.name == name and _on_cpu(e)]
        forward = sum(_cost(e, device_time) for e in ranges)
        inside: Set[int] = {id(d) for r in ranges for d in descendants(r)}
        nodes: List = [
            e for e in backward_events
            if creators.get((e.fwd_thread, e.sequence_nr)) in inside
        ]
        counted = {id(e) for e in nodes}
        backward = sum(
            _cost(e, device_time) for e in nodes
            if not _has_counted_ancestor(e, counted))
        shares[name] = (forward + backward) / total_us if total_us else 0.
    return shares
