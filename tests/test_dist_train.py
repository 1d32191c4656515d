"""tools/dist_train.sh with 2 CPU processes (gloo): it trains, checkpoints and
resumes exactly, and its loss at step 1 (averaged over the processes by
SyncLossHook) equals that of 1 process with the same total batch."""
import math
import os
import os.path as osp
import socket
import subprocess
import sys

import torch

import noisemim  # noqa: F401  (allow-lists the checkpoint globals)
from test_resume import ENV, ROOT, DEMO, logged_losses, options, train

# Random crops and flips draw from each process's own RNG, so the 1- and
# 2-process runs see the same pixels only with a deterministic pipeline: the
# crop covers the whole image (centre crop of the short side) and no flip.
SAME_PIXELS = ('train_dataloader.dataset.pipeline.1.crop_ratio_range=(1.,1.)',
               'train_dataloader.dataset.pipeline.1.aspect_ratio_range=(1.,1.)',
               'train_dataloader.dataset.pipeline.2.prob=0.')


def free_port() -> int:
    """A TCP port that nothing listens on now."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def dist_train(work_dir: str, opts, *extra: str) -> None:
    """Run tools/dist_train.sh with 2 processes on a free port."""
    # dist_train.sh runs `python`: this interpreter's (the project venv's).
    path = osp.dirname(sys.executable) + os.pathsep + os.environ['PATH']
    env = dict(ENV, PORT=str(free_port()), PATH=path)
    cmd = ['bash', osp.join(ROOT, 'tools/dist_train.sh'), DEMO, '2',
           '--work-dir', work_dir, *extra, '--cfg-options', *opts]
    run = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-4000:]


def test_two_processes_checkpoint_resume_and_match_one(tmp_path):
    two, resumed, one = (str(tmp_path / n) for n in ('two', 'resumed', 'one'))
    dist_train(two, options(2, 1, 4, *SAME_PIXELS))
    checkpoint = torch.load(osp.join(two, 'iter_1.pth'))
    assert len(checkpoint['rng_states']) == 2
    assert all(state is not None for state in checkpoint['rng_states'])

    dist_train(resumed, options(2, 1, 4, *SAME_PIXELS), '--resume',
               osp.join(two, 'iter_1.pth'))
    train(one, options(1, 1, 8, *SAME_PIXELS))

    two_losses, one_losses = logged_losses(two), logged_losses(one)
    assert logged_losses(resumed)[2] == two_losses[2]
    assert osp.exists(osp.join(resumed, 'iter_2.pth'))
    for key, value in one_losses[1].items():
        assert math.isclose(two_losses[1][key], value, rel_tol=1e-5), key


def test_a_finished_run_ends_its_process_group(monkeypatch):
    import torch.distributed as dist

    from noisemim.utils.launch import shutdown_distributed
    monkeypatch.setenv('MASTER_ADDR', '127.0.0.1')
    monkeypatch.setenv('MASTER_PORT', str(free_port()))
    dist.init_process_group('gloo', rank=0, world_size=1)
    shutdown_distributed()
    assert not dist.is_initialized()
    shutdown_distributed()  # nothing to end: a no-op


# A finished CPU run as tools/train.py ends it: the process group ended, then
# the process, with what was logged and printed written out.
FINISHED_CPU_RUN = """
import logging, sys
import torch.distributed as dist
from noisemim.utils.launch import shutdown_distributed
dist.init_process_group('gloo', rank=0, world_size=1)
log = logging.getLogger('run')
log.addHandler(logging.FileHandler(sys.argv[1]))
log.warning('last line of the log')
print('last line printed', end='')
shutdown_distributed(exit_process=True)
raise SystemExit(3)  # not reached
"""


def test_a_finished_cpu_run_exits_zero_with_its_logs(tmp_path):
    log = tmp_path / 'run.log'
    env = dict(ENV, MASTER_ADDR='127.0.0.1', MASTER_PORT=str(free_port()))
    run = subprocess.run([sys.executable, '-c', FINISHED_CPU_RUN, str(log)],
                         cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.endswith('last line printed')
    assert log.read_text() == 'last line of the log\n'
