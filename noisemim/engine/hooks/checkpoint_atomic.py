"""Checkpoints that survive a crash at any moment, and resume that skips a
broken one.

mmengine 0.10.7's ``CheckpointHook`` writes ``iter_N.pth`` in place (the
Runner pickles it to memory, then ``LocalBackend.put`` opens the final name and
writes), deletes the oldest checkpoint (``max_keep_ckpts``) *before* saving
the new one, and rewrites ``last_checkpoint`` in place. A crash in between
leaves a cut-short newest checkpoint, fewer complete ones than asked for, or
an empty ``last_checkpoint``, and ``--resume`` then stops on torch's zip error.

:class:`AtomicCheckpointHook` keeps every option of ``CheckpointHook`` and
changes the order: the checkpoint goes to a hidden temporary file in the same
folder, is fsynced and renamed over its final name; ``last_checkpoint`` is
replaced the same way, after that; only then are expired checkpoints deleted.
A failed save (a full disk, any ``OSError``) stops the run with
:class:`CheckpointSaveError`, naming the file and the error, and leaves the
previous checkpoint and ``last_checkpoint`` as they were.

Before the Runner resumes, the hook picks the checkpoint: with ``resume=True``
and no path, the newest one that loads (see
:func:`noisemim.utils.checkpoint.find_resume_checkpoint`); with a path, that
one or an error naming the nearest complete one.

``configs/_base_/default_runtime.py`` uses it, and ``tools/train.py`` puts it
in place of the stock ``CheckpointHook`` of any config (mmdet, mmseg, ...),
see :func:`use_atomic_checkpoints`.
"""
import os
import os.path as osp
from typing import Optional

from mmengine.config import Config
from mmengine.dist import is_main_process
from mmengine.fileio import LocalBackend
from mmengine.hooks import CheckpointHook
from mmengine.registry import HOOKS

from noisemim.utils.checkpoint import (TEMP_NAME, atomic_write_text,
                                       check_resume_checkpoint, commit_file,
                                       find_resume_checkpoint, remove_quietly,
                                       temp_path)

#: Config ``type`` values that mean mmengine's stock checkpoint hook.
STOCK_CHECKPOINT_HOOKS = ('CheckpointHook', 'mmengine.CheckpointHook')


