"""The command-line parts the analysis tools share: which models, which
images, where the outputs go."""
import argparse
import csv
import json
import os
import os.path as osp
from typing import Iterable, List, Optional, Sequence, Tuple

from torch import nn

from .checkpoint import load_model


def add_model_args(parser: argparse.ArgumentParser) -> None:
    """Checkpoints, their configs and labels."""
    parser.add_argument('checkpoints', nargs='+', help='checkpoint files')
    parser.add_argument(
        '--config',
        nargs='+',
        help='the config of each checkpoint, or one for all; default: the '
        "config an mmengine Runner stored in the checkpoint (meta['cfg'])")
    parser.add_argument(
        '--labels', nargs='+', help='a name per checkpoint for the figure')
    parser.add_argument('--device', default='cpu', help='e.g. cpu or cuda')


def add_image_args(parser: argparse.ArgumentParser,
                   num_images: Optional[int] = None,
                   out_dir: str = 'work_dirs/analysis') -> None:
    """The images and the output folder."""
    parser.add_argument(
        '--images',
        help='a folder of images; default: the photographs that ship with '
        'scikit-image')
    parser.add_argument(
        '--num-images',
        type=int,
        default=num_images,
        help='use the first N images (sorted by name); default: '
        f'{num_images or "all"}')
    parser.add_argument('--batch-size', type=int, default=8)
    parser.add_argument(
        '--out-dir', default=out_dir, help=f'default: {out_dir}')


def model_labels(checkpoints: Sequence[str],
                 labels: Optional[Sequence[str]]) -> List[str]:
    """The given labels, or ``<folder>/<file stem>`` of each checkpoint."""
    if labels is None:
        return [
            f'{osp.basename(osp.dirname(osp.abspath(c)))}/'
            f'{osp.splitext(osp.basename(c))[0]}' for c in checkpoints
        ]
    if len(labels) != len(checkpoints):
        raise ValueError(f'{len(labels)} --labels for {len(checkpoints)} '
                         'checkpoints; give one per checkpoint')
    return list(labels)


def load_models(args: argparse.Namespace) -> List[Tuple[str, nn.Module]]:
    """Load every checkpoint of the command line with its config.

    Args:
        args (argparse.Namespace): With ``checkpoints``, ``config``,
            ``labels`` and ``device``.

    Returns:
        List[Tuple[str, nn.Module]]: ``(label, model)`` pairs.
    """
    checkpoints = args.checkpoints
    configs = args.config or [None]
    if len(configs) == 1:
        configs = configs * len(checkpoints)
    if len(configs) != len(checkpoints):
        raise ValueError(f'{len(configs)} --config for {len(checkpoints)} '
                         'checkpoints; give one for all or one per checkpoint')
    labels = model_labels(checkpoints, args.labels)
    return [(label, load_model(ckpt, cfg, args.device)[0])
            for label, ckpt, cfg in zip(labels, checkpoints, configs)]


def output_path(out_dir: str, name: str) -> str:
    """``out_dir/name``, creating ``out_dir``."""
    os.makedirs(out_dir, exist_ok=True)
    return osp.join(out_dir, name)


def write_csv(path: str, header: Sequence[str],
              rows: Iterable[Sequence]) -> str:
    """Write a CSV file with a header row.

    Args:
        path (str): The file.
        header (Sequence[str]): Column names.
        rows (Iterable[Sequence]): The rows.

    Returns:
        str: ``path``.
    """
    with open(path, 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_json(path: str, data) -> str:
    """Write ``data`` as indented JSON; returns ``path``."""
    with open(path, 'w') as f:
        json.dump(data, f, indent=1)
    return path
