"""Write tiny, valid data sets in the real layouts, for a smoke run of every
task's real config on a CPU (docs/smoke.md).

Example::

    python tools/misc/make_tiny_data.py imagenet coco ade20k cub
    python tools/misc/make_tiny_data.py folder --out-dir ~/tiny

Each set goes to ``<out-dir>/<name>`` (default ``data/tiny/<name>``):
``imagenet`` (ImageNet-1K: train/<wnid>/, flat val/, meta/; ``--no-meta``:
class folders only), ``folder`` (unlabelled images in nested folders, every
common format), ``coco`` (train2017/, val2017/, annotations/), ``ade20k``
(the ADEChallengeData2016 tree), ``cub`` (CUB_200_2011), ``nabirds``,
``inat2017``, ``inat2018``.
"""
import argparse
import os.path as osp
import sys
from typing import List, Optional

from noisemim.utils.tiny_data import WRITERS, write_tiny_data


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split('\n\n', 1)[1])
    parser.add_argument('names', nargs='+', choices=sorted(WRITERS),
                        metavar='NAME',
                        help=f'data sets to write: {", ".join(WRITERS)}')
    parser.add_argument('--out-dir', default='data/tiny',
                        help='each set goes to OUT_DIR/NAME '
                        '(default: data/tiny)')
    parser.add_argument('--no-meta', action='store_true',
                        help='imagenet: no meta/ files, val/ in class '
                        'folders')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    for name in args.names:
        options = dict(meta=False) if args.no_meta and name == 'imagenet' \
            else {}
        root = write_tiny_data(name, osp.join(args.out_dir, name), **options)
        print(f'{name}: {root}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