class CheckpointSaveError(RuntimeError):
    """A checkpoint could not be written; the previous one is untouched."""


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """``CheckpointHook`` with atomic writes and a resume that falls back.

    Takes the arguments of mmengine's ``CheckpointHook``. Checkpoints on a
    local disk are written atomically; other storage backends (object stores,
    whose puts are whole already) are written as mmengine does.
    """

    def before_run(self, runner) -> None:
        """Choose the checkpoint to resume from before the Runner loads it.

        Args:
            runner (Runner): The runner.
        """
        super().before_run(runner)
        if not getattr(runner, '_resume', False) or getattr(
                runner, '_has_loaded', False):
            return
        tmpls = (self.filename_tmpl, 'iter_{}.pth', 'epoch_{}.pth')
        if runner._load_from is None:
            path = find_resume_checkpoint(
                runner.work_dir, [self._folder(runner)], tmpls, runner.logger)
            if path is not None:
                runner.logger.info(f'Resuming from {path}.')
                runner._load_from = path
        else:
            check_resume_checkpoint(runner._load_from, runner.work_dir, tmpls)

    def before_train(self, runner) -> None:
        """Set up as ``CheckpointHook`` does; drop temporary files that a
        killed save left behind.

        Args:
            runner (Runner): The runner.
        """
        super().before_train(runner)
        if not (self._local and is_main_process()
                and osp.isdir(self.out_dir)):
            return
        for name in sorted(os.listdir(self.out_dir)):
            if TEMP_NAME.match(name):
                runner.logger.warning(
                    f'Removing {osp.join(self.out_dir, name)}: an unfinished '
                    'checkpoint left by an interrupted save.')
                remove_quietly(osp.join(self.out_dir, name))

    @property
    def _local(self) -> bool:
        """Whether checkpoints go to a local disk (atomic writes apply)."""
        backend = getattr(self, 'file_backend', None)
        backend = getattr(backend, 'client', backend)  # FileClient wraps one
        return isinstance(backend, LocalBackend) or type(backend).__name__ in (
            'HardDiskBackend', 'LocalBackend')

    def _folder(self, runner) -> str:
        """Where checkpoints go, as ``CheckpointHook.before_train`` sets it."""
        if self.out_dir is None or self.out_dir == runner.work_dir:
            return runner.work_dir
        if getattr(self, 'file_backend', None) is not None:
            return self.out_dir  # already joined by before_train
        return osp.join(self.out_dir,
                        osp.basename(runner.work_dir.rstrip(osp.sep)))

    def before_commit(self, tmp: str, path: str) -> None:
        """Called between writing ``tmp`` and renaming it over ``path``.

        Nothing happens here; tests override it to stop a run in that window.

        Args:
            tmp (str): The complete, fsynced temporary checkpoint.
            path (str): Its final name.
        """

    def save_atomically(self, runner, filename: str, **kwargs) -> None:
        """``runner.save_checkpoint`` to a temporary file, then rename it.

        Args:
            runner (Runner): The runner.
            filename (str): The checkpoint's name in ``self.out_dir``.
            **kwargs: ``save_optimizer``, ``meta``, ... for
                ``Runner.save_checkpoint``.

        Raises:
            CheckpointSaveError: Writing failed (``OSError``, e.g. a full
                disk); the temporary file is removed, nothing else changed.
        """
        if isinstance(runner, _AtomicSaves):
            runner = runner._runner
        path = osp.join(self.out_dir, filename)
        tmp = temp_path(path)
        try:
            runner.save_checkpoint(
                self.out_dir,
                osp.relpath(tmp, self.out_dir),
                self.file_client_args,
                backend_args=self.backend_args,
                **kwargs)
            if is_main_process():  # Runner.save_checkpoint is master-only
                self.before_commit(tmp, path)
                commit_file(tmp, path)
        except OSError as error:
            remove_quietly(tmp)
            previous = self._previous(runner)
            raise CheckpointSaveError(
                f'Could not save the checkpoint {path!r}: '
                f'{type(error).__name__}: {error}. Training stopped. The '
                f'previous checkpoint ({previous or "none yet"}) and '
                f'{osp.join(runner.work_dir, "last_checkpoint")} are '
                'untouched: free space (or fix the folder) and continue '
                'with --resume.') from error

    @staticmethod
    def _previous(runner) -> Optional[str]:
        try:
            with open(osp.join(runner.work_dir, 'last_checkpoint')) as f:
                return f.read().strip() or None
        except OSError:
            return None

    def _save_checkpoint_with_step(self, runner, step, meta) -> None:
        """Save ``step``'s checkpoint, then ``last_checkpoint``, then delete
        the checkpoints past ``max_keep_ckpts``, in that order.

        The bookkeeping (``keep_ckpt_ids`` and ``last_ckpt`` in the message
        hub, stored in the checkpoint itself) is as in ``CheckpointHook``.
        """
        if not self._local:
            return super()._save_checkpoint_with_step(runner, step, meta)
        expired = []
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids and
                                            self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                expired.append(self.keep_ckpt_ids.popleft())
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids',
                                           list(self.keep_ckpt_ids))
        filename = self.filename_tmpl.format(step)
        self.last_ckpt = osp.join(self.out_dir, filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)

        self.save_atomically(
            runner,
            filename,
            save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler,
            meta=meta,
            by_epoch=self.by_epoch,
            **self.args)
        if not is_main_process():
            return
        record = osp.join(runner.work_dir, 'last_checkpoint')
        try:
            atomic_write_text(record, self.last_ckpt)
        except OSError as error:
            raise CheckpointSaveError(
                f'Saved {self.last_ckpt!r} but could not record it in '
                f'{record!r}: {type(error).__name__}: {error}. Training '
                f'stopped; {record!r} still names the previous checkpoint.'
            ) from error
        for old in expired:
            old_path = osp.join(self.out_dir, self.filename_tmpl.format(old))
            if old_path != self.last_ckpt:
                remove_quietly(old_path)

    def _save_best_checkpoint(self, runner, metrics) -> None:
        """``CheckpointHook``'s best-checkpoint logic with atomic writes."""
        if not self._local:
            return super()._save_best_checkpoint(runner, metrics)
        super()._save_best_checkpoint(_AtomicSaves(runner, self), metrics)


class _AtomicSaves:
    """The runner as ``CheckpointHook._save_best_checkpoint`` sees it: every
    attribute is the runner's, ``save_checkpoint`` writes atomically."""

    def __init__(self, runner, hook: AtomicCheckpointHook) -> None:
        self._runner, self._hook = runner, hook

    def __getattr__(self, name: str):
        return getattr(self._runner, name)

    def save_checkpoint(self, out_dir: str, filename: str, *args,
                        **kwargs) -> None:
        kwargs.pop('file_client_args', None)
        kwargs.pop('backend_args', None)
        self._hook.save_atomically(self._runner, filename, **kwargs)


def use_atomic_checkpoints(cfg: Config) -> None:
    """Make a config's checkpoint hook :class:`AtomicCheckpointHook`.

    A stock ``CheckpointHook`` (mmpretrain, mmdet, mmseg configs) is replaced
    with the same arguments; a config without one gets mmengine's default
    (``interval=1``) in the atomic version; ``checkpoint=None`` (no
    checkpoints) and other hook types are left alone.

    Args:
        cfg (Config): The run's config (changed in place).
    """
    if cfg.get('default_hooks') is None:
        cfg.default_hooks = {}
    hooks = cfg.default_hooks  # (assigning a dict to a Config copies it)
    if 'checkpoint' not in hooks:
        hooks['checkpoint'] = dict(type='AtomicCheckpointHook', interval=1)
        return
    hook = hooks['checkpoint']
    if isinstance(hook, dict) and (hook.get('type') in STOCK_CHECKPOINT_HOOKS
                                   or hook.get('type') is CheckpointHook):
        hook['type'] = 'AtomicCheckpointHook'
