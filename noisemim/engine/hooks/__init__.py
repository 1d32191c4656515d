"""Hooks that keep long runs reliable (registered in mmengine's root ``HOOKS``,
so configs of any scope (mmpretrain, mmdet, mmseg) can name them)."""
from .bad_samples import BadSampleCountHook
from .checkpoint_atomic import AtomicCheckpointHook, CheckpointSaveError
from .checkpoint_fit import CheckpointFitHook, CheckpointMismatchError
from .finite_loss import FiniteLossHook, NonFiniteLossError
from .randomness import RandomnessHook
from .sync_loss import SyncLossHook

__all__ = [
    'AtomicCheckpointHook', 'BadSampleCountHook', 'CheckpointSaveError',
    'CheckpointFitHook', 'CheckpointMismatchError', 'FiniteLossHook',
    'NonFiniteLossError', 'RandomnessHook', 'SyncLossHook'
]
