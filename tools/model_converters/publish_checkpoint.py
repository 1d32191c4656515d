"""Publish a NoiseMIM pre-training checkpoint as a backbone-only file.

Keeps the backbone's weights and drops what only pre-training needs: the
optimizer, the schedulers, the message hub, the MIM and denoising heads and the
backbone's pre-training-only parameters (``mask_token``, ``time_embed.*``).
The result loads with ``init_cfg=dict(type='StrictPretrained', checkpoint=...,
prefix='backbone.')`` whether its keys keep the ``backbone.`` prefix or not.
Example::

    python tools/model_converters/publish_checkpoint.py \\
        work_dirs/noisemim_vit-base-p16_8xb512-amp-coslr-400e_in1k/epoch_400.pth \\
        noisemim_vit-b_backbone.pth
"""
import argparse
import hashlib
import os.path as osp
import sys
from typing import Dict, List, Optional

import torch
from torch import Tensor

from noisemim.models.pretrained import (PRETRAIN_ONLY_KEYS, matches_any,
                                        load_backbone_weights)
from noisemim.version import __version__


def backbone_only(weights: Dict[str, Tensor], prefix: str,
                  strip_prefix: bool) -> Dict[str, Tensor]:
    """The backbone's weights, without pre-training-only parameters.

    Args:
        weights (dict): The backbone's weights, prefix removed.
        prefix (str): The prefix to put back unless ``strip_prefix``.
        strip_prefix (bool): Save the keys without ``prefix``.

    Returns:
        dict: The weights to publish.
    """
    head = '' if strip_prefix else prefix
    return {
        head + k: v.contiguous()
        for k, v in weights.items() if not matches_any(k, PRETRAIN_ONLY_KEYS)
    }


def sha256_of(path: str) -> str:
    """The SHA-256 of a file, in hex."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Publish a NoiseMIM pre-training checkpoint as a '
        'backbone-only file.')
    parser.add_argument('src', help='pre-training checkpoint (Runner .pth)')
    parser.add_argument('dst', help='output file (.pth)')
    parser.add_argument(
        '--prefix',
        default='backbone.',
        help='prefix of the backbone keys in src (default: backbone.)')
    parser.add_argument(
        '--strip-prefix',
        action='store_true',
        help='save the keys without the prefix (both forms load)')
    args = parser.parse_args(argv)
    if not osp.isfile(args.src):
        parser.error(f'src {args.src!r} is not a file; expected a NoiseMIM '
                     'pre-training checkpoint')
    if osp.abspath(args.src) == osp.abspath(args.dst):
        parser.error(f'dst {args.dst!r} would overwrite src')
    if not args.prefix.endswith('.'):
        parser.error(f'--prefix must end with ".", got {args.prefix!r}')
    return args


def main(argv: Optional[List[str]] = None) -> str:
    """Run the converter.

    Args:
        argv (List[str], optional): Command-line arguments; ``sys.argv`` if
            None.

    Returns:
        str: The path written.
    """
    args = parse_args(argv)
    weights, outside = load_backbone_weights(args.src, args.prefix)
    if 'patch_embed.projection.weight' not in weights:
        sys.exit(f'error: {args.src!r} has no ViT backbone under prefix '
                 f'{args.prefix!r} (no patch_embed.projection.weight); its '
                 f'keys start: {sorted(weights)[:6]}')
    published = backbone_only(weights, args.prefix, args.strip_prefix)
    torch.save(
        dict(
            meta=dict(
                source=osp.basename(args.src),
                noisemim_version=__version__,
                prefix='' if args.strip_prefix else args.prefix),
            state_dict=published), args.dst)
    print(f'wrote {args.dst}: {len(published)} backbone tensors '
          f'(dropped {len(outside)} keys outside {args.prefix!r} and the '
          f'pre-training-only {list(PRETRAIN_ONLY_KEYS)}); '
          f'sha256 {sha256_of(args.dst)}')
    return args.dst


if __name__ == '__main__':
    main()
