"""Side-by-side pre-training benchmark: NoiseMIM, a SimMIM-style ViT and MAE.

Times full training steps (data preprocessor, forward, backward, optimizer
step) of the models at the NoiseMIM config's architecture, batch and
resolution, each model in its own process: NoiseMIM, NoiseMIM with its
encoder blocks and heads compiled (``--compile-backend``), the SimMIM-style
ViT (mmpretrain's classes only) and MAE. On CPU the processes are stepped in
turn (round-robin, each round starting with the next model) so that the load
of a shared machine hits them alike; on CUDA one model runs at a time (its
process ends before the next starts, so no two allocator caches share the
GPU). The first ``--warmup`` rounds are dropped. A model's time relative to
the SimMIM-style step is the median over the rounds of the per-round ratio
(round i against round i), with its spread; the same ratio of the
processes' CPU time (all threads) is less sensitive to other users of a
shared machine. Each process pins glibc's malloc thresholds (``--malloc
dynamic`` leaves them moving; see ``noisemim.benchmark.worker``) and counts
its page faults per step. Every model draws its mask inside the timed step,
on the step's device (NoiseMIM's corruption and MAE's shuffle in their
forward, the SimMIM-style block mask just before it). AMP is as training
runs it: bf16 without a loss scaler, fp16 with the dynamic one. A model that
fails (to build, to step, out of memory) is reported in the table and
skipped; the others are measured. Also reports the share of a NoiseMIM step
in corruption sampling, noise injection and the disruption loss
(torch.profiler), each data path's images/s per worker (the config's CPU
pipeline; the device-decode path's workers and its device side) with the
verdict whether the loader keeps up, and on CUDA the model FLOP utilisation
against the device's bf16 peak, with and without the disruption loss's
FLOPs.

Examples::

    python tools/benchmark.py                       # ViT-B/16, 224 px, CPU
    python tools/benchmark.py --device cuda --batch-size 512   # bf16 AMP
"""
import argparse
import json
import statistics
import sys
import tempfile
from contextlib import ExitStack
from typing import Dict, List, Optional, Sequence

import torch
from mmengine.config import Config, DictAction

import noisemim  # noqa: F401  (registers noisemim's modules)
from noisemim.benchmark import (NOISEMIM_NAME, SIMMIM_NAME, Worker,
                                WorkerSpec, benchmark_models, format_table,
                                peak_bf16_flops)
from noisemim.benchmark.pipeline import (cpus_per_device, data_paths,
                                         feed_estimate)
from noisemim.engine.optimizers import set_wrapper_precision, wrapper_precision
from noisemim.utils.precision import PRECISIONS, choose_precision

# 'noisemim.mass_attention' is the attention call and output projection of
# the probed blocks (the block's own work plus the two mass channels); what
# the disruption loss adds to the step is 'noisemim.disruption_loss' plus the
# share of the mass channels in those (docs/performance.md).
RANGES = ('noisemim.sample_corruption', 'noisemim.noise_injection',
          'noisemim.disruption_loss', 'noisemim.mass_attention')
