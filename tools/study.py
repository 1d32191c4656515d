"""The corruption design-space study: pre-train cells, probe frozen features.

A protocol (``configs/pretrain/study/protocols/``) names the cells, the
budget, the pre-training data and the probe data. Each cell (a config of
``configs/pretrain/study/``) is pre-trained through the mmengine Runner once
per seed; its frozen ViT then embeds the probe's train and val splits (any
mmpretrain classification dataset), scored by cosine k-NN and a linear probe,
and the paper's analyses (head diversity, feature spectrum) are measured per
block. Writes ``study.md`` (mean ± std over seeds), ``study.png``,
``study_analyses.png`` and ``study.json`` to the work dir (``--from-json``
writes them for saved studies without training). Example::

    python tools/study.py --protocol photo_crops --principles \\
        --work-dir work_dirs/study
"""
import argparse
import gc
import json
import logging
import os
import os.path as osp
import platform
import shlex
import sys
import time
from functools import partial
from typing import Dict, List, Optional, Sequence

import torch
from mmengine.config import Config, DictAction
from mmengine.logging import MMLogger
from mmengine.registry import init_default_scope
from mmengine.runner import Runner, set_random_seed
from tqdm import tqdm

import noisemim  # noqa: F401  (registers noisemim's modules)
from noisemim.study import (FormattedOnceConfig, ProbeCurveHook, ProbeSet,
                            analyze_cell, apply_protocol, cell_loss_gradients,
                            extract_features,
                            load_protocol, plot_analyses, plot_curves,
                            plot_summaries, probe_features, set_budget,
                            summarize, write_markdown)

STUDY_DIR = osp.join(
    osp.dirname(osp.dirname(osp.abspath(__file__))), 'configs', 'pretrain',
    'study')
PROTOCOL_DIR = osp.join(STUDY_DIR, 'protocols')
DEFAULT_PROTOCOL = 'photo_crops'
RANDOM_INIT = 'random_init'


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--protocol',
        default=DEFAULT_PROTOCOL,
        help='protocol name in configs/pretrain/study/protocols/ (or a path)')
    parser.add_argument(
        '--cells',
        nargs='+',
        help='config names in configs/pretrain/study/ (or config paths); '
        "default: the protocol's cells")
    parser.add_argument(
        '--principles',
        action='store_true',
        help="add the protocol's principle_cells (paper A's ablations)")
    parser.add_argument(
        '--iters', type=int, help='pre-training iterations per run')
    parser.add_argument(
        '--seeds', type=int, nargs='+', help='one pre-training run per seed')
    parser.add_argument(
        '--random-init',
        action=argparse.BooleanOptionalAction,
        default=None,
        help='add a row for the untrained encoder of the first cell')
    parser.add_argument(
        '--knn-k', type=int, help='neighbours of the k-NN probe')
    parser.add_argument(
        '--probe-blocks',
        type=int,
        nargs='*',
        help='also probe these blocks (0-based) besides the final norm')
    parser.add_argument(
        '--probe-every',
        type=int,
        help='also probe every N pre-training iterations (a learning curve '
        'per run, in study.json and study_curves.png)')
    parser.add_argument(
        '--from-json',
        nargs='+',
        metavar='STUDY_JSON',
        help='train nothing: write the report of these study.json files '
        '(e.g. of studies run in parallel) to --work-dir, as one table')
    parser.add_argument(
        '--threads',
        type=int,
        default=1,
        help='torch threads (1 is fastest for these tiny models on a shared '
        'CPU)')
    parser.add_argument(
        '--work-dir', default='work_dirs/study', help='where to write')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='overrides applied to every cell, key=value')
    parser.add_argument(
        '--protocol-options',
        nargs='+',
        action=DictAction,
        help='overrides of the protocol, key=value (e.g. '
        'probe.val.num_per_class=8)')
    return parser.parse_args(argv)


