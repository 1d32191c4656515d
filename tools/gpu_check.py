"""``make gpu-check``: validate an install on a CUDA GPU in about five minutes.

Runs, each in its own process, and prints one table last:

1. **train**: a few bf16 training steps of the ViT-B pre-training config
   (``configs/pretrain/noisemim_vit-base-p16_8xb512-amp-coslr-400e_in1k.py``, 224 px) through ``tools/train.py``,
   on the photographs that ship with scikit-image (no download), ending with a
   checkpoint;
2. **resume**: ``tools/train.py --resume`` from that checkpoint on the GPU,
   for as many steps again (it must start where the first run stopped);
3. **benchmark**: ``tools/benchmark.py --device cuda --amp bf16``, NoiseMIM vs
   the SimMIM-style ViT vs MAE at ViT-B;
4. **batch sweep**: the largest per-GPU batch of the ViT-B config that fits
   (:mod:`noisemim.benchmark.batch_sweep`: doubling until out of memory).

Without a CUDA device it exits with status 2 and one line saying so.
``--device cpu`` runs the same steps on CPU with the tiny demo config (what the
tests do); ``--dry-run`` prints the commands and runs nothing.

Examples::

    make gpu-check
    python tools/gpu_check.py --batch-size 128 --iters 20
"""
import argparse
import glob
import importlib.util
import json
import os
import os.path as osp
import shlex
import subprocess
import sys
import time
from typing import Dict, List, Optional, Tuple

import torch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
STEPS = ('train', 'resume', 'benchmark', 'sweep')
GPU_CONFIG = 'configs/pretrain/noisemim_vit-base-p16_8xb512-amp-coslr-400e_in1k.py'
CPU_CONFIG = 'configs/pretrain/noisemim_vit-tiny_demo.py'

# Points a pre-training config at scikit-image's photographs for a few
# iterations with a constant learning rate; the model, image size, pipeline
# and optimizer stay the config's own.
DERIVED_CONFIG = """\
# Written by tools/gpu_check.py: {config} on scikit-image's photographs.
_base_ = [{config_path!r}]
train_dataloader = dict(
    batch_size={batch_size},
    num_workers={workers},
    persistent_workers={persistent},
    pin_memory={pin_memory},
    sampler=dict(_delete_=True, type='InfiniteSampler', shuffle=True),
    dataset=dict(
        _delete_=True,
        type='EmbeddedPhotos',
        repeat=16,
        pipeline={{{{_base_.train_pipeline}}}}))
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters={iters})
param_scheduler = [
    dict(type='ConstantLR', factor=1.0, by_epoch=False, begin=0)]
auto_scale_lr = dict(enable=False)
default_hooks = dict(
    logger=dict(interval=1),
    checkpoint=dict(by_epoch=False, interval={iters}, max_keep_ckpts=2))
log_processor = dict(by_epoch=False)
resume = False
{optim_wrapper}"""


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Validate an install on a CUDA GPU: train, resume, '
        'benchmark, batch sweep.')
    parser.add_argument('--work-dir', default='work_dirs/gpu_check')
    parser.add_argument('--config', help='pre-training config (default: '
                        f'{GPU_CONFIG}; with --device cpu, {CPU_CONFIG})')
    parser.add_argument('--batch-size', type=int,
                        help='per-GPU batch of train, resume and benchmark '
                        '(default: 64; CPU: 4)')
    parser.add_argument('--iters', type=int,
                        help='training steps of train and of resume '
                        '(default: 10; CPU: 2)')
    parser.add_argument('--workers', type=int,
                        help='data loader workers (default: min(8, CPUs); '
                        'CPU: 0)')
    parser.add_argument('--amp', choices=['bf16', 'fp16'],
                        help='mixed precision on the GPU (default: bf16 '
                        'where supported, else fp16)')
    parser.add_argument('--only', help='comma-separated steps to run, of '
                        f'{",".join(STEPS)} (resume needs train)')
    parser.add_argument('--device', choices=['cuda', 'cpu'], default='cuda',
                        help='cpu: run on CPU with the tiny demo config (the '
                        'tests of this tool)')
    parser.add_argument('--dry-run', action='store_true',
                        help='print the commands, run nothing')
    args = parser.parse_args(argv)
    steps = STEPS if args.only is None else tuple(
        s.strip() for s in args.only.split(',') if s.strip())
    unknown = [s for s in steps if s not in STEPS]
    if unknown or not steps:
        parser.error(f'--only takes steps of {",".join(STEPS)}, got '
                     f'{args.only!r}')
    if 'resume' in steps and 'train' not in steps:
        parser.error('--only: resume needs train (it resumes its checkpoint)')
    args.steps = steps
    for name in ('batch_size', 'iters'):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f'--{name.replace("_", "-")} must be >= 1, got '
                         f'{value}')
    return args


