"""Gradient norm of each loss term in each block of a pre-training model.

Builds the model of a config (untrained, or with a checkpoint's weights),
takes batches of images, back-propagates every loss term of the model's
``loss`` on its own and reports the norm of its gradient over the parameters
of the stem, each block, the final norm and the heads. Example::

    python tools/analysis/loss_gradients.py \\
        configs/pretrain/study/conjunctive_encoder_feature_l2.py \\
        --checkpoint work_dirs/x/iter_1200.pth --out-dir work_dirs/grads

Writes ``loss_gradients.csv`` (term, group, norm) and
``loss_gradients.json``, and prints the table.
"""
import argparse
from typing import Dict

import torch
from mmengine.config import Config, DictAction
from mmengine.registry import init_default_scope

import noisemim  # noqa: F401  (registers noisemim's modules)
from noisemim.analysis import image_batches, image_paths, load_model
from noisemim.analysis.cli import output_path, write_csv, write_json
from noisemim.analysis.loss_gradients import measure_loss_gradients


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config', help='the model config')
    parser.add_argument(
        '--checkpoint', help='weights to load (default: the untrained model)')
    parser.add_argument(
        '--images',
        help='a folder of images; default: the photographs that ship with '
        'scikit-image')
    parser.add_argument(
        '--num-images', type=int, help='the first N images (default: all)')
    parser.add_argument('--batch-size', type=int, default=8)
    parser.add_argument(
        '--seed',
        type=int,
        default=0,
        help='seeds the initialisation and the corruption of the batches')
    parser.add_argument('--device', default='cpu', help='e.g. cpu or cuda')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='config overrides, key=value')
    parser.add_argument('--out-dir', default='work_dirs/analysis')
    return parser.parse_args(argv)


def build_model(args: argparse.Namespace) -> torch.nn.Module:
    """The config's model, with the checkpoint's weights if one is given."""
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    if args.checkpoint:
        return load_model(args.checkpoint, cfg, args.device)[0]
    from mmpretrain.registry import MODELS
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    torch.manual_seed(args.seed)
    model_cfg = cfg.model.copy()
    if cfg.get('data_preprocessor') is not None:  # as mmengine's Runner does
        model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor)
    model = MODELS.build(model_cfg)
    model.init_weights()
    return model.to(args.device)


def format_table(norms: Dict[str, Dict[str, float]]) -> str:
    """A Markdown table: one row per term, one column per group."""
    groups = list(next(iter(norms.values())))
    lines = ['| term | ' + ' | '.join(groups) + ' |',
             '| --- |' + ' --- |' * len(groups)]
    for term, row in norms.items():
        lines.append(f'| {term} | ' +
                     ' | '.join(f'{row[g]:.3g}' for g in groups) + ' |')
    return '\n'.join(lines)


def main(argv=None) -> Dict[str, Dict[str, float]]:
    args = parse_args(argv)
    model = build_model(args)
    paths = image_paths(args.images, args.num_images)
    batches = image_batches(model, paths, args.batch_size, 'loss gradients')
    norms = measure_loss_gradients(model, batches, seed=args.seed)
    rows = [(term, group, f'{norm:.6g}') for term, row in norms.items()
            for group, norm in row.items()]
    write_csv(
        output_path(args.out_dir, 'loss_gradients.csv'),
        ('term', 'group', 'grad_norm'), rows)
    write_json(
        output_path(args.out_dir, 'loss_gradients.json'),
        dict(
            config=args.config,
            checkpoint=args.checkpoint,
            images=len(paths),
            batch_size=args.batch_size,
            seed=args.seed,
            grad_norm=norms))
    print(format_table(norms))
    print(f'wrote loss_gradients.csv/.json to {args.out_dir} '
          f'({len(paths)} images)')
    return norms


if __name__ == '__main__':
    main()