AMP_DTYPES = dict(bf16='bfloat16', fp16='float16')
COMPILED_NAME = NOISEMIM_NAME + ' (compiled)'


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument(
        '--config', default='configs/pretrain/noisemim_vit-base-p16_8xb512-amp-coslr-400e_in1k.py',
        help='NoiseMIM pre-training config (sets the architecture)')
    parser.add_argument('--batch-size', type=int, default=8)
    parser.add_argument('--warmup', type=int, default=2,
                        help='rounds of steps not timed')
    parser.add_argument('--repeats', type=int, default=5,
                        help='timed rounds (the median is reported)')
    parser.add_argument('--device', choices=['cpu', 'cuda'], default='cpu')
    parser.add_argument(
        '--amp', choices=['none', *AMP_DTYPES],
        help='mixed precision (CUDA only; default: bf16 on CUDA, none on CPU)')
    parser.add_argument(
        '--schedule', choices=['auto', 'interleaved', 'sequential'],
        default='auto',
        help='interleaved: all model processes alive, stepped round-robin; '
        'sequential: one model process at a time (needed on a GPU at the '
        'training batch); auto: interleaved on CPU, sequential on CUDA')
    parser.add_argument(
        '--compile-backend', default='inductor',
        help="torch.compile backend of the compiled NoiseMIM row ('none': "
        'no compiled row)')
    parser.add_argument('--threads', type=int, default=0,
                        help='torch threads per model process (0: default)')
    parser.add_argument(
        '--malloc',
        choices=['pinned', 'dynamic'],
        default='pinned',
        help="pinned: fix glibc's malloc thresholds in every model process, "
        'so freed memory is reused, not faulted in again each step; '
        "dynamic: glibc's default (more page faults, noisier ratios)")
    parser.add_argument('--profile-steps', type=int, default=1,
                        help='NoiseMIM steps profiled for the step breakdown')
    parser.add_argument('--pipeline-images', type=int, default=64,
                        help='images through each data path (0: skip)')
    parser.add_argument('--peak-tflops', type=float,
                        help='bf16 peak of the device, if not in the table')
    parser.add_argument('--json', help='also write the results here')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings of the NoiseMIM config')
    parser.add_argument(
        '--mae-neck', nargs='+', action=DictAction,
        help="override MAE's decoder (default: mmpretrain's, 8 x 512-d), "
        'e.g. decoder_embed_dim=32 decoder_depth=1 decoder_num_heads=2')
    parser.add_argument(
        '--precision', choices=PRECISIONS,
        help="as tools/train.py's --precision for the config on --device "
        '(docs/gpu.md, "Precision"); bf16 on a CPU is CPU autocast. '
        'Default: --amp')
    args = parser.parse_args(argv)
    if args.precision is not None and args.amp is not None:
        parser.error('give --precision or --amp, not both')
    if args.amp is None:
        args.amp = 'bf16' if args.device == 'cuda' else 'none'
    if args.amp != 'none' and args.device != 'cuda':
        parser.error('--amp needs --device cuda (mmengine AMP is CUDA-only)')
    if args.schedule == 'auto':
        args.schedule = 'sequential' if args.device == 'cuda' else 'interleaved'
    if args.repeats < 1 or args.warmup < 0:
        parser.error('--repeats must be >= 1 and --warmup >= 0')
    return args


def optim_wrapper_cfg(cfg: Config, amp: str) -> dict:
    """The config's optimizer, in ``OptimWrapper`` or ``AmpOptimWrapper``.

    As training runs it (docs/gpu.md, "Precision"): bf16 without a loss
    scaler (the scaler's pass over the gradients and its host sync would be
    timed, though training has neither), fp16 with mmengine's dynamic one.

    Args:
        cfg (Config): The NoiseMIM config (its optimizer and paramwise_cfg).
        amp (str): ``'none'``, ``'bf16'`` or ``'fp16'``.

    Returns:
        dict: The optimizer wrapper config.
    """
    wrapper = dict(type='OptimWrapper',
                   optimizer=cfg.optim_wrapper.optimizer.to_dict())
    for key in ('paramwise_cfg', 'constructor'):
        if key in cfg.optim_wrapper:
            value = cfg.optim_wrapper[key]
            wrapper[key] = value.to_dict() if hasattr(value,
                                                      'to_dict') else value
    if amp == 'bf16':
        wrapper.update(type='AmpOptimWrapper', dtype=AMP_DTYPES[amp],
                       loss_scale=dict(enabled=False))
    elif amp == 'fp16':
        wrapper.update(type='AmpOptimWrapper', dtype=AMP_DTYPES[amp],
                       loss_scale='dynamic')
    return wrapper


def _log(round_index: int, rounds: int, name: str, seconds: float) -> None:
    print(f'round {round_index + 1}/{rounds} {name}: {seconds:.3f} s',
          file=sys.stderr, flush=True)