def environment(device: str) -> Dict[str, str]:
    """What the table's first row says about the install."""
    info = dict(torch=torch.__version__, cuda=str(torch.version.cuda))
    if device == 'cuda':
        index = torch.cuda.current_device()
        major, minor = torch.cuda.get_device_capability(index)
        memory = torch.cuda.get_device_properties(index).total_memory
        info.update(
            device=torch.cuda.get_device_name(index),
            capability=f'{major}.{minor}',
            memory=f'{memory / 2**30:.0f} GiB',
            gpus=str(torch.cuda.device_count()),
            bf16=str(torch.cuda.is_bf16_supported()))
    else:
        info['device'] = 'cpu (--device cpu)'
    for label, name in (('mmcv', 'mmcv'), ('mmcv compiled ops', 'mmcv._ext'),
                        ('mmdet', 'mmdet'), ('mmseg', 'mmseg')):
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        info[label] = 'yes' if found else 'no'
    return info


class Check:
    """The plan of a run: settings, commands and the derived config."""

    def __init__(self, args: argparse.Namespace, device: str) -> None:
        self.args = args
        self.device = device
        cpu = device == 'cpu'
        self.config = args.config or (CPU_CONFIG if cpu else GPU_CONFIG)
        self.batch_size = args.batch_size or (4 if cpu else 64)
        self.iters = args.iters or (2 if cpu else 10)
        self.workers = (args.workers if args.workers is not None else
                        0 if cpu else min(8, os.cpu_count() or 1))
        if cpu:
            self.amp = 'none'
        elif args.amp:
            self.amp = args.amp
        else:
            self.amp = 'bf16' if torch.cuda.is_bf16_supported() else 'fp16'
        self.work_dir = osp.abspath(args.work_dir)
        self.train_dir = osp.join(self.work_dir, 'train')
        self.derived = osp.join(self.work_dir, 'gpu_check_config.py')

    def derived_config(self) -> str:
        """The config that points ``self.config`` at the photographs."""
        optim_wrapper = ''
        if self.amp == 'bf16':  # the config's loss scale (none for bf16)
            optim_wrapper = ("optim_wrapper = dict(type='AmpOptimWrapper', "
                             "dtype='bfloat16')\n")
        elif self.amp == 'fp16':  # fp16 needs a dynamic loss scale
            optim_wrapper = ("optim_wrapper = dict(type='AmpOptimWrapper', "
                             "dtype='float16', loss_scale='dynamic')\n")
        return DERIVED_CONFIG.format(
            config=self.config,
            config_path=osp.join(ROOT, self.config),
            batch_size=self.batch_size,
            workers=self.workers,
            persistent=self.workers > 0,
            pin_memory=self.device == 'cuda',
            iters=self.iters,
            optim_wrapper=optim_wrapper)

    def commands(self) -> Dict[str, List[str]]:
        """The command of every step."""
        py = sys.executable
        train = [py, osp.join(ROOT, 'tools/train.py'), self.derived,
                 '--work-dir', self.train_dir]
        cpu = self.device == 'cpu'
        benchmark = [
            py, osp.join(ROOT, 'tools/benchmark.py'), '--config',
            osp.join(ROOT, self.config), '--device', self.device,
            '--batch-size', str(self.batch_size), '--json',
            osp.join(self.work_dir, 'benchmark.json')]
        sweep = [py, '-m', 'noisemim.benchmark.batch_sweep', '--config',
                 osp.join(ROOT, self.config), '--device', self.device,
                 '--amp', self.amp, '--json',
                 osp.join(self.work_dir, 'batch_sweep.json')]
        if cpu:
            benchmark += ['--warmup', '0', '--repeats', '1',
                          '--pipeline-images', '4',
                          '--compile-backend', 'none', '--mae-neck',
                          'decoder_embed_dim=32', 'decoder_depth=1',
                          'decoder_num_heads=2']
            sweep += ['--start', '2', '--max-batch', '4', '--bisect-steps',
                      '0', '--steps', '1']
        else:
            benchmark += ['--amp', self.amp, '--warmup', '2', '--repeats',
                          '5']
            sweep += ['--start', '64', '--max-batch', '2048',
                      '--bisect-steps', '2']
        return dict(
            train=train,
            resume=train + ['--resume', '--cfg-options',
                            f'train_cfg.max_iters={2 * self.iters}'],
            benchmark=benchmark,
            sweep=sweep)


