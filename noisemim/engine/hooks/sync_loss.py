"""Log each loss term averaged over all processes, not rank 0's alone, and
read all of a step's logged values back from the device in one transfer."""
from typing import Optional

from mmengine.dist import all_reduce, get_world_size
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from .host_values import stack_scalars


@HOOKS.register_module()
class SyncLossHook(Hook):
    """Average the model's log variables over the processes before logging.

    mmengine logs the values of rank 0. This hook runs first in
    ``after_train_iter`` (before ``RuntimeInfoHook`` records the values) and
    replaces each scalar value in ``outputs`` by its mean over all ranks, with
    one all-reduce per iteration. With equal per-rank batches the logged
    ``loss`` is then the loss of the whole global batch.

    The values are stacked on their device, reduced there, and copied to the
    host once: the later hooks (``RuntimeInfoHook``'s ``.item()`` per value,
    :class:`FiniteLossHook`) then read host tensors, so a step makes one
    device-to-host synchronisation for its logging instead of one per value
    and hook. With one process only that copy is made.
    """

    priority = 'HIGHEST'

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch=None,
                         outputs: Optional[dict] = None) -> None:
        """Replace each scalar of ``outputs`` by its mean over the ranks, on
        the host.

        Args:
            runner (Runner): The runner.
            batch_idx (int): The index of the batch.
            data_batch (Any): The batch (unused).
            outputs (dict, optional): The model's log variables (changed in
                place).
        """
        if not outputs:
            return
        keys, values = stack_scalars(outputs)
        if values is None:
            return
        if get_world_size() > 1:
            all_reduce(values, op='mean')
        for key, value in zip(keys, values.cpu()):
            outputs[key] = value
