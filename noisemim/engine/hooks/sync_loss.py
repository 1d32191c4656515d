"""Log each loss term averaged over all processes, not rank 0's alone."""
from typing import Optional

import torch
from mmengine.dist import all_reduce, get_world_size
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class SyncLossHook(Hook):
    """Average the model's log variables over the processes before logging.

    mmengine logs the values of rank 0. This hook runs first in
    ``after_train_iter`` (before ``RuntimeInfoHook`` records the values) and
    replaces each value in ``outputs`` by its mean over all ranks, with one
    all-reduce per iteration. With equal per-rank batches the logged ``loss``
    is then the loss of the whole global batch. One process: no-op.
    """

    priority = 'HIGHEST'

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch=None,
                         outputs: Optional[dict] = None) -> None:
        """Replace each value of ``outputs`` by its mean over the ranks.

        Args:
            runner (Runner): The runner.
            batch_idx (int): The index of the batch.
            data_batch (Any): The batch (unused).
            outputs (dict, optional): The model's log variables (changed in
                place).
        """
        if not outputs or get_world_size() == 1:
            return
        keys = list(outputs)
        values = torch.stack([
            torch.as_tensor(outputs[k]).detach().to('cpu', torch.float64)
            for k in keys
        ])
        all_reduce(values, op='mean')
        for key, value in zip(keys, values):
            outputs[key] = value
