"""``make gpu-check``: what a CUDA GPU does with NoiseMIM, in about 8 minutes.

Requirements: an NVIDIA driver that runs torch's CUDA build (cu130 wheels,
torch's default on Linux: driver >= 580; cu12x: >= 525); for another CUDA,
install torch/torchvision built for it first (docs/gpu.md). No compiled mmcv
ops, mmdet or mmseg are needed: the pre-training install (mmcv-lite) is
enough. ``tools/gpu_check.sh`` runs it on a machine without network, from a
folder of carried wheels.

First the **environment** (torch, its CUDA build, the driver and whether it
is new enough, the GPU); then the parts, each in its own process with its
own time budget (a part that fails or runs out of time is reported and
skipped), then one table:

1. **attention**: which ``scaled_dot_product_attention`` backend each kind
   of attention call selects (plain, mass channels, hard-disentanglement
   bias) and its forward/backward time (:mod:`noisemim.benchmark.attention`);
2. **models**: NoiseMIM vs the SimMIM-style ViT vs MAE training steps at the
   training batch in bf16 (no loss scaler), images/s and MFU
   (``tools/benchmark.py``);
3. **train**: bf16 steps of the config through ``tools/train.py`` on JPEG
   photographs, a few of them profiled (the device's idle gaps, the host time
   between iterations, the optimizer's ops and kernel launches:
   :class:`noisemim.benchmark.step_profile.IterationProfileHook`), ending
   with a checkpoint;
4. **resume**: ``tools/train.py --resume`` from it, for as many steps again;
5. **loader**: the data loader's images/s with the config's CPU pipeline and
   with the device-decode path (``noisemim/datasets/device_decode.py``);
6. **sweep** (only with ``--only``): the largest batch that fits.

``--device cpu`` runs the same parts on CPU with the tiny demo config (what
the tests do); ``--dry-run`` prints the plan and runs nothing.

Examples::

    make gpu-check
    python tools/gpu_check.py --only attention,models
    python tools/gpu_check.py --budget models=300 --batch-size 256
"""
import argparse
import glob
import importlib.util
import json
import os
import os.path as osp
import shlex
import shutil
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional, Tuple

import torch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
PARTS = ('attention', 'models', 'train', 'resume', 'loader', 'sweep')
DEFAULT_PARTS = PARTS[:-1]
#: Seconds per part on an H100 (the default parts: 8 minutes at most).
BUDGETS = dict(attention=60, models=180, train=120, resume=60, loader=60,
               sweep=180)
#: ``--device cpu`` (tests, a shared CPU) gets this many times the budgets.
CPU_BUDGET_FACTOR = 5
GPU_CONFIG = 'configs/pretrain/noisemim_vit-base-p16_8xb512-amp-coslr-400e_in1k.py'
CPU_CONFIG = 'configs/pretrain/noisemim_vit-tiny_demo.py'
#: Oldest NVIDIA driver per CUDA major version of torch's build (CUDA's
#: minor-version compatibility: 13.x needs >= 580, 12.x >= 525, 11.x >= 450).
MIN_DRIVER = {13: 580, 12: 525, 11: 450}
#: The profiled iterations of the train part: at most 4, after warm-up and
#: between two logging iterations (where the losses are read: a host sync).
PROFILE_ITERS = 4
COLUMNS = ('check', 'result', 'seconds', 'measured')
#: ViT-B/16's forward at 224 px, FLOP per image (multiply-adds count 2); a
#: training step's is counted as 3x that (the yardstick of docs/gpu.md).
VIT_B16_FORWARD_FLOP = 35.9e9

