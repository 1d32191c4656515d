"""The corruption design-space study: pre-train cells, probe frozen features.

Each chosen cell (a config of ``configs/pretrain/study/``) is pre-trained for a
fixed number of iterations on scikit-image's photographs through the mmengine
Runner, once per seed; its frozen ViT then embeds scikit-learn's handwritten
digits (resized to the model's input, 3 channels), scored by k-NN and by a
linear probe on a held-out half. Writes ``study.md`` (mean ± std over seeds),
``study.png`` and ``study.json`` to the work dir. Example::

    python tools/study.py --cells maskonly_decoder maskonly_encoder \\
        conjunctive_encoder_feature_l2 substitutive_decoder_pixel \\
        --iters 200 --seeds 0 1 2 --work-dir work_dirs/study
"""
import argparse
import json
import logging
import os
import os.path as osp
import platform
import shlex
import sys
import time
from typing import Dict, List, Optional, Sequence

import torch
from mmengine.config import Config, DictAction
from mmengine.logging import MMLogger
from mmengine.registry import init_default_scope
from mmengine.runner import Runner, set_random_seed
from tqdm import tqdm

import noisemim  # noqa: F401  (registers noisemim's modules)
from noisemim.study import (FormattedOnceConfig, extract_features,
                            load_digit_images, plot_summaries, probe_features,
                            set_budget, summarize, write_markdown)

STUDY_DIR = osp.join(
    osp.dirname(osp.dirname(osp.abspath(__file__))), 'configs', 'pretrain',
    'study')
DEFAULT_CELLS = ('maskonly_decoder', 'maskonly_encoder',
                 'conjunctive_encoder_feature_l2',
                 'substitutive_decoder_pixel')
RANDOM_INIT = 'random_init'


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--cells',
        nargs='+',
        default=list(DEFAULT_CELLS),
        help='config names in configs/pretrain/study/ (or config paths)')
    parser.add_argument(
        '--iters', type=int, default=200, help='pre-training iterations')
    parser.add_argument(
        '--seeds', type=int, nargs='+', default=[0, 1, 2],
        help='one pre-training run and one digits split per seed')
    parser.add_argument(
        '--random-init',
        action='store_true',
        help='add a row for the untrained encoder of the first cell')
    parser.add_argument(
        '--num-digits',
        type=int,
        default=None,
        help='use the first N digits only (default: all 1,797)')
    parser.add_argument(
        '--knn-k', type=int, default=10, help='neighbours of the k-NN probe')
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
    return parser.parse_args(argv)


def cell_config(cell: str) -> str:
    """The config path of a cell name (or the path itself)."""
    path = cell if cell.endswith('.py') else osp.join(STUDY_DIR, cell + '.py')
    if not osp.isfile(path):
        known = sorted(
            f[:-3] for f in os.listdir(STUDY_DIR) if f.endswith('.py'))
        raise FileNotFoundError(f'Unknown study cell {cell!r}: no {path}. '
                                f'Known cells: {", ".join(known)}')
    return path


def load_cell(cell: str, args: argparse.Namespace) -> Config:
    """The cell's config with the study's overrides."""
    cfg = Config.fromfile(cell_config(cell))
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    cfg.log_level = 'WARNING'
    return cfg


def pretrain(cfg: Config, cell: str, seed: int, iters: int,
             work_dir: str) -> Dict:
    """Pre-train one cell with one seed through the mmengine Runner.

    Returns:
        dict: ``model`` (the trained model), ``loss`` (mean of the last 10
        iterations) and ``seconds`` (wall time of ``runner.train()``).
    """
    set_budget(cfg, iters)
    cfg.randomness = dict(seed=seed, diff_rank_seed=True)
    cfg.work_dir = osp.join(work_dir, 'runs', cell, f'seed{seed}')
    cfg.experiment_name = f'{cell}_seed{seed}'
    cfg.launcher = 'none'
    runner = Runner.from_cfg(FormattedOnceConfig.freeze(cfg))
    start = time.time()
    runner.train()
    seconds = time.time() - start
    loss = float(runner.message_hub.get_scalar('train/loss').mean(10))
    return dict(model=runner.model, loss=loss, seconds=seconds)


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
    return dict(model=model, loss=float('nan'), seconds=0.)


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
    load = ', '.join(f'{x:.1f}' for x in os.getloadavg())
    return (f'{cpu}, {os.cpu_count()} CPU cores, no GPU used; torch '
            f'{torch.__version__} with {torch.get_num_threads()} thread(s); '
            f'load average at the end {load}')


def main(argv: Optional[Sequence[str]] = None) -> List[Dict]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    MMLogger.get_instance('mmengine').setLevel(logging.WARNING)
    os.makedirs(args.work_dir, exist_ok=True)
    configs = {cell: load_cell(cell, args) for cell in args.cells}
    img_size = configs[args.cells[0]].model.backbone.img_size
    images, labels = load_digit_images(img_size, args.num_digits)

    jobs = [(cell, seed) for cell in args.cells for seed in args.seeds]
    if args.random_init:
        jobs = [(RANDOM_INIT, seed) for seed in args.seeds] + jobs
    runs = []
    start = time.time()
    for cell, seed in tqdm(jobs, desc='study', unit='run', dynamic_ncols=True):
        if cell == RANDOM_INIT:
            cfg = load_cell(args.cells[0], args)
            trained = random_init(cfg, seed)
            method = f'untrained encoder of {args.cells[0]}'
        else:
            cfg = load_cell(cell, args)
            method = cfg.get('study_method', cfg.model.type)
            trained = pretrain(cfg, cell, seed, args.iters, args.work_dir)
        if cfg.model.backbone.img_size != img_size:
            raise ValueError(f'All cells must share one input size; {cell} '
                             f'has {cfg.model.backbone.img_size}, the first '
                             f'{img_size}.')
        features = extract_features(trained['model'], images)
        result = probe_features(features, labels, seed, k=args.knn_k)
        runs.append(
            dict(
                cell=cell,
                method=method,
                seed=seed,
                knn=result.knn,
                linear=result.linear,
                loss=trained['loss'],
                seconds=trained['seconds']))
    wall = time.time() - start

    command = 'python tools/study.py ' + ' '.join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    where = machine()
    header = (
        f'Command: `{command}`\n\n'
        f'Machine: {where}. Total wall time {wall / 60:.1f} min.\n\n'
        f'Pre-training: {args.iters} iterations on scikit-image\'s '
        f'photographs per run; seeds {args.seeds}. Probe: {len(labels)} '
        f'digits at {img_size} px, stratified 50/50 split per seed, cosine '
        f'{args.knn_k}-NN and logistic regression on standardised '
        'mean-pooled final patch tokens.')
    summaries = summarize(runs)
    md = write_markdown(summaries, osp.join(args.work_dir, 'study.md'), header)
    plot_summaries(
        summaries, osp.join(args.work_dir, 'study.png'),
        f'{args.iters} iterations, seeds {args.seeds}, '
        f'{len(labels)} digits (mean ± std over seeds)')
    with open(osp.join(args.work_dir, 'study.json'), 'w') as f:
        json.dump(dict(command=command, machine=where, wall_s=wall,
                       runs=runs), f, indent=1)
    print(md)
    return runs


if __name__ == '__main__':
    main()
