"""Log each loss term averaged over all processes, not rank 0's alone, and
read the logged values back from the device only when they are needed."""
from typing import List, Optional, Tuple

import torch
from mmengine.dist import all_reduce, get_world_size
from mmengine.hooks import Hook
from mmengine.registry import HOOKS
from torch import Tensor

from .host_values import read_due, stack_scalars


@HOOKS.register_module()
class SyncLossHook(Hook):
    """Average the model's log variables over the processes, and read them
    on the host only at the iterations that need them.

    mmengine logs the values of rank 0, and its ``RuntimeInfoHook`` reads
    every value with ``.item()`` in every iteration: a host-device
    synchronisation that idles a GPU between iterations. This hook runs first
    in ``after_train_iter`` (before ``RuntimeInfoHook``) and takes the scalar
    values out of ``outputs``, stacked on their device. At the iterations
    whose values the host needs (:func:`~.host_values.read_due`: the logger's
    interval, a checkpoint, the end of an epoch or of the run) it averages
    all the values kept since the last such iteration over the ranks (one
    all-reduce) and copies them to the host (one transfer); it records the
    earlier iterations' values in the message hub, in order, and puts the
    current one's back into ``outputs`` as host tensors for
    ``RuntimeInfoHook`` and :class:`FiniteLossHook`. The message hub thus
    holds the same per-iteration values as with a read in every iteration
    whenever the logger or a checkpoint reads it; with equal per-rank
    batches the logged ``loss`` is the loss of the whole global batch.

    Called without a runner (a direct call), it reads the values at once.
    """

    priority = 'HIGHEST'

    def __init__(self) -> None:
        # (keys, (len(keys),) values on the device) per iteration not read
        self._kept: List[Tuple[List[str], Tensor]] = []

    def before_train(self, runner) -> None:
        """Start with nothing kept.

        Args:
            runner (Runner): The runner.
        """
        self._kept = []

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch=None,
                         outputs: Optional[dict] = None) -> None:
        """Keep the scalars of ``outputs`` on the device; at a reading
        iteration, average all kept values over the ranks and read them.

        Args:
            runner (Runner): The runner.
            batch_idx (int): The index of the batch.
            data_batch (Any): The batch (unused).
            outputs (dict, optional): The model's log variables (changed in
                place: the scalars are taken out, and put back on the host
                at a reading iteration).
        """
        if not outputs:
            return
        keys, values = stack_scalars(outputs)
        if values is None:
            return
        for key in keys:
            del outputs[key]
        self._kept.append((keys, values))
        if runner is not None and not read_due(runner, batch_idx):
            return
        kept, self._kept = self._kept, []
        stacked = torch.cat([v for _, v in kept])
        if get_world_size() > 1:
            all_reduce(stacked, op='mean')
        host = stacked.cpu().split([len(k) for k, _ in kept])
        for (keys, _), values in zip(kept[:-1], host[:-1]):
            for key, value in zip(keys, values.tolist()):
                runner.message_hub.update_scalar(f'train/{key}', value)
        for key, value in zip(kept[-1][0], host[-1]):
            outputs[key] = value
