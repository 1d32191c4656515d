"""Hooks that keep long runs reliable (registered in mmengine's root ``HOOKS``,
so configs of any scope (mmpretrain, mmdet, mmseg) can name them)."""
from .bad_samples import BadSampleCountHook
from .checkpoint_atomic import AtomicCheckpointHook, CheckpointSaveError
from .checkpoint_fit import CheckpointFitHook, CheckpointMismatchError
from .finite_loss import FiniteLossHook, NonFiniteLossError
from .randomness import RandomnessHook
from .sync_loss import SyncLossHook
# compile_blocks (noisemim/utils/compile.py), registered here for any config
from ...utils.compile import CompileBlocksHook

__all__ = [
    'AtomicCheckpointHook', 'BadSampleCountHook', 'CheckpointSaveError',
    'CompileBlocksHook',
    'CheckpointFitHook', 'CheckpointMismatchError', 'FiniteLossHook',
    'NonFiniteLossError', 'RandomnessHook', 'SyncLossHook'
]