def scalars(work_dir: str) -> List[List[dict]]:
    """The logged scalars of each run in ``work_dir``, oldest run first."""
    runs = []
    for path in sorted(glob.glob(osp.join(work_dir, '*', 'vis_data',
                                          'scalars.json'))):
        with open(path) as f:
            runs.append([json.loads(line) for line in f if line.strip()])
    return runs


def run_step(name: str, command: List[str], log_path: str,
             split_stdout: bool = False) -> Tuple[bool, float]:
    """Run one step's command, its output to ``log_path``.

    Args:
        name (str): The step.
        command (List[str]): Its command.
        log_path (str): Where its output goes.
        split_stdout (bool): Send stdout to ``log_path + '.out'`` and only
            stderr to ``log_path``.

    Returns:
        Tuple[bool, float]: Whether it exited with 0, and its seconds.
    """
    print(f'[gpu-check] {name}: {shlex.join(command)}', flush=True)
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(
        p for p in (ROOT, env.get('PYTHONPATH')) if p)
    start = time.perf_counter()
    with open(log_path, 'w') as log, open(
            log_path + '.out' if split_stdout else os.devnull, 'w') as out:
        code = subprocess.call(command, cwd=ROOT, env=env,
                               stdout=out if split_stdout else log,
                               stderr=log if split_stdout else
                               subprocess.STDOUT)
    seconds = time.perf_counter() - start
    if code != 0:
        with open(log_path) as f:
            tail = f.read()[-3000:]
        print(f'[gpu-check] {name} FAILED (exit {code}); the end of '
              f'{log_path}:\n{tail}', flush=True)
    return code == 0, seconds


def check_train(check: Check, runs: List[List[dict]], first: bool) -> str:
    """Details of the train (``first``) or resume step; raises if wrong."""
    if len(runs) < (1 if first else 2):
        raise RuntimeError('no logged scalars found')
    records = [r for r in runs[0 if first else -1] if 'loss' in r]
    if not records:
        raise RuntimeError('no loss was logged')
    iters = [r['iter'] for r in records]
    expected = (list(range(1, check.iters + 1)) if first else list(
        range(check.iters + 1, 2 * check.iters + 1)))
    if iters != expected:
        raise RuntimeError(f'logged iterations {iters}, expected {expected}')
    ckpt = osp.join(check.train_dir, f'iter_{iters[-1]}.pth')
    if not osp.isfile(ckpt):
        raise RuntimeError(f'no checkpoint {ckpt}')
    loss = [r['loss'] for r in records]
    size = osp.getsize(ckpt) / 2**20
    what = 'trained' if first else 'resumed at iteration ' + str(
        check.iters) + ', trained'
    return (f'{what} to iteration {iters[-1]}; loss {loss[0]:.4f} -> '
            f'{loss[-1]:.4f}; {osp.basename(ckpt)} ({size:.0f} MiB)')


