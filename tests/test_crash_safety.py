"""Crash-safe checkpoints through tools/train.py on the tiny demo config.

* A run SIGKILLed between writing a checkpoint and renaming it resumes with
  ``--resume`` and ends with the weights of an uninterrupted run; with
  ``max_keep_ckpts=1`` the older checkpoint is still there.
* A newest checkpoint cut short (after a kill with ``max_keep_ckpts=2``) is
  skipped by ``--resume`` with a warning naming both files; the run again
  ends bit-identical.
* An explicit ``--resume PATH`` that is broken names the path and the
  nearest complete checkpoint; none loadable names every file.
* A failed save (a simulated full disk) stops the run naming the path and
  the error, leaves the previous checkpoint and ``last_checkpoint`` intact,
  and the run then resumes.
"""
import errno
import glob
import importlib.util
import os
import os.path as osp
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from mmengine.config import Config
from mmengine.fileio import LocalBackend
from mmengine.registry import HOOKS, DefaultScope

import noisemim  # noqa: F401
from noisemim.engine.hooks import AtomicCheckpointHook, CheckpointSaveError
from noisemim.engine.hooks.checkpoint_atomic import use_atomic_checkpoints
from noisemim.utils.checkpoint import (TEMP_NAME, BrokenCheckpointError,
                                       UnsafeCheckpointError,
                                       check_resume_checkpoint,
                                       checkpoint_problem,
                                       find_resume_checkpoint,
                                       read_last_checkpoint)

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEMO = osp.join(ROOT, 'configs/pretrain/noisemim_vit-tiny_demo.py')
# One BLAS thread per process (a busy 2-core machine); tests/ holds the
# pausing hook that the training process imports.
ENV = dict(os.environ, OMP_NUM_THREADS='1',
           PYTHONPATH=os.pathsep.join(
               [osp.join(ROOT, 'tests'),
                os.environ.get('PYTHONPATH', '')]))


def options(keep: int, *more: str) -> list:
    """Six iterations, a checkpoint every two, drop path on (torch RNG)."""
    return [
        'train_cfg.max_iters=6', 'default_hooks.checkpoint.interval=2',
        f'default_hooks.checkpoint.max_keep_ckpts={keep}',
        'train_dataloader.batch_size=4', 'model.backbone.drop_path_rate=0.1',
        *more
    ]


def command(work_dir: str, opts: list, *extra: str, config=DEMO) -> list:
    return [
        sys.executable, osp.join(ROOT, 'tools/train.py'),
        str(config), '--work-dir',
        str(work_dir), *extra, '--cfg-options', *opts
    ]


def train(work_dir: str, opts: list, *extra: str) -> str:
    """Run tools/train.py to the end; return its output."""
    run = subprocess.run(
        command(work_dir, opts, *extra), cwd=ROOT, env=ENV,
        capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-4000:]
    return run.stdout + run.stderr


def weights(path: str) -> dict:
    return torch.load(path, map_location='cpu')['state_dict']


def assert_same_weights(got: str, expected: str) -> None:
    a, b = weights(got), weights(expected)
    assert sorted(a) == sorted(b)
    for key in a:
        assert torch.equal(a[key], b[key]), key


def temp_files(folder: str) -> list:
    return [n for n in os.listdir(folder) if TEMP_NAME.match(n)]


@pytest.fixture(scope='module')
def reference(tmp_path_factory) -> str:
    """An uninterrupted run keeping every checkpoint (iter 2, 4 and 6)."""
    work_dir = str(tmp_path_factory.mktemp('reference'))
    train(work_dir, options(-1))
    return work_dir