# Points a pre-training config at JPEG photographs for a few iterations with
# a constant learning rate; the model, image size, pipeline and optimizer
# stay the config's own. A few iterations are profiled.
DERIVED_CONFIG = """\
# Written by tools/gpu_check.py: {config} on JPEG photographs.
_base_ = [{config_path!r}]
custom_imports = dict(
    imports=['noisemim', 'noisemim.benchmark.step_profile'],
    allow_failed_imports=False)
train_dataloader = dict(
    batch_size={batch_size},
    num_workers={workers},
    persistent_workers={persistent},
    pin_memory={pin_memory},
    sampler=dict(_delete_=True, type='InfiniteSampler', shuffle=True),
    dataset=dict(
        _delete_=True,
        type='CustomDataset',
        data_root={photos!r},
        with_label=False,
        pipeline={{{{_base_.train_pipeline}}}}))
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters={iters})
param_scheduler = [
    dict(type='ConstantLR', factor=1.0, by_epoch=False, begin=0)]
auto_scale_lr = dict(enable=False)
default_hooks = dict(
    logger=dict(interval={log_interval}),
    checkpoint=dict(by_epoch=False, interval={iters}, max_keep_ckpts=2))
custom_hooks = {custom_hooks}
log_processor = dict(by_epoch=False)
resume = False
{optim_wrapper}"""


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='What a CUDA GPU does with NoiseMIM: attention backends, '
        'models, profiled training, resume, loader.')
    parser.add_argument('--work-dir', default='work_dirs/gpu_check')
    parser.add_argument('--config', help='pre-training config (default: '
                        f'{GPU_CONFIG}; with --device cpu, {CPU_CONFIG})')
    parser.add_argument('--batch-size', type=int,
                        help='per-GPU batch of attention and models '
                        '(default: the config\'s, 512; CPU: 2)')
    parser.add_argument('--train-batch', type=int,
                        help='batch of train and resume (default: 128; '
                        'CPU: 2)')
    parser.add_argument('--iters', type=int,
                        help='training steps of train and of resume '
                        '(default: 12; CPU: 2)')
    parser.add_argument('--workers', type=int,
                        help='data loader workers (default: CPUs - 2, at '
                        'most 14; CPU: 0)')
    parser.add_argument('--amp', choices=['bf16', 'fp16'],
                        help='mixed precision on the GPU (default: bf16 '
                        'where supported, else fp16)')
    parser.add_argument('--only', help='comma-separated parts, of '
                        f'{",".join(PARTS)} (resume needs train; default: '
                        f'{",".join(DEFAULT_PARTS)})')
    parser.add_argument('--budget', nargs='+', default=[], metavar='PART=S',
                        help='seconds for a part, e.g. models=300 '
                        f'(defaults: {BUDGETS}; x{CPU_BUDGET_FACTOR} with '
                        '--device cpu)')
    parser.add_argument('--device', choices=['cuda', 'cpu'], default='cuda',
                        help='cpu: run on CPU with the tiny demo config (the '
                        'tests of this tool)')
    parser.add_argument('--dry-run', action='store_true',
                        help='print the plan, run nothing')
    parser.add_argument('--part', choices=['attention', 'loader'],
                        help=argparse.SUPPRESS)  # one part, in this process
    parser.add_argument('--json', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    parts = DEFAULT_PARTS if args.only is None else tuple(
        s.strip() for s in args.only.split(',') if s.strip())
    unknown = [s for s in parts if s not in PARTS]
    if unknown or not parts:
        parser.error(f'--only takes parts of {",".join(PARTS)}, got '
                     f'{args.only!r}')
    if 'resume' in parts and 'train' not in parts:
        parser.error('--only: resume needs train (it resumes its checkpoint)')
    args.parts = parts
    factor = CPU_BUDGET_FACTOR if args.device == 'cpu' else 1
    args.budgets = {p: s * factor for p, s in BUDGETS.items()}
    for item in args.budget:
        name, _, value = item.partition('=')
        try:
            seconds = float(value)
        except ValueError:
            seconds = -1.
        if name not in PARTS or seconds <= 0:
            parser.error(f'--budget takes PART=SECONDS with a part of '
                         f'{",".join(PARTS)} and seconds > 0, got {item!r}')
        args.budgets[name] = seconds
    for name in ('batch_size', 'train_batch', 'iters'):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f'--{name.replace("_", "-")} must be >= 1, got '
                         f'{value}')
    return args