def time_side_by_side(workers: List[Worker], warmup: int, repeats: int,
                      errors: Optional[Dict[str, dict]] = None
                      ) -> Dict[str, List[float]]:
    """Round-robin steps; each round starts with the next model.

    Args:
        workers (List[Worker]): The model processes.
        warmup (int): Rounds not timed.
        repeats (int): Timed rounds.
        errors (Dict[str, dict], optional): A model whose step fails gets
            :func:`failed`'s result here and takes no further steps.

    Returns:
        Dict[str, List[float]]: The step seconds of each model, warm-up
        rounds included (the first ``warmup`` of them).
    """
    errors = {} if errors is None else errors
    times = {w.name: [] for w in workers}
    for r in range(warmup + repeats):
        for i in range(len(workers)):
            worker = workers[(r + i) % len(workers)]
            if worker.name in errors:
                continue
            try:
                seconds = worker.call('step')
            except RuntimeError as error:
                errors[worker.name] = failed(worker.name, error)
                continue
            times[worker.name].append(seconds)
            _log(r, warmup + repeats, worker.name, seconds)
    return times


def time_one(worker: Worker, warmup: int, repeats: int) -> List[float]:
    """All the rounds of one model (the ``sequential`` schedule).

    Returns:
        List[float]: Its step seconds, warm-up rounds included.
    """
    times = []
    for r in range(warmup + repeats):
        times.append(worker.call('step'))
        _log(r, warmup + repeats, worker.name, times[-1])
    return times


def paired_ratio(times: Sequence[float],
                 reference: Sequence[float]) -> Dict[str, float]:
    """The per-round ratios ``times[i] / reference[i]``, summarised.

    A load burst on a shared machine slows the steps of one round, so the
    ratio within a round is steadier than the ratio of two medians.

    Args:
        times (Sequence[float]): A model's timed steps, by round.
        reference (Sequence[float]): The reference's, same rounds.

    Returns:
        Dict[str, float]: ``median``, ``q1``, ``q3`` (quartiles, Python's
        ``statistics.quantiles`` inclusive method), ``min`` and ``max`` of
        the ratios, and ``pairs``.
    """
    if len(times) != len(reference) or not times:
        raise ValueError(f'paired_ratio needs as many rounds on both sides '
                         f'(at least one), got {len(times)} and '
                         f'{len(reference)}')
    ratios = [t / r for t, r in zip(times, reference)]
    if len(ratios) > 1:
        q1, _, q3 = statistics.quantiles(ratios, n=4, method='inclusive')
    else:
        q1 = q3 = ratios[0]
    return dict(median=statistics.median(ratios), q1=q1, q3=q3,
                min=min(ratios), max=max(ratios), pairs=len(ratios))


def morphing_cost(args: argparse.Namespace, num_tokens: int) -> Optional[dict]:
    """DTM's token morphing per call, if ``benchmark_morphing`` exists.

    Args:
        args (argparse.Namespace): Batch, rounds and device.
        num_tokens (int): Patch tokens per image.

    Returns:
        dict | None: ``benchmark_morphing``'s result, or None without it.
    """
    try:
        from noisemim.models.morphing import benchmark_morphing
    except ImportError:
        return None
    return benchmark_morphing(
        batch_size=args.batch_size, num_tokens=num_tokens,
        repeats=args.repeats, warmup=args.warmup, device=args.device)


def worker_specs(cfg: Config, args: argparse.Namespace, wrapper: dict,
                 img_size: int) -> List[WorkerSpec]:
    """The benchmark's model processes: NoiseMIM, NoiseMIM compiled (unless
    ``--compile-backend none``), the SimMIM-style ViT and MAE."""
    specs = []
    for name, spec in benchmark_models(cfg, args.mae_neck).items():
        specs.append(
            WorkerSpec(name, spec.model, wrapper, args.batch_size, img_size,
                       args.device, args.threads,
                       mask_generator=spec.mask_generator,
                       pin_malloc=args.malloc == 'pinned'))
        if name == NOISEMIM_NAME and args.compile_backend != 'none':
            specs.append(
                WorkerSpec(COMPILED_NAME, spec.model, wrapper,
                           args.batch_size, img_size, args.device,
                           args.threads,
                           compile_options=dict(
                               backend=args.compile_backend),
                           pin_malloc=args.malloc == 'pinned'))
    return specs


