"""Side-by-side pre-training benchmark: NoiseMIM, a SimMIM-style ViT and MAE.

Times full training steps (data preprocessor, forward, backward, optimizer
step) of the three models at the NoiseMIM config's architecture, batch and
resolution, in one run: each model in its own process, stepped in turn
(round-robin) so that the load of a shared machine hits them alike; the first
``--warmup`` rounds are dropped and the median of ``--repeats`` is reported.
Also reports the share of a NoiseMIM step in corruption sampling, noise
injection and the disruption loss (torch.profiler), the data pipeline's
images/s, and on CUDA the model FLOP utilisation against the bf16 peak.

Examples::

    python tools/benchmark.py                       # ViT-B/16, 224 px, CPU
    python tools/benchmark.py --device cuda --amp bf16 --batch-size 128
"""
import argparse
import json
import statistics
import sys
from contextlib import ExitStack
from typing import Dict, List, Optional

import torch
from mmengine.config import Config, DictAction

import noisemim  # noqa: F401  (registers noisemim's modules)
from noisemim.benchmark import (NOISEMIM_NAME, SIMMIM_NAME, Worker,
                                WorkerSpec, benchmark_models, format_table,
                                peak_bf16_flops, pipeline_throughput)
from noisemim.benchmark.pipeline import cpus_per_device, feed_estimate

RANGES = ('noisemim.sample_corruption', 'noisemim.noise_injection',
          'noisemim.disruption_loss')
AMP_DTYPES = dict(bf16='bfloat16', fp16='float16')


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument(
        '--config', default='configs/pretrain/noisemim_vit-b.py',
        help='NoiseMIM pre-training config (sets the architecture)')
    parser.add_argument('--batch-size', type=int, default=8)
    parser.add_argument('--warmup', type=int, default=2,
                        help='rounds of steps not timed')
    parser.add_argument('--repeats', type=int, default=5,
                        help='timed rounds (the median is reported)')
    parser.add_argument('--device', choices=['cpu', 'cuda'], default='cpu')
    parser.add_argument('--amp', choices=['none', *AMP_DTYPES],
                        default='none', help='mixed precision (CUDA only)')
    parser.add_argument('--threads', type=int, default=0,
                        help='torch threads per model process (0: default)')
    parser.add_argument('--profile-steps', type=int, default=1,
                        help='NoiseMIM steps profiled for the step breakdown')
    parser.add_argument('--pipeline-images', type=int, default=64,
                        help='images through the data pipeline (0: skip)')
    parser.add_argument('--peak-tflops', type=float,
                        help='bf16 peak of the device, if not in the table')
    parser.add_argument('--json', help='also write the results here')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings of the NoiseMIM config')
    parser.add_argument(
        '--mae-neck', nargs='+', action=DictAction,
        help="override MAE's decoder (default: mmpretrain's, 8 x 512-d), "
        'e.g. decoder_embed_dim=32 decoder_depth=1 decoder_num_heads=2')
    args = parser.parse_args(argv)
    if args.amp != 'none' and args.device != 'cuda':
        parser.error('--amp needs --device cuda (mmengine AMP is CUDA-only)')
    if args.repeats < 1 or args.warmup < 0:
        parser.error('--repeats must be >= 1 and --warmup >= 0')
    return args


def optim_wrapper_cfg(cfg: Config, amp: str) -> dict:
    """The config's optimizer, in ``OptimWrapper`` or ``AmpOptimWrapper``."""
    wrapper = dict(type='OptimWrapper',
                   optimizer=cfg.optim_wrapper.optimizer.to_dict())
    if 'paramwise_cfg' in cfg.optim_wrapper:
        wrapper['paramwise_cfg'] = cfg.optim_wrapper.paramwise_cfg.to_dict()
    if amp != 'none':
        wrapper.update(type='AmpOptimWrapper', dtype=AMP_DTYPES[amp],
                       loss_scale='dynamic')
    return wrapper


def time_side_by_side(workers: List[Worker], warmup: int,
                      repeats: int) -> Dict[str, List[float]]:
    """Round-robin steps; each round starts with the next model.

    Returns:
        Dict[str, List[float]]: The timed step seconds of each model.
    """
    times = {w.name: [] for w in workers}
    for r in range(warmup + repeats):
        for i in range(len(workers)):
            worker = workers[(r + i) % len(workers)]
            seconds = worker.call('step')
            if r >= warmup:
                times[worker.name].append(seconds)
            print(f'round {r + 1}/{warmup + repeats} {worker.name}: '
                  f'{seconds:.3f} s', file=sys.stderr, flush=True)
    return times


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