def driver_version() -> Optional[str]:
    """The NVIDIA driver's version (``nvidia-smi``, else NVML), or None."""
    smi = shutil.which('nvidia-smi')
    if smi:
        try:
            out = subprocess.run(
                [smi, '--query-gpu=driver_version', '--format=csv,noheader'],
                capture_output=True, text=True, timeout=30).stdout.strip()
            if out:
                return out.splitlines()[0].strip()
        except (OSError, subprocess.SubprocessError):
            pass
    try:
        import pynvml
        pynvml.nvmlInit()
        version = pynvml.nvmlSystemGetDriverVersion()
        return version.decode() if isinstance(version, bytes) else version
    except Exception:  # no NVML: not an NVIDIA machine, or no bindings
        return None


def driver_requirement(cuda: Optional[str],
                       driver: Optional[str]) -> Tuple[Optional[bool], str]:
    """Whether ``driver`` runs torch's CUDA build ``cuda``, and a sentence.

    Args:
        cuda (str, optional): ``torch.version.cuda``, e.g. ``'13.0'``.
        driver (str, optional): e.g. ``'580.159.04'``.

    Returns:
        Tuple[Optional[bool], str]: True/False, or None where unknown; what
        the sentence says to do about it.
    """
    if not cuda:
        return False, ('torch is a CPU build: install torch and '
                       'torchvision built for your CUDA (docs/gpu.md)')
    major = int(cuda.split('.')[0])
    need = MIN_DRIVER.get(major)
    if need is None:
        return None, f'no driver requirement known for CUDA {cuda}'
    if driver is None:
        return None, (f'CUDA {cuda} build needs driver >= {need}; the '
                      'driver version could not be read')
    ok = int(driver.split('.')[0]) >= need
    if ok:
        return True, f'driver {driver} >= {need} (CUDA {cuda} build)'
    return False, (f'driver {driver} < {need}, which the CUDA {cuda} build '
                   'needs: update the driver, or install torch/torchvision '
                   'built for an older CUDA (e.g. cu126: driver >= 525)')


def environment(device: str) -> Tuple[bool, str]:
    """The environment row: torch, CUDA build, driver, device, packages."""
    cuda = torch.version.cuda
    info = [f'torch {torch.__version__}', f'CUDA build {cuda}']
    ok = True
    if device == 'cuda':
        fits, sentence = driver_requirement(cuda, driver_version())
        ok = fits is not False
        index = torch.cuda.current_device()
        major, minor = torch.cuda.get_device_capability(index)
        memory = torch.cuda.get_device_properties(index).total_memory
        info += [sentence, torch.cuda.get_device_name(index),
                 f'sm_{major}{minor}', f'{memory / 2**30:.0f} GiB',
                 f'{torch.cuda.device_count()} GPU(s)',
                 f'bf16 {torch.cuda.is_bf16_supported()}']
    else:
        info.append('device cpu (--device cpu)')
    for label, name in (('mmcv', 'mmcv'), ('mmcv compiled ops', 'mmcv._ext'),
                        ('mmdet', 'mmdet'), ('mmseg', 'mmseg')):
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        info.append(f'{label} {"yes" if found else "no"}')
    return ok, ', '.join(info)