def measure(worker: Worker, times: List[float],
            args: argparse.Namespace) -> dict:
    """Everything measured of one model, with its process still alive.

    Args:
        worker (Worker): The model's process.
        times (List[float]): Its step seconds, warm-up rounds first.
        args (argparse.Namespace): The benchmark's settings.

    Returns:
        dict: ``step_times`` (timed rounds), ``warmup_times``, ``median``,
        ``cpu_times`` (the process's CPU seconds of the timed rounds),
        ``page_faults`` (its minor page faults in them), ``memory``; for
        NoiseMIM ``shares`` (the profiled step breakdown);
        on CUDA ``flops`` (attention FLOPs are not counted on CPU).
    """
    timed = times[args.warmup:]
    cpu = worker.call('cpu_times')[args.warmup:len(times)]
    faults = worker.call('faults')[args.warmup:len(times)]
    result = dict(step_times=timed, warmup_times=times[:args.warmup],
                  median=statistics.median(timed), cpu_times=cpu,
                  page_faults=faults, memory=worker.call('memory'))
    if worker.name == NOISEMIM_NAME:
        result['shares'] = worker.call('shares', RANGES, args.profile_steps)
    if args.device == 'cuda' and worker.name != COMPILED_NAME:
        result['flops'] = worker.call('flops')
    return result


def run_interleaved(specs: List[WorkerSpec],
                    args: argparse.Namespace) -> Dict[str, dict]:
    """All model processes alive, stepped round-robin (CPU).

    Returns:
        Dict[str, dict]: :func:`measure`'s result of each model.
    """
    results = {}
    with ExitStack() as stack:
        workers = [stack.enter_context(Worker(spec)) for spec in specs]
        for w in list(workers):  # build all before the first timed step
            try:
                w.wait_built()
            except RuntimeError as error:
                results[w.name] = failed(w.name, error)
                workers.remove(w)
        times = time_side_by_side(workers, args.warmup, args.repeats,
                                  results)
        for w in workers:
            if w.name not in results:
                results[w.name] = guarded(w.name, measure, w, times[w.name],
                                          args)
    return {spec.name: results[spec.name] for spec in specs}


def run_sequential(specs: List[WorkerSpec],
                   args: argparse.Namespace) -> Dict[str, dict]:
    """One model process at a time: each ends (and frees its allocator
    cache) before the next starts, so a GPU holds one model at the batch.

    Returns:
        Dict[str, dict]: :func:`measure`'s result of each model.
    """
    results = {}
    for spec in specs:
        with Worker(spec) as w:
            results[w.name] = guarded(
                w.name, lambda: measure(
                    w, time_one(w, args.warmup, args.repeats), args))
        assert not w.alive, f'the process of {w.name} outlived its turn'
    return results


def failed(name: str, error: BaseException) -> dict:
    """The result of a model that failed: reported, not fatal.

    Args:
        name (str): The model.
        error (BaseException): What it raised.

    Returns:
        dict: ``error``, the exception's last line (the table shows it).
    """
    lines = [line for line in str(error).strip().splitlines() if line]
    print(f'{name} FAILED, skipped:\n{error}', file=sys.stderr, flush=True)
    return dict(error=lines[-1] if lines else type(error).__name__)


def guarded(name: str, fn, *args) -> dict:
    """``fn(*args)``, or :func:`failed`'s result if the model failed."""
    try:
        return fn(*args)
    except RuntimeError as error:  # the worker's error, or its death
        return failed(name, error)