def run(args: argparse.Namespace) -> dict:
    """Run the benchmark; returns everything it measured."""
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    img_size = cfg.model.backbone.img_size
    wrapper = optim_wrapper_cfg(cfg, args.amp)
    results = dict(config=args.config, batch_size=args.batch_size,
                   img_size=img_size, device=args.device, amp=args.amp,
                   warmup=args.warmup, repeats=args.repeats,
                   mae_neck=args.mae_neck, models={})
    if args.device == 'cuda':
        results['device_name'] = torch.cuda.get_device_name()
    with ExitStack() as stack:
        workers = [
            stack.enter_context(
                Worker(
                    WorkerSpec(name, spec.model, wrapper, args.batch_size,
                               img_size, args.device, args.threads,
                               mask_generator=spec.mask_generator)))
            for name, spec in benchmark_models(cfg, args.mae_neck).items()
        ]
        times = time_side_by_side(workers, args.warmup, args.repeats)
        for w in workers:
            results['models'][w.name] = dict(
                step_times=times[w.name],
                median=statistics.median(times[w.name]),
                memory=w.call('memory'))
        noisemim_worker = workers[0]
        results['noisemim_shares'] = noisemim_worker.call(
            'shares', RANGES, args.profile_steps)
        if args.device == 'cuda':  # CPU attention is not counted there
            for w in workers:
                results['models'][w.name]['flops'] = w.call('flops')
    if args.pipeline_images > 0:
        results['pipeline_images_per_s'] = pipeline_throughput(
            cfg, args.pipeline_images)
        results['pipeline_workers'] = cfg.train_dataloader.get(
            'num_workers', 0)
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
    columns = ['model', 'step s (median)', 'min-max s', 'images/s',
               'step time vs SimMIM-style', 'peak MiB', 'model MiB',
               'memory vs SimMIM-style']
    if 'flops' in base:
        columns += ['TFLOP/s', 'MFU (bf16 peak)']
    rows = []
    for name, m in models.items():
        row = {
            'model': name,
            'step s (median)': f"{m['median']:.3f}",
            'min-max s': f"{min(m['step_times']):.3f}-"
                         f"{max(m['step_times']):.3f}",
            'images/s': f"{batch / m['median']:.2f}",
            'step time vs SimMIM-style': f"{m['median'] / base['median']:.3f}",
            'peak MiB': f"{m['memory']['peak']:.0f}",
            'model MiB': f"{m['memory']['model']:.0f}",
            'memory vs SimMIM-style':
            f"{m['memory']['model'] / base['memory']['model']:.3f}",
        }
        if 'flops' in m:
            rate = m['flops'] / m['median']
            row['TFLOP/s'] = f'{rate / 1e12:.1f}'
            row['MFU (bf16 peak)'] = f'{rate / peak:.1%}' if peak else 'n/a'
        rows.append(row)
    out = [format_table(columns, rows)]
    shares = results['noisemim_shares']
    out.append(format_table(
        ['part of the NoiseMIM step (forward + backward)', 'share'],
        [{'part of the NoiseMIM step (forward + backward)': name,
          'share': f'{share:.2%}'} for name, share in shares.items()]))
    if 'pipeline_images_per_s' in results:
        rate = results['pipeline_images_per_s']
        workers = results['pipeline_workers']
        model_rate = batch / models[NOISEMIM_NAME]['median']
        out.append(format_table(
            ['data pipeline (config train_pipeline, EmbeddedPhotos)',
             'images/s'],
            [{'data pipeline (config train_pipeline, EmbeddedPhotos)':
              'one worker process', 'images/s': f'{rate:.1f}'},
             {'data pipeline (config train_pipeline, EmbeddedPhotos)':
              f'config num_workers={workers} (x{workers}, if that many '
              'cores)', 'images/s': f'{rate * max(workers, 1):.1f}'},
             {'data pipeline (config train_pipeline, EmbeddedPhotos)':
              'NoiseMIM training step (for comparison)',
              'images/s': f'{model_rate:.2f}'},
             {'data pipeline (config train_pipeline, EmbeddedPhotos)':
              'input-bound? (cores per device: '
              f"{results.get('pipeline_cpus_per_device', 'unknown')})",
              'images/s': feed_estimate(
                  rate, workers, model_rate,
                  results.get('pipeline_cpus_per_device')).verdict()}]))
    morphing = results.get('morphing')
    if morphing is None:
        out.append('token morphing: noisemim.models.morphing.'
                   'benchmark_morphing is not available')
    else:
        ms = morphing['ms_per_call']
        step_ms = models[NOISEMIM_NAME]['median'] * 1e3
        out.append(format_table(
            ['token morphing (DTM, per loss draw)', 'ms', 'vs NoiseMIM step'],
            [{'token morphing (DTM, per loss draw)':
              f"{morphing['batch_size']} x {morphing['num_tokens']} tokens x "
              f"{morphing['channels']} ch (mean of {morphing['repeats']})",
              'ms': f'{ms:.1f}', 'vs NoiseMIM step': f'{ms / step_ms:.1%}'}]))
    return '\n\n'.join(out)


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    results = run(args)
    print(f"{results['config']}: batch {results['batch_size']}, "
          f"{results['img_size']} px, {results['device']}"
          f"{', amp ' + results['amp'] if results['amp'] != 'none' else ''}"
          f", {results['warmup']} warm-up + {results['repeats']} timed rounds")
    print(render(results, args.peak_tflops))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(results, f, indent=2, default=str)


if __name__ == '__main__':
    main()