class Check:
    """The plan of a run: settings, commands and the derived config."""

    def __init__(self, args: argparse.Namespace, device: str) -> None:
        self.args = args
        self.device = device
        cpu = device == 'cpu'
        self.config = args.config or (CPU_CONFIG if cpu else GPU_CONFIG)
        self.batch_size = args.batch_size or (2 if cpu else 512)
        self.train_batch = args.train_batch or (2 if cpu else 128)
        self.iters = args.iters or (2 if cpu else 12)
        # On CPU every iteration logs (the tests read each loss); on a GPU
        # twice per run, so that the profiled iterations read no loss.
        self.log_interval = 1 if cpu else max(1, self.iters // 2)
        self.workers = (args.workers if args.workers is not None else
                        0 if cpu else max(1, min(14,
                                                 (os.cpu_count() or 3) - 2)))
        if cpu:
            self.amp = 'none'
        elif args.amp:
            self.amp = args.amp
        else:
            self.amp = ('bf16' if not torch.cuda.is_available()  # a plan
                        or torch.cuda.is_bf16_supported() else 'fp16')
        self.work_dir = osp.abspath(args.work_dir)
        self.train_dir = osp.join(self.work_dir, 'train')
        self.photos = osp.join(self.work_dir, 'photos')
        self.derived = osp.join(self.work_dir, 'gpu_check_config.py')
        self.profile = osp.join(self.work_dir, 'iteration_profile.json')

    def derived_config(self) -> str:
        """The config that points ``self.config`` at the JPEG photographs,
        with the config's own hooks and the iteration profiler."""
        from mmengine.config import Config
        hooks = Config.fromfile(osp.join(ROOT, self.config)).get(
            'custom_hooks', [])
        hooks = [h.to_dict() if hasattr(h, 'to_dict') else dict(h)
                 for h in hooks]
        start, iters = self.profile_window()
        hooks.append(dict(type='IterationProfileHook', start=start,
                          iters=iters, out_file=self.profile))
        optim_wrapper = ''
        if self.amp == 'bf16':  # as the configs train: no loss scaler
            optim_wrapper = ("optim_wrapper = dict(type='AmpOptimWrapper', "
                             "dtype='bfloat16', "
                             "loss_scale=dict(enabled=False))\n")
        elif self.amp == 'fp16':  # fp16 needs a dynamic loss scale
            optim_wrapper = ("optim_wrapper = dict(type='AmpOptimWrapper', "
                             "dtype='float16', loss_scale='dynamic')\n")
        return DERIVED_CONFIG.format(
            config=self.config,
            config_path=osp.join(ROOT, self.config),
            batch_size=self.train_batch,
            workers=self.workers,
            persistent=self.workers > 0,
            pin_memory=self.device == 'cuda',
            photos=self.photos,
            iters=self.iters,
            log_interval=self.log_interval,
            custom_hooks=repr(hooks),
            optim_wrapper=optim_wrapper)

    def profile_window(self) -> Tuple[int, int]:
        """The profiled iterations: ``(start, count)``, 0-based, after the
        first logging iteration and ending before the next one."""
        start = min(self.log_interval, self.iters - 1)
        room = self.log_interval - 1 if self.log_interval > 1 else (
            self.iters - start)
        return start, max(1, min(PROFILE_ITERS, room))

    def logged(self, first: bool) -> List[int]:
        """The iterations the train (``first``) or resume run logs."""
        begin = 1 if first else self.iters + 1
        end = self.iters if first else 2 * self.iters
        return [i for i in range(begin, end + 1) if i % self.log_interval == 0]

    def part_command(self, part: str) -> List[str]:
        """The command that runs ``part`` of this tool in its own process."""
        command = [sys.executable, osp.abspath(__file__), '--part', part,
                   '--json', osp.join(self.work_dir, f'{part}.json'),
                   '--device', self.device, '--config', self.config,
                   '--work-dir', self.work_dir, '--batch-size',
                   str(self.batch_size), '--train-batch',
                   str(self.train_batch), '--workers', str(self.workers)]
        if self.device == 'cuda':
            command += ['--amp', self.amp]
        return command

    def commands(self) -> Dict[str, List[str]]:
        """The command of every part."""
        py = sys.executable
        train = [py, osp.join(ROOT, 'tools/train.py'), self.derived,
                 '--work-dir', self.train_dir]
        cpu = self.device == 'cpu'
        models = [
            py, osp.join(ROOT, 'tools/benchmark.py'), '--config',
            osp.join(ROOT, self.config), '--device', self.device,
            '--batch-size', str(self.batch_size), '--pipeline-images', '0',
            '--compile-backend', 'none', '--json',
            osp.join(self.work_dir, 'models.json')]
        sweep = [py, '-m', 'noisemim.benchmark.batch_sweep', '--config',
                 osp.join(ROOT, self.config), '--device', self.device,
                 '--amp', self.amp, '--json',
                 osp.join(self.work_dir, 'sweep.json')]
        if cpu:
            models += ['--warmup', '0', '--repeats', '1', '--mae-neck',
                       'decoder_embed_dim=32', 'decoder_depth=1',
                       'decoder_num_heads=2']
            sweep += ['--start', '2', '--max-batch', '4', '--bisect-steps',
                      '0', '--steps', '1']
        else:
            models += ['--amp', self.amp, '--warmup', '2', '--repeats', '5']
            sweep += ['--start', '64', '--max-batch', '2048',
                      '--bisect-steps', '2']
        return dict(
            attention=self.part_command('attention'),
            models=models,
            train=train,
            resume=train + ['--resume', '--cfg-options',
                            f'train_cfg.max_iters={2 * self.iters}'],
            loader=self.part_command('loader'),
            sweep=sweep)


# The parts that run in this tool's own process (``--part``).

def part_attention(check: Check) -> List[Dict[str, str]]:
    """One row per kind of attention call (see
    :func:`noisemim.benchmark.attention.probe_attention`)."""
    from mmengine.config import Config

    from noisemim.benchmark.attention import probe_attention
    cfg = Config.fromfile(osp.join(ROOT, check.config))
    dtype = dict(bf16=torch.bfloat16, fp16=torch.float16).get(
        check.amp, torch.float32)
    rows, plain_ms = [], None
    for r in probe_attention(cfg.model.backbone.to_dict(), check.batch_size,
                             check.device, dtype):
        backends = ', '.join(f'{k} x{v}' for k, v in r['backends'].items())
        plain_ms = r['step_ms'] if r['variant'] == 'plain' else plain_ms
        versus = (f" ({r['step_ms'] / plain_ms:.2f}x plain)"
                  if plain_ms and r['variant'] != 'plain' else '')
        rows.append(dict(
            check=f"attention: {r['variant']}", result='ok',
            measured=f"{backends or 'no SDPA call found'}; per call: "
            f"forward {r['sdpa_forward_ms']:.2f} ms, backward "
            f"{r['sdpa_backward_ms']:.2f} ms; encoder forward+backward "
            f"{r['step_ms']:.1f} ms{versus}, every block of this kind, "
            f"batch {check.batch_size}"))
    return rows


def part_loader(check: Check, batches: int = 0) -> List[Dict[str, str]]:
    """The data loader's images/s, CPU-decode and device-decode paths.

    Both read the same ImageNet-like JPEGs (:func:`write_jpeg_photos`) with
    the check's workers; the device-decode path also decodes, crops and
    resizes each batch on the device (its cost is in its images/s). A
    worker's own rate (one process) gives the feed estimate.
    """
    from mmengine.config import Config

    from noisemim.benchmark.pipeline import (DEVICE_DECODE_DATASET,
                                             write_jpeg_photos)
    cpu = check.device == 'cpu'
    batches = batches or (2 if cpu else 12)
    files = write_jpeg_photos(osp.join(check.work_dir, 'jpeg'),
                              count=8 if cpu else 64)
    rows = []
    paths = (('cpu decode', Config.fromfile(osp.join(ROOT, check.config))),
             ('device decode', Config.fromfile(DEVICE_DECODE_DATASET)))
    for name, cfg in paths:
        try:
            rows.append(_loader_row(check, name, cfg, files, batches))
        except Exception as error:  # one path failing is a row, not the end
            rows.append(dict(check=f'loader: {name}', result='FAILED',
                             measured=f'{type(error).__name__}: {error}'))
    return rows


def _loader_row(check: Check, name: str, cfg, files: List[str],
                batches: int) -> Dict[str, str]:
    """One data path's row of :func:`part_loader`."""
    from mmengine.registry import DefaultScope
    from mmengine.runner import Runner
    from mmpretrain.registry import MODELS

    from noisemim.benchmark.pipeline import pipeline_throughput
    cpu = check.device == 'cpu'
    batch = check.train_batch
    folder = osp.dirname(files[0])
    per_worker = pipeline_throughput(cfg, 4 if cpu else 64, 8, files)
    collate = cfg.train_dataloader.get(
        'collate_fn', dict(type='default_collate'))
    loader_cfg = dict(
        batch_size=batch, num_workers=check.workers,
        persistent_workers=False, pin_memory=not cpu,
        sampler=dict(type='InfiniteSampler', shuffle=True),
        collate_fn=collate,
        dataset=dict(type='CustomDataset', data_root=folder,
                     with_label=False,
                     pipeline=cfg.train_dataloader.dataset.pipeline))
    preprocessor = None
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        loader = Runner.build_dataloader(loader_cfg)
        if name == 'device decode':
            preprocessor = MODELS.build(cfg.data_preprocessor).to(
                check.device)
    it = iter(loader)
    data = next(it)  # workers started, first batch
    if preprocessor is not None:
        preprocessor(data, True)  # warm-up
    device_side = 0.
    start = time.perf_counter()
    for _ in range(batches):
        data = next(it)
        if preprocessor is not None:
            begin = time.perf_counter()
            preprocessor(data, True)
            if not cpu:
                torch.cuda.synchronize()
            device_side += time.perf_counter() - begin
    if not cpu:
        torch.cuda.synchronize()
    rate = batch * batches / (time.perf_counter() - start)
    del it, loader
    where = ('on the GPU' if not cpu else
             'on the CPU in this process, a stand-in for the GPU')
    detail = (f'{rate:.0f} images/s with {check.workers} workers, batch '
              f'{batch}; one worker {per_worker:.0f} images/s')
    if name == 'device decode':
        detail += (f' (workers read bytes; decode, crop, resize {where}: '
                   f'{batch * batches / device_side:.0f} images/s of it)')
    else:
        detail += ' (decode, crop, resize in the workers)'
    return dict(check=f'loader: {name}', result='ok', measured=detail)


PART_FUNCTIONS: Dict[str, Callable[[Check], List[Dict[str, str]]]] = dict(
    attention=part_attention, loader=part_loader)


# Reading the results of the parts that run other tools.

def scalars(work_dir: str) -> List[List[dict]]:
    """The logged scalars of each run in ``work_dir``, oldest run first."""
    runs = []
    for path in sorted(glob.glob(osp.join(work_dir, '*', 'vis_data',
                                          'scalars.json'))):
        with open(path) as f:
            runs.append([json.loads(line) for line in f if line.strip()])
    return runs


def check_train(check: Check, runs: List[List[dict]], first: bool) -> str:
    """Details of the train (``first``) or resume step; raises if wrong."""
    if len(runs) < (1 if first else 2):
        raise RuntimeError('no logged scalars found')
    records = [r for r in runs[0 if first else -1] if 'loss' in r]
    if not records:
        raise RuntimeError('no loss was logged')
    iters = [r['iter'] for r in records]
    expected = check.logged(first)
    if iters != expected:
        raise RuntimeError(f'logged iterations {iters}, expected {expected}')
    last = check.iters if first else 2 * check.iters
    ckpt = osp.join(check.train_dir, f'iter_{last}.pth')
    if not osp.isfile(ckpt):
        raise RuntimeError(f'no checkpoint {ckpt}')
    loss = [r['loss'] for r in records]
    size = osp.getsize(ckpt) / 2**20
    what = 'trained' if first else 'resumed at iteration ' + str(
        check.iters) + ', trained'
    return (f'{what} to iteration {last} at batch {check.train_batch}; '
            f'loss {loss[0]:.4f} -> {loss[-1]:.4f}; {osp.basename(ckpt)} '
            f'({size:.0f} MiB)')


def profile_rows(path: str) -> List[Dict[str, str]]:
    """The rows of :class:`IterationProfileHook`'s summary."""
    with open(path) as f:
        p = json.load(f)
    if 'error' in p:
        return [dict(check='train: profile', result='FAILED',
                     measured=p['error'])]
    idle, opt = p['idle'], p['optimizer']
    gaps = ', '.join(f'{g:.2f}' for g in idle['largest_gaps_ms'])
    return [
        dict(check='train: idle device', result='ok',
             measured=f"{p['device']}: busy {idle['busy_share']:.1%} of "
             f"{idle['span_ms']:.0f} ms ({p['iterations']} iterations), idle "
             f"{idle['idle_ms_per_iter']:.1f} ms per iteration in "
             f"{idle['gaps']} gaps (largest {gaps} ms); host "
             f"{p['iter_ms']:.1f} ms per iteration + {p['between_ms']:.1f} ms"
             ' between iterations (data wait, hooks)'),
        dict(check='train: optimizer step', result='ok',
             measured=f"{opt['aten_ops']:.0f} aten ops, "
             f"{opt['launches']:.0f} kernel launches, "
             f"{opt['host_ms']:.1f} ms of host time per step")]


def model_rows(path: str) -> List[Dict[str, str]]:
    """One row per model of ``tools/benchmark.py``'s JSON results."""
    from noisemim.benchmark import peak_bf16_flops
    with open(path) as f:
        results = json.load(f)
    batch = results['batch_size']
    peak = peak_bf16_flops(results.get('device_name', ''))
    rows = []
    for name, m in results['models'].items():
        if 'error' in m:
            rows.append(dict(check=f'models: {name}', result='FAILED',
                             measured=m['error']))
            continue
        parts = [f'{batch / m["median"]:.0f} images/s',
                 f'step {m["median"] * 1e3:.1f} ms at batch {batch}']
        if 'vs_simmim' in m:
            parts.append(f'{m["vs_simmim"]["median"]:.3f}x SimMIM-style')
        if 'flops' in m:
            per_image = m['flops']['total'] / batch
            rate = m['flops']['total'] / m['median']
            parts.append(f'{per_image / 1e9:.0f} GFLOP/image (fwd+bwd '
                         f'counted), {rate / 1e12:.0f} TFLOP/s')
            if peak:
                parts.append(f'MFU {rate / peak:.1%}')
        if peak and 'vit-base-p16' in results.get('config', ''):
            nominal = 3 * VIT_B16_FORWARD_FLOP * batch / m['median'] / peak
            parts.append(f'MFU at 3 x 35.9 GFLOP/image {nominal:.1%}')
        memory = m.get('memory', {})
        if 'reserved' in memory:
            parts.append(f'{memory["reserved"] / 1024:.1f} GiB reserved')
        rows.append(dict(check=f'models: {name}', result='ok',
                         measured=', '.join(parts)))
    return rows


def sweep_rows(path: str) -> List[Dict[str, str]]:
    """The batch sweep's row."""
    with open(path) as f:
        summary = json.load(f)['summary']
    return [dict(check='sweep', result='ok', measured=summary)]


def run_command(name: str, command: List[str], log_path: str,
                budget: float) -> Tuple[str, float]:
    """Run one part's command within its budget, its output to ``log_path``.

    Args:
        name (str): The part.
        command (List[str]): Its command.
        log_path (str): Where its output goes.
        budget (float): Seconds it may take; then it is stopped.

    Returns:
        Tuple[str, float]: ``'ok'``, ``'FAILED (exit N)'`` or ``'TIMEOUT'``,
        and its seconds.
    """
    print(f'[gpu-check] {name} (budget {budget:.0f} s): '
          f'{shlex.join(command)}', flush=True)
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(
        p for p in (ROOT, env.get('PYTHONPATH')) if p)
    start = time.perf_counter()
    with open(log_path, 'w') as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log,
                                   stderr=subprocess.STDOUT,
                                   start_new_session=True)
        try:
            code = process.wait(timeout=budget)
            result = 'ok' if code == 0 else f'FAILED (exit {code})'
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)  # the part and its workers
            process.wait()
            result = 'TIMEOUT'
    seconds = time.perf_counter() - start
    if result != 'ok':
        with open(log_path) as f:
            tail = f.read()[-3000:]
        print(f'[gpu-check] {name} {result}; the end of {log_path}:\n{tail}',
              flush=True)
    return result, seconds


