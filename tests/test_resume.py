"""Exact resume through tools/train.py: a run stopped after k iterations and
resumed with --resume logs the same losses at k+1..n as the unstopped run."""
import glob
import json
import os
import os.path as osp
import subprocess
import sys
from typing import Dict, List, Sequence

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