def run(args: argparse.Namespace) -> dict:
    """Run the benchmark; returns everything it measured."""
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    img_size = cfg.model.backbone.img_size
    if args.precision is not None:  # resolved as tools/train.py does
        choice = choose_precision(
            args.precision, wrapper_precision(cfg.optim_wrapper) or 'fp32',
            args.device)
        print(choice.message(), file=sys.stderr)
        args.amp = dict(fp32='none').get(choice.precision, choice.precision)
    wrapper = optim_wrapper_cfg(cfg, args.amp)
    if args.device == 'cpu' and args.amp == 'bf16':  # CPU autocast
        set_wrapper_precision(wrapper, 'bf16', 'cpu')
    results = dict(config=args.config, batch_size=args.batch_size,
                   img_size=img_size, device=args.device, amp=args.amp,
                   warmup=args.warmup, repeats=args.repeats,
                   malloc=args.malloc, mae_neck=args.mae_neck, models={})
    if args.device == 'cuda':
        results['device_name'] = torch.cuda.get_device_name()
    results['schedule'] = args.schedule
    results['compile_backend'] = args.compile_backend
    specs = worker_specs(cfg, args, wrapper, img_size)
    schedule = (run_interleaved
                if args.schedule == 'interleaved' else run_sequential)
    results['models'] = schedule(specs, args)
    base = results['models'][SIMMIM_NAME]
    for m in results['models'].values():
        if 'error' not in m and 'error' not in base:
            m['vs_simmim'] = paired_ratio(m['step_times'], base['step_times'])
            m['cpu_vs_simmim'] = paired_ratio(m['cpu_times'],
                                              base['cpu_times'])
    results['noisemim_shares'] = results['models'][NOISEMIM_NAME].pop(
        'shares', {})
    if args.pipeline_images > 0:
        with tempfile.TemporaryDirectory() as folder:
            results['data_paths'] = data_paths(cfg, args.pipeline_images,
                                               args.device, folder)
        results['pipeline_cpus_per_device'] = cpus_per_device(
            torch.cuda.device_count() if args.device == 'cuda' else 1)
    patch = cfg.model.backbone.patch_size
    results['morphing'] = morphing_cost(args, (img_size // patch)**2)
    return results


def render(results: dict, peak_tflops: Optional[float] = None) -> str:
    """The results as Markdown tables."""
    batch = results['batch_size']
    models = results['models']
    base = models[SIMMIM_NAME]
    peak = (peak_tflops * 1e12 if peak_tflops else peak_bf16_flops(
        results.get('device_name', '')))
    columns = ['model', 'step s (median)', 'images/s',
               'step time vs SimMIM-style (median of paired rounds)',
               'paired ratio IQR', 'paired ratio min-max',
               'CPU-time ratio (paired median)', 'page faults/step (median)',
               'first step s',
               'peak MiB', 'model MiB', 'memory vs SimMIM-style']
    measured = [m for m in models.values() if 'error' not in m]
    cuda = any('reserved' in m['memory'] for m in measured)
    if cuda:
        columns.insert(columns.index('model MiB'), 'reserved MiB')
    if any('flops' in m for m in measured):
        columns += ['TFLOP/s', 'MFU (bf16 peak)',
                    'MFU without disruption FLOPs']
    rows = []
    for name, m in models.items():
        if 'error' in m:
            rows.append({'model': name,
                         'step s (median)': f"FAILED: {m['error']}"})
            continue
        ratio = m.get('vs_simmim')
        first = (m.get('warmup_times') or m['step_times'])[0]
        row = {
            'model': name,
            'step s (median)': f"{m['median']:.3f}",
            'images/s': f"{batch / m['median']:.2f}",
            'step time vs SimMIM-style (median of paired rounds)':
            f"{ratio['median']:.3f}" if ratio else '',
            'paired ratio IQR':
            f"{ratio['q1']:.3f}-{ratio['q3']:.3f}" if ratio else '',
            'paired ratio min-max':
            f"{ratio['min']:.3f}-{ratio['max']:.3f}" if ratio else '',
            'CPU-time ratio (paired median)':
            f"{m['cpu_vs_simmim']['median']:.3f}"
            if 'cpu_vs_simmim' in m else '',
            'page faults/step (median)':
            f"{statistics.median(m['page_faults']):.0f}"
            if m.get('page_faults') else '',
            'first step s': f'{first:.1f}',
            'peak MiB': f"{m['memory']['peak']:.0f}",
            'model MiB': f"{m['memory']['model']:.0f}",
            'memory vs SimMIM-style':
            f"{m['memory']['model'] / base['memory']['model']:.3f}"
            if 'error' not in base else '',
        }
        if cuda:
            row['reserved MiB'] = f"{m['memory']['reserved']:.0f}"
        if 'flops' in m:
            flops = m['flops']
            rate = flops['total'] / m['median']
            useful = flops['without_disruption'] / m['median']
            row['TFLOP/s'] = f'{rate / 1e12:.1f}'
            row['MFU (bf16 peak)'] = f'{rate / peak:.1%}' if peak else 'n/a'
            row['MFU without disruption FLOPs'] = (f'{useful / peak:.1%}'
                                                   if peak else 'n/a')
        rows.append(row)
    out = [format_table(columns, rows)]
    shares = results['noisemim_shares']
    out.append(format_table(
        ['part of the NoiseMIM step (forward + backward)', 'share'],
        [{'part of the NoiseMIM step (forward + backward)': name,
          'share': f'{share:.2%}'} for name, share in shares.items()]))
    step = models[NOISEMIM_NAME]
    model_rate = batch / step['median'] if 'median' in step else None
    if 'data_paths' in results:
        cpus = results.get('pipeline_cpus_per_device')
        side = ('device side (GPU)' if results['device'] == 'cuda' else
                'device side (CPU decode: a stand-in, not a GPU rate)')
        columns = ['data path (one worker per core)', 'files',
                   'one worker, images/s', side,
                   f'input-bound? (cores per device: {cpus or "unknown"})']
        rows = []
        for p in results['data_paths']:
            rows.append({
                columns[0]: f"{p['path']}, num_workers={p['num_workers']}",
                columns[1]: p['files'],
                columns[2]: f"{p['per_worker']:.1f}",
                columns[3]: (f"{p['device_side']:.1f}"
                             if p['device_side'] is not None else ''),
                columns[4]: feed_estimate(
                    p['per_worker'], p['num_workers'], model_rate,
                    cpus).verdict() if model_rate else ''})
        rows.append({columns[0]: 'NoiseMIM training step (for comparison)',
                     columns[3]: f'{model_rate:.2f}' if model_rate else ''})
        out.append(format_table(columns, rows))
    morphing = results.get('morphing')
    if morphing is None:
        out.append('token morphing: noisemim.models.morphing.'
                   'benchmark_morphing is not available')
    else:
        ms = morphing['ms_per_call']
        step_ms = batch / model_rate * 1e3 if model_rate else None
        out.append(format_table(
            ['token morphing (DTM, per loss draw)', 'ms', 'vs NoiseMIM step'],
            [{'token morphing (DTM, per loss draw)':
              f"{morphing['batch_size']} x {morphing['num_tokens']} tokens x "
              f"{morphing['channels']} ch (mean of {morphing['repeats']})",
              'ms': f'{ms:.1f}',
              'vs NoiseMIM step': f'{ms / step_ms:.1%}' if step_ms else ''}]))
    return '\n\n'.join(out)


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    results = run(args)
    print(f"{results['config']}: batch {results['batch_size']}, "
          f"{results['img_size']} px, {results['device']}"
          f"{', amp ' + results['amp'] if results['amp'] != 'none' else ''}"
          f", {results['warmup']} warm-up + {results['repeats']} timed rounds"
          f" ({results['schedule']}, malloc {results['malloc']})")
    print(render(results, args.peak_tflops))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(results, f, indent=2, default=str)


if __name__ == '__main__':
    main()
