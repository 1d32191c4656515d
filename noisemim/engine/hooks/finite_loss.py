"""Stop a run loudly at the first non-finite loss."""
import math
from typing import List, Optional, Tuple

from mmengine.hooks import Hook
from mmengine.registry import HOOKS
from mmengine.runner import find_latest_checkpoint

from .host_values import host_scalars


class NonFiniteLossError(FloatingPointError):
    """A loss term became NaN or infinite."""


@HOOKS.register_module()
class FiniteLossHook(Hook):
    """Raise :class:`NonFiniteLossError` when a loss term is NaN or infinite.

    The error names the iteration, every loss term and the last checkpoint
    saved before it (to resume from). The hook runs before ``LoggerHook`` and
    ``CheckpointHook``, so no checkpoint of the broken weights is written.
    Under ``SyncLossHook`` the terms are already averaged over the processes,
    so every rank stops at the same iteration.
    """

    priority = 'ABOVE_NORMAL'

    def __init__(self) -> None:
        self._checked = None  # runner.iter when training (re)started

    def before_train(self, runner) -> None:
        """Start checking from the run's (or the resume's) first iteration.

        Args:
            runner (Runner): The runner.
        """
        self._checked = runner.iter

    def _earlier(self, runner, keys: list) -> List[Tuple[int, dict]]:
        """The iterations that ``SyncLossHook`` read together with this one
        (their values are in the message hub), as ``(iteration, terms)``."""
        if self._checked is None:
            return []
        count, self._checked = runner.iter - self._checked, runner.iter + 1
        history = {
            k: runner.message_hub.get_scalar(f'train/{k}').data[0]
            for k in keys if f'train/{k}' in runner.message_hub.log_scalars
        }
        return [(runner.iter + 1 - back,
                 {k: float(h[-1 - back]) for k, h in history.items()
                  if len(h) > back}) for back in range(count, 0, -1)]

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch=None,
                         outputs: Optional[dict] = None) -> None:
        """Check the logged loss terms of this iteration.

        Args:
            runner (Runner): The runner.
            batch_idx (int): The index of the batch.
            data_batch (Any): The batch (unused).
            outputs (dict, optional): The model's log variables.

        Raises:
            NonFiniteLossError: Some term with ``loss`` in its name is not
                finite.
        """
        outputs = outputs or {}
        keys = [k for k in outputs if 'loss' in k]
        if not keys:  # SyncLossHook keeps them on the device until read
            return
        # One device-to-host copy for all terms (none after SyncLossHook,
        # which leaves them on the host), and those of the iterations read
        # with this one: the first non-finite one is reported.
        terms = host_scalars(outputs, keys)
        at = runner.iter + 1 if runner is not None else None
        for at, terms in self._earlier(runner, keys) + [(at, terms)]:
            if not all(math.isfinite(v) for v in terms.values()):
                break
        else:
            return
        last = (runner.message_hub.get_info('last_ckpt')
                or find_latest_checkpoint(runner.work_dir))
        where = (f'The last good checkpoint is {last}; resume with '
                 f'--resume {last} after fixing the cause (e.g. a lower lr, '
                 'gradient clipping, or fp32 instead of --amp).'
                 if last else 'No checkpoint was saved before it.')
        values = ', '.join(f'{k}={v}' for k, v in terms.items())
        message = (f'Non-finite loss at iteration {at}: '
                   f'{values}. Training stopped. {where}')
        runner.logger.error(message)
        raise NonFiniteLossError(message)