def part_rows(check: Check, part: str, log_path: str) -> List[Dict[str, str]]:
    """The rows of a part that finished, from its outputs (raises if they
    are missing or wrong)."""
    if part in PART_FUNCTIONS:
        with open(osp.join(check.work_dir, f'{part}.json')) as f:
            return json.load(f)
    if part == 'models':
        return model_rows(osp.join(check.work_dir, 'models.json'))
    if part == 'sweep':
        return sweep_rows(osp.join(check.work_dir, 'sweep.json'))
    first = part == 'train'
    label = (f'train {check.iters} iters' if first else
             f'resume to {2 * check.iters} iters')
    rows = [dict(check=label, result='ok', measured=check_train(
        check, scalars(check.train_dir), first))]
    if first:
        rows += profile_rows(check.profile)
    return rows


def format_rows(rows: List[Dict[str, str]]) -> str:
    """The final table, in Markdown (``|`` in a cell escaped)."""
    lines = ['| ' + ' | '.join(COLUMNS) + ' |',
             '|' + '|'.join('---' for _ in COLUMNS) + '|']
    for row in rows:
        cells = [str(row.get(c, '')).replace('|', '/') for c in COLUMNS]
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def run_part_here(args: argparse.Namespace) -> int:
    """``--part``: run one in-process part, its rows to ``--json``."""
    check = Check(args, args.device)
    os.makedirs(check.work_dir, exist_ok=True)
    rows = PART_FUNCTIONS[args.part](check)
    with open(args.json, 'w') as f:
        json.dump(rows, f, indent=2)
    print(format_rows(rows))
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    device = args.device
    if device == 'cuda' and not torch.cuda.is_available() and not (
            args.dry_run):
        fits, sentence = driver_requirement(torch.version.cuda,
                                            driver_version())
        print('gpu-check: no CUDA device (torch.cuda.is_available() is False'
              f' with torch {torch.__version__}, CUDA build '
              f'{torch.version.cuda}; {sentence}); run it on a machine with '
              'an NVIDIA GPU and its driver.', file=sys.stderr)
        return 2
    if args.part:
        return run_part_here(args)
    check = Check(args, device)
    commands = check.commands()
    if args.dry_run:
        print(f'# {check.derived}\n{check.derived_config()}')
        for part in args.parts:
            print(f'{part} (budget {args.budgets[part]:.0f} s): '
                  f'{shlex.join(commands[part])}')
        return 0
    os.makedirs(check.work_dir, exist_ok=True)
    start = time.perf_counter()
    ok, details = environment(device)
    rows = [dict(check='environment', result='ok' if ok else 'FAILED',
                 seconds=f'{time.perf_counter() - start:.0f}',
                 measured=details)]
    failed = not ok
    for part in args.parts:
        if part == 'train':
            from noisemim.benchmark.pipeline import write_jpeg_photos
            shutil.rmtree(check.train_dir, ignore_errors=True)  # a rerun
            write_jpeg_photos(check.photos, count=32,
                              size=(256, 256) if device == 'cuda' else
                              (96, 96))
            with open(check.derived, 'w') as f:
                f.write(check.derived_config())
        if part == 'resume' and not any(
                r['check'].startswith('train ') and r['result'] == 'ok'
                for r in rows):
            rows.append(dict(check='resume', result='skipped',
                             measured='train failed'))
            failed = True
            continue
        log_path = osp.join(check.work_dir, f'{part}.log')
        result, seconds = run_command(part, commands[part], log_path,
                                      args.budgets[part])
        part_result = [dict(check=part, result=result,
                            measured=f'see {log_path}')]
        if result == 'ok':
            try:
                part_result = part_rows(check, part, log_path)
            except (RuntimeError, OSError, KeyError, ValueError) as error:
                part_result = [dict(check=part, result='FAILED',
                                    measured=f'{error} (see {log_path})')]
        part_result[0]['seconds'] = (f'{seconds:.0f} of '
                                     f'{args.budgets[part]:.0f}')
        failed |= any(r['result'] != 'ok' for r in part_result)
        rows += part_result
    print(f'\ngpu-check: {check.config}, batch {check.batch_size} (train '
          f'{check.train_batch}), '
          f'{"amp " + check.amp if check.amp != "none" else "fp32"}, '
          f'{device}; logs in {check.work_dir}')
    print(format_rows(rows))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