def benchmark_details(path: str) -> str:
    """One line of the benchmark's results."""
    with open(path) as f:
        results = json.load(f)
    batch = results['batch_size']
    parts = []
    for name, m in results['models'].items():
        memory = m.get('memory', {})
        kind = 'reserved' if 'reserved' in memory else 'peak'
        peak = memory.get(kind)
        parts.append(f'{name} {batch / m["median"]:.1f} img/s'
                     + (f', {peak / 1024:.1f} GiB {kind}' if peak else ''))
    return '; '.join(parts)


def sweep_details(path: str) -> str:
    """One line of the batch sweep's result."""
    with open(path) as f:
        return json.load(f)['summary']


def format_rows(rows: List[Dict[str, str]]) -> str:
    """The final table, in Markdown."""
    columns = ['check', 'result', 'seconds', 'details']
    lines = ['| ' + ' | '.join(columns) + ' |',
             '|' + '|'.join('---' for _ in columns) + '|']
    for row in rows:
        lines.append('| ' + ' | '.join(row[c] for c in columns) + ' |')
    return '\n'.join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    device = args.device
    if device == 'cuda' and not torch.cuda.is_available():
        print('gpu-check: no CUDA device (torch.cuda.is_available() is False'
              f' with torch {torch.__version__}, CUDA build '
              f'{torch.version.cuda}); run it on a machine with an NVIDIA '
              'GPU and its driver.', file=sys.stderr)
        return 2
    check = Check(args, device)
    commands = check.commands()
    if args.dry_run:
        print(f'# {check.derived}\n{check.derived_config()}')
        for step in args.steps:
            print(f'{step}: {shlex.join(commands[step])}')
        return 0
    os.makedirs(check.work_dir, exist_ok=True)
    with open(check.derived, 'w') as f:
        f.write(check.derived_config())
    info = environment(device)
    rows = [dict(check='environment', result='ok', seconds='',
                 details=', '.join(f'{k} {v}' for k, v in info.items()))]
    failed = False
    for step in args.steps:
        if step == 'resume' and rows[-1]['result'] != 'ok':
            rows.append(dict(check='resume', result='skipped', seconds='',
                             details='train failed'))
            failed = True
            continue
        log_path = osp.join(check.work_dir, f'{step}.log')
        ok, seconds = run_step(step, commands[step], log_path,
                               step == 'benchmark')
        details = f'see {log_path}'
        try:
            if ok and step in ('train', 'resume'):
                details = check_train(check, scalars(check.train_dir),
                                      step == 'train')
            elif ok and step == 'benchmark':
                with open(log_path + '.out') as f:
                    print(f.read(), flush=True)  # the benchmark's tables
                details = benchmark_details(
                    osp.join(check.work_dir, 'benchmark.json'))
            elif ok and step == 'sweep':
                details = sweep_details(
                    osp.join(check.work_dir, 'batch_sweep.json'))
        except (RuntimeError, OSError, KeyError, ValueError) as error:
            ok, details = False, f'{error} (see {log_path})'
        failed |= not ok
        label = dict(train=f'train {check.iters} iters',
                     resume=f'resume to {2 * check.iters} iters',
                     benchmark='benchmark', sweep='batch sweep')[step]
        rows.append(dict(check=label, result='ok' if ok else 'FAILED',
                         seconds=f'{seconds:.0f}', details=details))
    print(f'\ngpu-check: {check.config}, batch {check.batch_size}, '
          f'{"amp " + check.amp if check.amp != "none" else "fp32"}, '
          f'{device}; logs in {check.work_dir}')
    print(format_rows(rows))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