def find_config(name: str, folder: str, what: str) -> str:
    """The path of a config given by name (in ``folder``) or path."""
    path = name if name.endswith('.py') else osp.join(folder, name + '.py')
    if not osp.isfile(path):
        known = sorted(f[:-3] for f in os.listdir(folder) if f.endswith('.py'))
        raise FileNotFoundError(f'Unknown {what} {name!r}: no {path}. '
                                f'Known: {", ".join(known)}')
    return path


def cell_config(cell: str) -> str:
    """The config path of a cell name (or the path itself)."""
    return find_config(cell, STUDY_DIR, 'study cell')


def load_cell(cell: str, protocol: Config,
              args: argparse.Namespace) -> Config:
    """The cell's config with the protocol's and the command's overrides."""
    cfg = Config.fromfile(cell_config(cell))
    apply_protocol(cfg, protocol)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    cfg.log_level = 'WARNING'
    return cfg


def pretrain(cfg: Config,
             cell: str,
             seed: int,
             iters: int,
             work_dir: str,
             curve: Optional[ProbeCurveHook] = None) -> Dict:
    """Pre-train one cell with one seed through the mmengine Runner.

    ``curve``, if given, is registered on the Runner (probes during
    training).

    Returns:
        dict: ``model`` (the trained model), ``loss`` (mean of the last 10
        iterations), ``seconds`` and ``cpu_seconds`` (wall and CPU time of
        ``runner.train()``).
    """
    set_budget(cfg, iters)
    cfg.randomness = dict(seed=seed, diff_rank_seed=True)
    cfg.work_dir = osp.join(work_dir, 'runs', cell, f'seed{seed}')
    cfg.experiment_name = f'{cell}_seed{seed}'
    cfg.launcher = 'none'
    runner = Runner.from_cfg(FormattedOnceConfig.freeze(cfg))
    if curve is not None:
        runner.register_hook(curve)
    start, cpu_start = time.time(), time.process_time()
    runner.train()
    seconds = time.time() - start
    loss = float(runner.message_hub.get_scalar('train/loss').mean(10))
    return dict(model=runner.model, loss=loss, seconds=seconds,
                cpu_seconds=time.process_time() - cpu_start)


def random_init(cfg: Config, seed: int) -> Dict:
    """The untrained model of a config (initialised as training would)."""
    from mmpretrain.registry import MODELS
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    set_random_seed(seed)
    model_cfg = cfg.model.copy()
    # As the Runner does: the top-level data_preprocessor is the model's.
    model_cfg.setdefault('data_preprocessor', cfg.get('data_preprocessor'))
    model = MODELS.build(model_cfg)
    model.init_weights()
    if torch.cuda.is_available():
        model = model.cuda()
    return dict(model=model, loss=float('nan'), seconds=0., cpu_seconds=0.)


def machine() -> str:
    """A one-line description of this machine."""
    cpu = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            names = [ln.split(':', 1)[1].strip() for ln in f
                     if ln.startswith('model name')]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    gpu = (torch.cuda.get_device_name() if torch.cuda.is_available() else
           'no GPU used')
    load = ', '.join(f'{x:.1f}' for x in os.getloadavg())
    return (f'{cpu}, {os.cpu_count()} CPU cores, {gpu}; torch '
            f'{torch.__version__} with {torch.get_num_threads()} thread(s); '
            f'load average at the end {load}')


def probe_run(model: torch.nn.Module,
              probe_sets: Dict[str, ProbeSet],
              protocol: Config,
              seed: int,
              analyses: bool = True) -> Dict:
    """Probe one trained (or untrained) model and analyse it."""
    probe = protocol.probe
    train_x, train_y = extract_features(model, probe_sets['train'],
                                        probe.blocks)
    val_x, val_y = extract_features(model, probe_sets['val'], probe.blocks)
    results = {
        name: probe_features(
            train_x[name], train_y, val_x[name], val_y, seed=seed,
            k=probe.knn_k).__dict__
        for name in train_x
    }
    final = results.pop('final')
    out = dict(knn=final['knn'], linear=final['linear'], blocks=results)
    if analyses and protocol.analysis_images:
        images = probe_sets['val'].spread(protocol.analysis_images)
        out['analyses'] = analyze_cell(model, images)
        out['analyses']['loss_grad'] = cell_loss_gradients(
            model, images, seed=seed)
    return out


