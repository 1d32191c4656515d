"""Test-only hook for tests/test_crash_safety.py (imported by the training
process through ``custom_imports``, with ``tests/`` on ``PYTHONPATH``)."""
import os
import os.path as osp
import time

from mmengine.registry import HOOKS

from noisemim.engine.hooks import AtomicCheckpointHook


@HOOKS.register_module()
class PausingCheckpointHook(AtomicCheckpointHook):
    """Stop between writing a checkpoint and renaming it, and say so.

    Args:
        pause_at (int): The step whose checkpoint pauses.
        signal (str): A file written (with the temporary path) when paused.
        **kwargs: ``CheckpointHook``'s arguments.
    """

    def __init__(self, pause_at: int, signal: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.pause_at, self.signal = pause_at, signal

    def before_commit(self, tmp: str, path: str) -> None:
        if osp.basename(path) != self.filename_tmpl.format(self.pause_at):
            return
        with open(self.signal + '.part', 'w') as f:
            f.write(tmp)
        os.replace(self.signal + '.part', self.signal)
        time.sleep(600)  # the test kills the process here
