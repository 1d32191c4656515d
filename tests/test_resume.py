"""Exact resume through tools/train.py: a run stopped after k iterations and
resumed with --resume logs the same losses at k+1..n as the unstopped run;
also when the checkpoint's RNG states arrive on another device (a GPU)."""
import glob
import json
import os
import os.path as osp
import random
import subprocess
import sys
from typing import Dict, List, Sequence

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner
from torch.utils._pytree import tree_map

import noisemim  # noqa: F401  (registers the modules)
from noisemim.engine.hooks.randomness import get_rng_state, set_rng_state

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEMO = osp.join(ROOT, 'configs/pretrain/noisemim_vit-tiny_demo.py')
# One BLAS thread per process: on a busy 2-core machine more threads spin.
ENV = dict(os.environ, OMP_NUM_THREADS='1')


def train(work_dir: str, options: Sequence[str], *extra: str,
          check: bool = True) -> subprocess.CompletedProcess:
    """Run tools/train.py on the tiny demo config.

    Args:
        work_dir (str): The run's work dir.
        options (Sequence[str]): ``--cfg-options`` key=value pairs.
        *extra (str): More train.py arguments (e.g. ``--resume``).
        check (bool): Raise if the run fails (with its stderr).

    Returns:
        subprocess.CompletedProcess: The finished run.
    """
    cmd = [
        sys.executable, osp.join(ROOT, 'tools/train.py'), DEMO, '--work-dir',
        work_dir, *extra, '--cfg-options', *options
    ]
    run = subprocess.run(
        cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    if check and run.returncode != 0:
        raise AssertionError(run.stderr[-4000:])
    return run


def logged_losses(work_dir: str) -> Dict[int, Dict[str, float]]:
    """The loss terms that mmengine logged, by iteration (1-based).

    Args:
        work_dir (str): A run's work dir (logger interval 1).

    Returns:
        Dict[int, Dict[str, float]]: ``{iter: {'loss': ..., 'loss_mim': ...}}``.
    """
    found = {}
    for path in glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')):
        with open(path) as f:
            for line in f:
                record = json.loads(line)
                if 'loss' in record:
                    found[record['iter']] = {
                        k: v
                        for k, v in record.items() if k.startswith('loss')
                    }
    return found


def options(iters: int, checkpoint_every: int, batch: int,
            *more: str) -> List[str]:
    """``--cfg-options`` for a short demo run logging every iteration."""
    return [
        f'train_cfg.max_iters={iters}',
        f'default_hooks.checkpoint.interval={checkpoint_every}',
        'default_hooks.logger.interval=1', 'log_processor.window_size=1',
        f'train_dataloader.batch_size={batch}', *more
    ]


def test_resume_gives_the_losses_of_the_unstopped_run(tmp_path):
    # Random crops and flips (numpy RNG), drop path (torch RNG), the mask and
    # noise (seed + iteration), AdamW moments and the lr schedule all matter.
    opts = options(4, 2, 8, 'model.backbone.drop_path_rate=0.2')
    full, resumed = str(tmp_path / 'full'), str(tmp_path / 'resumed')
    train(full, opts)
    run = train(resumed, opts, '--resume', osp.join(full, 'iter_2.pth'))

    assert 'resumed epoch: 0, iter: 2' in run.stdout + run.stderr
    expected, got = logged_losses(full), logged_losses(resumed)
    assert sorted(expected) == [1, 2, 3, 4] and sorted(got) == [3, 4]
    for step in (3, 4):
        assert got[step] == expected[step], (step, got[step], expected[step])
    # The steps differ from each other, so equality is not a coincidence.
    assert expected[3] != expected[4]
    assert osp.exists(osp.join(resumed, 'iter_4.pth'))


# Resume on any device ---------------------------------------------------------
class OnAnotherDevice(torch.Tensor):
    """A tensor that says it sits on ``cuda:0``, as the RNG states of a
    checkpoint do after ``Runner.resume`` loads it with
    ``map_location='cuda:0'`` on a GPU.

    torch's own checks see a CUDA tensor: ``torch.set_rng_state`` rejects it
    with the ``TypeError`` a real CUDA tensor gets, and ``.numpy()`` fails.
    The data (a CPU tensor inside) comes back only through a copy to the CPU
    (``.cpu()``, ``.to('cpu')``), as from a real GPU.
    """

    @staticmethod
    def __new__(cls, data: torch.Tensor):
        wrapper = torch.Tensor._make_wrapper_subclass(
            cls, data.shape, dtype=data.dtype, device=torch.device('cuda', 0),
            strides=data.stride(), requires_grad=False)
        wrapper.inner = data
        return wrapper

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if (func is torch.ops.aten._to_copy.default
                and kwargs.get('device') == torch.device('cpu')):
            options = {k: v for k, v in kwargs.items() if k == 'dtype'}
            return args[0].inner.to(**options).clone()
        raise RuntimeError(f'{func} on a tensor of another device')


def to_another_device(state):
    """Every tensor in ``state`` (nested lists/tuples/dicts) moved away."""
    return tree_map(
        lambda x: OnAnotherDevice(x) if isinstance(x, torch.Tensor) else x,
        state)


def draws():
    return (random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist())


def test_rng_states_on_another_device_restore_the_same_streams():
    state = get_rng_state()
    expected = draws()
    moved = to_another_device(state)
    assert moved['torch'].device.type == 'cuda'
    # The failure mode this guards against: torch and numpy refuse the state.
    with pytest.raises(TypeError, match='ByteTensor'):
        torch.set_rng_state(moved['torch'])
    with pytest.raises(Exception):
        moved['numpy'][1].numpy()

    draws()  # move the streams on
    set_rng_state(moved)
    assert draws() == expected
    # A checkpoint from before (one CUDA state per visible device) loads too.
    set_rng_state(dict(moved, cuda=[]))
    assert draws() == expected


class MoveRngStatesToAnotherDevice(Hook):
    """Does to a loaded checkpoint's RNG states what ``map_location='cuda'``
    does on a GPU (runs before ``RandomnessHook``, whose priority is LOW)."""

    priority = 'NORMAL'

    def __init__(self):
        self.moved = 0

    def after_load_checkpoint(self, runner, checkpoint):
        checkpoint['rng_states'] = to_another_device(checkpoint['rng_states'])
        self.moved += 1


def demo_runner(work_dir: str, iters: int, resume_from: str = None) -> Runner:
    """A Runner of the demo config (in this process)."""
    cfg = Config.fromfile(DEMO)
    cfg.work_dir = work_dir
    cfg.train_cfg.max_iters = iters
    cfg.default_hooks.checkpoint.interval = 2
    cfg.default_hooks.logger.interval = 1
    cfg.log_processor.window_size = 1
    cfg.train_dataloader.batch_size = 4
    cfg.model.backbone.drop_path_rate = 0.2
    cfg.experiment_name = osp.basename(work_dir)
    if resume_from:
        cfg.resume, cfg.load_from = True, resume_from
    return Runner.from_cfg(cfg)


def test_resume_with_rng_states_on_another_device_is_exact(tmp_path):
    full, resumed = str(tmp_path / 'full'), str(tmp_path / 'resumed')
    demo_runner(full, 4).train()
    runner = demo_runner(resumed, 4, osp.join(full, 'iter_2.pth'))
    mover = MoveRngStatesToAnotherDevice()
    runner.register_hook(mover)
    runner.train()

    assert mover.moved == 1
    expected, got = logged_losses(full), logged_losses(resumed)
    assert sorted(got) == [3, 4]
    for step in (3, 4):
        assert got[step] == expected[step], (step, got[step], expected[step])