def write_reports(runs: List[Dict], work_dir: str, header: str,
                  title: str) -> str:
    """Write ``study.md``, ``study.png``, ``study_analyses.png`` and (for
    runs with a learning curve) ``study_curves.png``; return the Markdown."""
    summaries = summarize(runs)
    floor = RANDOM_INIT if any(r['cell'] == RANDOM_INIT for r in runs) else None
    md = write_markdown(summaries, osp.join(work_dir, 'study.md'), header,
                        floor)
    plot_summaries(summaries, osp.join(work_dir, 'study.png'), title)
    plot_analyses(summaries, osp.join(work_dir, 'study_analyses.png'), title)
    plot_curves(runs, osp.join(work_dir, 'study_curves.png'), title)
    return md


def report_from_json(paths: Sequence[str], work_dir: str) -> List[Dict]:
    """One report of several ``study.json`` files (no training); a file
    merged before (with its ``sources``) is taken as its sources' runs.

    Raises:
        ValueError: If a cell and seed appear in more than one file.
    """
    studies, sources = [], []
    for path in paths:
        with open(path) as f:
            study = json.load(f)
        studies.append(study)
        sources += study.get('sources', [study])
    runs, seen = [], {}
    for path, study in zip(paths, studies):
        for run in study['runs']:
            key = (run['cell'], run['seed'])
            if key in seen:
                raise ValueError(f'cell {key[0]} seed {key[1]} is in both '
                                 f'{seen[key]} and {path}')
            seen[key] = path
            runs.append(run)
    lines = [f'Merged from {len(sources)} studies:']
    for study in sources:
        lines.append(
            f'- `{study["command"]}` ({study["wall_s"] / 60:.1f} min wall, '
            f'{study["cpu_s"] / 60:.1f} min CPU; protocol '
            f'`{study["protocol"]}`, {study["iters"]} iterations, seeds '
            f'{study["seeds"]}). Machine: {study["machine"]}.')
    os.makedirs(work_dir, exist_ok=True)
    md = write_reports(
        runs, work_dir, '\n'.join(lines),
        f'protocol {sources[0]["protocol"]}, {sources[0]["iters"]} '
        f'iterations, seeds {sources[0]["seeds"]} (mean ± std over seeds)')
    with open(osp.join(work_dir, 'study.json'), 'w') as f:
        json.dump(dict(sources=[{k: v for k, v in s.items() if k != 'runs'}
                                for s in sources], runs=runs), f, indent=1)
    print(md)
    return runs


