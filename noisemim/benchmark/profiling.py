"""The share of a training step spent in named ``record_function`` ranges.

A range opened in the forward pass (e.g. ``noisemim.disruption_loss``) also
costs time in the backward pass. Each backward node is recorded by the
profiler under ``autograd::engine::evaluate_function: ...`` with the sequence
number of the forward op that created it, so a range's cost is its own
forward time plus the backward nodes of the ops it ran (including any
activation-checkpoint recomputation done inside them).
"""
from typing import Dict, Iterable, Sequence, Set, Tuple

BACKWARD_PREFIX = 'autograd::engine::evaluate_function'


def _cost(event, device_time: bool) -> float:
    return event.device_time_total if device_time else event.cpu_time_total


def _descendants(event) -> Iterable:
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


def range_shares(events: Sequence, names: Sequence[str], total_us: float,
                 device_time: bool = False) -> Dict[str, float]:
    """Forward plus backward time of each named range, as a share of the steps.

    Args:
        events (Sequence): ``torch.profiler.profile().events()``.
        names (Sequence[str]): ``record_function`` names.
        total_us (float): The profiled steps' time in microseconds.
        device_time (bool): Use the accelerator time of the ops (CUDA) rather
            than their CPU time.

    Returns:
        Dict[str, float]: Name -> share of ``total_us`` (0 if never run).
    """
    shares = {}
    for name in names:
        ranges = [e for e in events if e.name == name]
        forward = sum(_cost(e, device_time) for e in ranges)
        keys: Set[Tuple[int, int]] = {(d.thread, d.sequence_nr)
                                      for r in ranges
                                      for d in _descendants(r)
                                      if d.sequence_nr >= 0}
        backward_nodes = [
            e for e in events if e.name.startswith(BACKWARD_PREFIX)
            and (e.fwd_thread, e.sequence_nr) in keys
        ]
        counted = {id(e) for e in backward_nodes}
        backward = sum(
            _cost(e, device_time) for e in backward_nodes
            if not _has_counted_ancestor(e, counted))
        shares[name] = (forward + backward) / total_us if total_us else 0.
    return shares
