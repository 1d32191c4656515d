"""Randomness that survives ``--resume`` and does not depend on the rank.

Two things mmengine leaves undone:

1. **A seed shared by all ranks.** With ``randomness.diff_rank_seed=True`` the
   Runner's seed is ``seed + rank``, and that is what ``RuntimeInfoHook`` puts
   in the ``MessageHub``. NoiseMIM draws the corruption of the *global* batch
   on every rank and keeps its own rows, so it needs one seed for all ranks.
   This hook publishes rank 0's seed as the ``shared_seed`` runtime info.
2. **RNG states in checkpoints.** A checkpoint carries no RNG state, so after
   ``--resume`` dropout, drop-path and the data augmentation would draw other
   numbers than the run that was never stopped. This hook stores the Python,
   numpy, torch (and CUDA) RNG states of *every* rank in each checkpoint
   (gathered just before ``CheckpointHook`` saves, since only rank 0 writes)
   and restores each rank's own state on resume. ``IterBasedTrainLoop``
   first re-loads the batches trained before the checkpoint (which draws
   from the RNGs), so the state is restored just before the first new batch
   is loaded; for epoch-based loops, before the next epoch starts.
"""
import random
from typing import List, Optional

import numpy as np
import torch
from mmengine.dist import (all_gather_object, broadcast_object_list,
                           get_dist_info)
from mmengine.hooks import CheckpointHook, Hook
from mmengine.registry import HOOKS

#: The ``MessageHub`` runtime-info key of the seed shared by all ranks.
SHARED_SEED_KEY = 'shared_seed'
#: The checkpoint key of the per-rank RNG states.
CHECKPOINT_KEY = 'rng_states'


def get_rng_state() -> dict:
    """The RNG states of this process, as plain values and tensors.

    Returns:
        dict: ``python``, ``numpy``, ``torch`` and ``cuda`` states, loadable
        with ``torch.load(weights_only=True)``.
    """
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return dict(
        python=random.getstate(),
        numpy=(name, torch.from_numpy(keys.astype(np.int64)), int(pos),
               int(has_gauss), float(cached)),
        torch=torch.get_rng_state(),
        cuda=torch.cuda.get_rng_state_all()
        if torch.cuda.is_available() else [])


def set_rng_state(state: dict) -> None:
    """Restore the states returned by :func:`get_rng_state`.

    Args:
        state (dict): A state from :func:`get_rng_state`.
    """
    version, internal, gauss = state['python']
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state['numpy']
    np.random.set_state(
        (name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state['torch'])
    if state['cuda'] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


class _RestoreBeforeNewBatch:
    """Stands in for ``IterBasedTrainLoop.dataloader_iterator`` on resume.

    mmengine skips the ``skip`` batches trained before the checkpoint by
    loading them again. On the next call the RNG state is restored, the real
    iterator is put back and the first new batch is loaded from it.
    """

    def __init__(self, loop, skip: int, state: dict) -> None:
        self.loop, self.skip, self.state = loop, skip, state
        self.iterator = loop.dataloader_iterator

    def __iter__(self):
        return self

    def __next__(self):
        if self.skip > 0:
            self.skip -= 1
            return next(self.iterator)
        set_rng_state(self.state)
        self.loop.dataloader_iterator = self.iterator
        return next(self.iterator)


@HOOKS.register_module()
class RandomnessHook(Hook):
    """Share the seed over ranks and carry RNG states through checkpoints.

    See the module docstring. Runs after the other hooks of an iteration but
    before ``CheckpointHook`` (priority ``VERY_LOW``).
    """

    priority = 'LOW'

    def __init__(self) -> None:
        self._states: Optional[List[Optional[dict]]] = None
        self._pending: Optional[List[Optional[dict]]] = None

    # The shared seed --------------------------------------------------------
    def before_run(self, runner) -> None:
        """Publish rank 0's seed as ``shared_seed`` in the MessageHub."""
        seed = [runner.seed]
        broadcast_object_list(seed, src=0)
        runner.message_hub.update_info(SHARED_SEED_KEY, int(seed[0]))

    # Saving -----------------------------------------------------------------
    @staticmethod
    def _checkpoint_due(runner, by_epoch: bool) -> bool:
        """Whether ``CheckpointHook`` saves at the end of this iter/epoch."""
        for hook in runner.hooks:
            if isinstance(hook, CheckpointHook) and hook.by_epoch == by_epoch:
                if by_epoch:
                    return hook.every_n_epochs(
                        runner, hook.interval, hook.save_begin) or (
                            hook.save_last and hook.is_last_train_epoch(runner))
                return hook.every_n_train_iters(
                    runner, hook.interval, hook.save_begin) or (
                        hook.save_last and hook.is_last_train_iter(runner))
        return False

    def _gather_if_due(self, runner, by_epoch: bool) -> None:
        _, world_size = get_dist_info()
        if world_size > 1 and self._checkpoint_due(runner, by_epoch):
            self._states = all_gather_object(get_rng_state())

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch=None,
                         outputs=None) -> None:
        """Gather every rank's RNG state when a checkpoint follows."""
        self._gather_if_due(runner, by_epoch=False)

    def after_train_epoch(self, runner) -> None:
        """Gather every rank's RNG state when a checkpoint follows."""
        self._gather_if_due(runner, by_epoch=True)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Put the RNG states (one per rank) into the checkpoint (rank 0)."""
        _, world_size = get_dist_info()
        states = self._states
        if states is None or len(states) != world_size:
            states = [get_rng_state()] + [None] * (world_size - 1)
        checkpoint[CHECKPOINT_KEY] = states
        self._states = None

    # Restoring --------------------------------------------------------------
    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Keep the checkpoint's RNG states until training starts."""
        self._pending = checkpoint.get(CHECKPOINT_KEY)

    def before_train_epoch(self, runner) -> None:
        """Restore this rank's RNG state when resuming (see module doc)."""
        states, self._pending = self._pending, None
        if states is None or runner.iter == 0:  # no resume (or load_from)
            return
        rank, world_size = get_dist_info()
        if len(states) != world_size or states[rank] is None:
            runner.logger.warning(
                f'The checkpoint holds RNG states for {len(states)} '
                f'process(es), not for rank {rank} of {world_size}: the '
                'resumed run draws other random numbers than an unstopped '
                'run would.')
            return
        loop = runner.train_loop
        if hasattr(loop, 'dataloader_iterator') and runner.iter > 0:
            # IterBasedTrainLoop re-loads `runner.iter` batches next.
            loop.dataloader_iterator = _RestoreBeforeNewBatch(
                loop, runner.iter, states[rank])
        else:
            set_rng_state(states[rank])