def main(argv: Optional[Sequence[str]] = None) -> List[Dict]:
    args = parse_args(argv)
    if args.from_json:
        return report_from_json(args.from_json, args.work_dir)
    protocol = load_protocol(
        find_config(args.protocol, PROTOCOL_DIR, 'study protocol'),
        args.protocol_options)
    cells = list(args.cells or protocol.cells)
    if args.principles:
        cells += [c for c in protocol.principle_cells if c not in cells]
    if not cells:
        raise ValueError('no cells: give --cells or a protocol with cells')
    iters = args.iters or protocol.iters
    seeds = args.seeds or protocol.seeds
    use_random_init = (protocol.random_init
                       if args.random_init is None else args.random_init)
    if args.knn_k is not None:
        protocol.probe.knn_k = args.knn_k
    if args.probe_blocks is not None:
        protocol.probe.blocks = args.probe_blocks

    torch.set_num_threads(args.threads)
    MMLogger.get_instance('mmengine').setLevel(logging.WARNING)
    os.makedirs(args.work_dir, exist_ok=True)
    configs = {cell: load_cell(cell, protocol, args) for cell in cells}
    init_default_scope('mmpretrain')
    probe_sets = {
        split: ProbeSet(
            protocol.probe[split],
            batch_size=protocol.probe.batch_size,
            num_workers=protocol.probe.num_workers,
            cache=protocol.probe.cache)
        for split in ('train', 'val')
    }
    img_size = probe_sets['val'].image_size
    for cell, cfg in configs.items():
        size = cfg.model.backbone.get('img_size')
        size = (size, size) if isinstance(size, int) else tuple(size or ())
        for split, probe_set in probe_sets.items():
            if size and size != probe_set.image_size:
                got = probe_set.image_size
                raise ValueError(
                    f'the probe {split} images are {got[0]}x{got[1]} but '
                    f'cell {cell} takes {size[0]}x{size[1]}; make the probe '
                    "pipeline resize to the cells' img_size")

    jobs = [(cell, seed) for cell in cells for seed in seeds]
    if use_random_init:
        jobs = [(RANDOM_INIT, seed) for seed in seeds] + jobs
    runs = []
    start, cpu_start = time.time(), time.process_time()
    for cell, seed in tqdm(jobs, desc='study', unit='run', dynamic_ncols=True):
        if cell == RANDOM_INIT:
            cfg = configs[cells[0]]
            trained = random_init(cfg, seed)
            method = f'untrained encoder of {cells[0]}'
        else:
            cfg = load_cell(cell, protocol, args)
            method = cfg.get('study_method', cfg.model.type)
            curve = None
            if args.probe_every:
                curve = ProbeCurveHook(
                    args.probe_every,
                    partial(
                        probe_run,
                        probe_sets=probe_sets,
                        protocol=protocol,
                        seed=seed,
                        analyses=False))
            trained = pretrain(cfg, cell, seed, iters, args.work_dir, curve)
            if curve is not None:
                trained['curve'] = curve.curve
        result = probe_run(trained['model'], probe_sets, protocol, seed)
        if 'curve' in trained:
            result['curve'] = trained['curve']
        runs.append(
            dict(
                cell=cell,
                method=method,
                seed=seed,
                loss=trained['loss'],
                seconds=trained['seconds'],
                cpu_seconds=trained['cpu_seconds'],
                **result))
        del trained
        gc.collect()
        # Keep what is done so far, should the study be stopped.
        with open(osp.join(args.work_dir, 'study.partial.json'), 'w') as f:
            json.dump(runs, f)
    wall = time.time() - start
    cpu = time.process_time() - cpu_start

    command = 'python tools/study.py ' + ' '.join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    where = machine()
    probe = protocol.probe
    header = (
        f'Command: `{command}`\n\n'
        f'Machine: {where}. Total wall time {wall / 60:.1f} min '
        f'(CPU time of the process {cpu / 60:.1f} min).\n\n'
        f'Protocol `{args.protocol}`: {protocol.description} '
        f'Pre-training: {iters} iterations per run; seeds {seeds}. Probe: '
        f'{len(probe_sets["train"])} training and {len(probe_sets["val"])} '
        f'validation images at {img_size[0]} px; cosine {probe.knn_k}-NN '
        'and logistic regression on standardised mean-pooled final-norm '
        'patch tokens.')
    title = (f'protocol {args.protocol}, {iters} iterations, seeds {seeds} '
             '(mean ± std over seeds)')
    md = write_reports(runs, args.work_dir, header, title)
    with open(osp.join(args.work_dir, 'study.json'), 'w') as f:
        json.dump(
            dict(
                command=command,
                machine=where,
                wall_s=wall,
                cpu_s=cpu,
                protocol=args.protocol,
                iters=iters,
                seeds=seeds,
                runs=runs),
            f,
            indent=1)
    print(md)
    return runs


if __name__ == '__main__':
    main()
