"""Randomness that survives ``--resume`` and does not depend on the rank.

Two things mmengine leaves undone:

1. **What keys each sample's corruption.** With
   ``randomness.diff_rank_seed=True`` the Runner's seed is ``seed + rank``,
   and that is what ``RuntimeInfoHook`` puts in the ``MessageHub``. NoiseMIM
   keys each sample's corruption by one seed for all ranks and the sample's
   position in the sampler's stream (``noisemim/models/corruption.py``). This
   hook publishes rank 0's seed as ``shared_seed`` and the number of samples
   loaded per iteration over all ranks as ``samples_per_iter``.
2. **RNG states in checkpoints.** A checkpoint carries no RNG state, so after
   ``--resume`` dropout, drop-path and the data augmentation would draw other
   numbers than the run that was never stopped. This hook stores the Python,
   numpy, torch and (this process's current device's) CUDA RNG states of
   *every* rank in each checkpoint (gathered just before ``CheckpointHook``
   saves, since only rank 0 writes) and restores each rank's own state on
   resume. ``IterBasedTrainLoop`` first re-loads the batches trained before
   the checkpoint (which draws from the RNGs), so the state is restored just
   before the first new batch is loaded; for epoch-based loops, before the
   next epoch starts.

Any device: mmengine's ``Runner.resume`` loads the checkpoint with
``map_location`` = the current device, so on a GPU the saved state tensors
arrive as CUDA tensors, which ``torch.set_rng_state`` and numpy refuse. They
are moved to the CPU before they are restored. Only the current CUDA device's
state is saved (not every visible device's), so a launcher that shows each
process one GPU, or all of them, resumes alike.
"""
import random
from typing import Any, List, Optional

import numpy as np
import torch
from mmengine.dist import (all_gather_object, broadcast_object_list,
                           get_dist_info)
from mmengine.hooks import CheckpointHook, Hook
from mmengine.registry import HOOKS

#: The ``MessageHub`` runtime-info key of the seed shared by all ranks.
SHARED_SEED_KEY = 'shared_seed'
#: The ``MessageHub`` runtime-info key of the samples per iteration (all ranks).
SAMPLES_PER_ITER_KEY = 'samples_per_iter'
#: The checkpoint key of the per-rank RNG states.
CHECKPOINT_KEY = 'rng_states'


def get_rng_state() -> dict:
    """The RNG states of this process, as plain values and CPU tensors.

    Returns:
        dict: ``python``, ``numpy``, ``torch`` and ``cuda`` (the current CUDA
        device's state, or None without CUDA) states, loadable with
        ``torch.load(weights_only=True)``.
    """
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return dict(
        python=random.getstate(),
        numpy=(name, torch.from_numpy(keys.astype(np.int64)), int(pos),
               int(has_gauss), float(cached)),
        torch=torch.get_rng_state(),
        cuda=torch.cuda.get_rng_state()
        if torch.cuda.is_available() else None)


def _byte_state(state: Any, what: str) -> torch.Tensor:
    """A saved generator state as the CPU ``uint8`` tensor torch wants."""
    if not isinstance(state, torch.Tensor):
        raise TypeError(f'The checkpoint\'s {what} RNG state must be a '
                        f'tensor, got {type(state).__name__}')
    return state.to(device='cpu', dtype=torch.uint8)


def _cuda_state(saved: Any) -> Optional[torch.Tensor]:
    """The current CUDA device's saved state.

    ``saved`` is one state (this format), or a list with one per visible
    device (checkpoints written before), read at the current device's index.
    """
    if isinstance(saved, (list, tuple)):
        index = torch.cuda.current_device()
        saved = saved[index] if index < len(saved) else None
    return None if saved is None else _byte_state(saved, 'CUDA')


def set_rng_state(state: dict) -> None:
    """Restore the states returned by :func:`get_rng_state`, from any device.

    Args:
        state (dict): A state from :func:`get_rng_state`; its tensors may sit
            on any device (e.g. CUDA, after ``Runner.resume``'s
            ``map_location``).
    """
    version, internal, gauss = state['python']
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state['numpy']
    keys = keys.cpu().numpy() if isinstance(
        keys, torch.Tensor) else np.asarray(keys)
    np.random.set_state((name, keys.astype(np.uint32), int(pos),
                         int(has_gauss), float(cached)))
    torch.set_rng_state(_byte_state(state['torch'], 'torch'))
    saved = state.get('cuda')
    if saved is not None and torch.cuda.is_available():
        cuda = _cuda_state(saved)
        if cuda is not None:
            torch.cuda.set_rng_state(cuda)


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

    def before_train(self, runner) -> None:
        """Publish the samples loaded per iteration over all ranks as
        ``samples_per_iter`` in the MessageHub."""
        _, world_size = get_dist_info()
        loader = getattr(runner.train_loop, 'dataloader', None)
        batch_size = getattr(loader, 'batch_size', None)
        if batch_size:  # None with a custom batch_sampler: the actual batch
            runner.message_hub.update_info(SAMPLES_PER_ITER_KEY,
                                           world_size * int(batch_size))

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