def kill_while_saving(tmp_path, work_dir: str, keep: int, step: int) -> None:
    """Run the demo and SIGKILL it once checkpoint ``step`` is written under
    its temporary name, before the rename."""
    flag = str(tmp_path / 'paused')
    config = tmp_path / 'pausing.py'  # the demo, pausing before a rename
    config.write_text(
        f'_base_ = [{DEMO!r}]\n'
        "custom_imports = dict(imports=['noisemim', 'crash_hooks'])\n"
        "default_hooks = dict(checkpoint=dict(type='PausingCheckpointHook', "
        f'pause_at={step}, signal={flag!r}))\n')
    with open(tmp_path / 'crash.log', 'w') as log:
        process = subprocess.Popen(
            command(work_dir, options(keep), config=config), cwd=ROOT,
            env=ENV, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + 300
        while not osp.exists(flag) and process.poll() is None:
            assert time.time() < deadline, f'the run never reached {step}'
            time.sleep(0.2)
        assert process.poll() is None, (tmp_path / 'crash.log').read_text()
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    with open(flag) as f:  # the complete checkpoint under its temporary name
        assert osp.basename(f.read()) in temp_files(work_dir)
    assert not osp.exists(osp.join(work_dir, f'iter_{step}.pth'))


def test_killed_while_saving_resumes_to_the_uninterrupted_weights(
        tmp_path, reference):
    work_dir = str(tmp_path / 'run')
    kill_while_saving(tmp_path, work_dir, keep=1, step=4)
    iter_2 = osp.join(work_dir, 'iter_2.pth')
    assert checkpoint_problem(iter_2) is None  # not deleted before iter_4
    assert read_last_checkpoint(work_dir) == iter_2

    output = train(work_dir, options(1), '--resume')
    assert f'Resuming from {iter_2}' in output
    assert 'an unfinished checkpoint left by an interrupted save' in output
    assert temp_files(work_dir) == []
    assert_same_weights(
        osp.join(work_dir, 'iter_6.pth'), osp.join(reference, 'iter_6.pth'))
    start, end = (weights(osp.join(reference, f'iter_{n}.pth'))
                  for n in (2, 6))  # training moved them: not a coincidence
    assert not torch.equal(start['backbone.ln1.weight'],
                           end['backbone.ln1.weight'])
    assert glob.glob(osp.join(work_dir, 'iter_*.pth')) == [
        osp.join(work_dir, 'iter_6.pth')]


def test_cut_short_newest_checkpoint_falls_back_and_ends_identical(
        tmp_path, reference):
    # Killed while saving iter_6 (max_keep_ckpts=2: iter_2 and iter_4 kept);
    # then iter_4 is cut short, as an in-place write killed midway leaves it.
    work_dir = str(tmp_path / 'run')
    kill_while_saving(tmp_path, work_dir, keep=2, step=6)
    iter_2, newest = (osp.join(work_dir, f'iter_{n}.pth') for n in (2, 4))
    assert checkpoint_problem(iter_2) is None
    assert read_last_checkpoint(work_dir) == newest
    with open(newest, 'r+b') as f:
        f.truncate(osp.getsize(newest) // 2)

    output = train(work_dir, options(2), '--resume')
    assert (f"Cannot resume from '{newest}': incomplete" in output
            and f"Falling back to the newest complete checkpoint '{iter_2}'"
            in output), output[-3000:]
    assert_same_weights(
        osp.join(work_dir, 'iter_6.pth'), osp.join(reference, 'iter_6.pth'))
    assert checkpoint_problem(newest) is None  # rewritten, complete
    assert read_last_checkpoint(work_dir) == osp.join(work_dir, 'iter_6.pth')
    assert sorted(glob.glob(osp.join(work_dir, 'iter_*.pth'))) == [
        newest, osp.join(work_dir, 'iter_6.pth')]


def broken_copies(reference: str, folder) -> dict:
    """iter_2 (complete), iter_4 (cut short), iter_6 (garbage bytes)."""
    folder = str(folder)
    paths = {n: osp.join(folder, f'iter_{n}.pth') for n in (2, 4, 6)}
    shutil.copy(osp.join(reference, 'iter_2.pth'), paths[2])
    data = open(osp.join(reference, 'iter_4.pth'), 'rb').read()
    open(paths[4], 'wb').write(data[:len(data) // 3])
    open(paths[6], 'wb').write(os.urandom(4096))
    return paths


def test_resume_choice_and_its_messages(tmp_path, reference):
    paths = broken_copies(reference, tmp_path)
    assert checkpoint_problem(paths[2]) is None
    assert 'incomplete' in checkpoint_problem(paths[4])
    assert 'incomplete' in checkpoint_problem(paths[6])
    open(tmp_path / 'empty.pth', 'wb').close()
    assert 'empty' in checkpoint_problem(str(tmp_path / 'empty.pth'))
    # no last_checkpoint: the newest that loads
    assert find_resume_checkpoint(str(tmp_path)) == paths[2]

    with pytest.raises(BrokenCheckpointError) as error:
        check_resume_checkpoint(paths[6], str(tmp_path))
    assert f"Cannot resume from '{paths[6]}'" in str(error.value)
    assert f"nearest complete checkpoint is '{paths[2]}'" in str(error.value)

    os.remove(paths[2])
    with pytest.raises(BrokenCheckpointError) as error:
        find_resume_checkpoint(str(tmp_path))
    for path in (paths[4], paths[6]):
        assert path in str(error.value)
    assert 'none of its checkpoints loads' in str(error.value)
    with pytest.raises(BrokenCheckpointError, match='No complete checkpoint'):
        check_resume_checkpoint(paths[4], str(tmp_path))


def test_unsafe_newest_checkpoint_is_refused_not_skipped(tmp_path, reference):
    shutil.copy(osp.join(reference, 'iter_2.pth'), tmp_path)
    state = torch.load(osp.join(reference, 'iter_4.pth'))
    state['meta']['note'] = os.system  # a global that is not allow-listed
    torch.save(state, str(tmp_path / 'iter_4.pth'))
    with pytest.raises(UnsafeCheckpointError, match='posix.system'):
        find_resume_checkpoint(str(tmp_path))


def train_in_process(work_dir, *args: str) -> None:
    """tools/train.py's ``main()`` in this process (no start-up cost)."""
    spec = importlib.util.spec_from_file_location(
        'noisemim_train_tool', osp.join(ROOT, 'tools/train.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    old, sys.argv = sys.argv, [
        'train.py', DEMO, '--work-dir',
        str(work_dir), *args, '--cfg-options', 'train_cfg.max_iters=4',
        'default_hooks.checkpoint.interval=2',
        'default_hooks.checkpoint.max_keep_ckpts=1',
        'train_dataloader.batch_size=2',
        f'experiment_name=t{time.time_ns()}'
    ]
    try:
        tool.main()
    finally:
        sys.argv = old


def test_explicit_broken_resume_names_the_nearest_complete(tmp_path,
                                                           reference):
    paths = broken_copies(reference, tmp_path)
    with pytest.raises(BrokenCheckpointError) as error:
        train_in_process(tmp_path / 'wd', '--resume', paths[4])
    assert f"Cannot resume from '{paths[4]}': incomplete" in str(error.value)
    assert f'--resume {paths[2]}' in str(error.value)


def test_full_disk_stops_naming_the_path_and_keeps_the_last_good(
        tmp_path, monkeypatch):
    work_dir = str(tmp_path / 'wd')
    put = LocalBackend.put

    def full_disk(self, obj: bytes, filepath) -> None:
        if 'iter_4' not in osp.basename(str(filepath)):
            return put(self, obj, filepath)
        with open(filepath, 'wb') as f:  # part of it fits, then ENOSPC
            f.write(obj[:len(obj) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(filepath))

    monkeypatch.setattr(LocalBackend, 'put', full_disk)
    with pytest.raises(CheckpointSaveError) as error:
        train_in_process(work_dir)
    iter_2, iter_4 = (osp.join(work_dir, f'iter_{n}.pth') for n in (2, 4))
    message = str(error.value)
    assert f"Could not save the checkpoint '{iter_4}'" in message
    assert 'No space left on device' in message
    assert iter_2 in message and 'untouched' in message
    assert checkpoint_problem(iter_2) is None  # max_keep_ckpts=1 kept it
    assert read_last_checkpoint(work_dir) == iter_2
    assert not osp.exists(iter_4) and temp_files(work_dir) == []

    monkeypatch.setattr(LocalBackend, 'put', put)  # space freed
    train_in_process(work_dir, '--resume')
    assert torch.load(iter_4)['meta']['iter'] == 4
    assert not osp.exists(iter_2)  # expired only once iter_4 was complete


@pytest.mark.parametrize('config', [
    'configs/pretrain/noisemim_vit-tiny_demo.py',
    'configs/classification/noisemim_vit-b-p16_8xb64-coslr-100e_cub.py',
    'configs/detection/mask-rcnn_noisemim-vit-b_simplefpn_lsj-25e_coco.py',
    'configs/segmentation/upernet_noisemim-vit-b_8xb2-amp-160k_ade20k-512x512.py',
])
def test_every_tool_config_gets_the_atomic_hook(config):
    cfg = Config.fromfile(osp.join(ROOT, config), import_custom_modules=False)
    before = dict(cfg.default_hooks.checkpoint)
    use_atomic_checkpoints(cfg)
    after = dict(cfg.default_hooks.checkpoint)
    assert after.pop('type') == 'AtomicCheckpointHook'
    before.pop('type')
    assert after == before
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        hook = HOOKS.build(cfg.default_hooks.checkpoint)
    assert isinstance(hook, AtomicCheckpointHook)


def test_configs_without_a_checkpoint_hook():
    cfg = Config(dict(default_hooks=dict(logger=dict(type='LoggerHook'))))
    use_atomic_checkpoints(cfg)  # mmengine would add the stock one
    assert cfg.default_hooks.checkpoint == dict(
        type='AtomicCheckpointHook', interval=1)
    assert cfg.default_hooks.logger == dict(type='LoggerHook')
    cfg = Config(dict(default_hooks=dict(checkpoint=None)))
    use_atomic_checkpoints(cfg)  # no checkpoints asked for: none
    assert cfg.default_hooks.checkpoint is None


def test_best_checkpoints_are_written_atomically(tmp_path, monkeypatch):
    from mmengine.runner import Runner
    cfg = Config.fromfile(DEMO)
    cfg.work_dir, cfg.experiment_name = str(tmp_path), f't{time.time_ns()}'
    runner = Runner.from_cfg(cfg)
    hook = AtomicCheckpointHook(
        interval=1, by_epoch=False, save_best='loss', rule='less')
    hook.before_train(runner)
    hook._save_best_checkpoint(runner, {'loss': 1.0})
    best = osp.join(str(tmp_path), 'best_loss_iter_0.pth')
    assert checkpoint_problem(best) is None and temp_files(str(tmp_path)) == []
    assert runner.message_hub.get_info('best_ckpt') == best

    def full_disk(self, obj: bytes, filepath) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(filepath))

    monkeypatch.setattr(LocalBackend, 'put', full_disk)
    with pytest.raises(CheckpointSaveError, match='No space left on device'):
        hook._save_best_checkpoint(runner, {'loss': 0.5})
    assert temp_files(str(tmp_path)) == []


def test_remote_last_checkpoint_is_left_to_the_loader(tmp_path):
    (tmp_path / 'last_checkpoint').write_text('s3://bucket/run/iter_8.pth')
    assert find_resume_checkpoint(str(tmp_path)) == 's3://bucket/run/iter_8.pth'
