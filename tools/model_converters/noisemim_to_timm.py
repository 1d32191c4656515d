"""Export a NoiseMIM backbone to timm's ``VisionTransformer`` keys.

The result loads with ``strict=True`` into
``timm.create_model('vit_base_patch16_224', pretrained=False, num_classes=0)``
(for ViT-B/16; other sizes into the timm ViT of the same dimensions) and gives
the same features as the NoiseMIM backbone. Example::

    python tools/model_converters/noisemim_to_timm.py \\
        work_dirs/noisemim_vit-base-p16_8xb512-amp-coslr-400e_in1k/epoch_400.pth \\
        noisemim_vit-b_timm.pth --check-model vit_base_patch16_224

    model = timm.create_model('vit_base_patch16_224', pretrained=False,
                              num_classes=0)
    model.load_state_dict(torch.load('noisemim_vit-b_timm.pth'))

With ``--mae`` the same state dict is saved under ``'model'``: the layout of
the official MAE checkpoints, which is what these consumers read:

* the official MAE code's ``main_finetune.py --finetune FILE`` (its ViT is
  timm's; it loads ``checkpoint['model']`` with ``strict=False``);
* mmdet's ``projects/ViTDet`` (``init_cfg=dict(type='Pretrained',
  checkpoint=FILE)`` on its ``ViT``, whose ``init_weights`` reads only
  ``ckpt['model']``: any other file fails there with ``UnboundLocalError``);
* mmseg's stock MAE configs, after mmseg's own converter
  (``tools/model_converters/beit2mmseg.py FILE OUT``).

Which file goes to which consumer: docs/transfer.md ("Which file for which
consumer").
"""
import argparse
import os.path as osp
import re
import sys
from typing import Dict, List, Optional

import torch
from torch import Tensor

from noisemim.models.pretrained import (PRETRAIN_ONLY_KEYS,
                                        load_backbone_weights, matches_any)

# mmpretrain VisionTransformer key (regex) -> timm VisionTransformer key.
KEY_MAP = (
    (r'^cls_token$', 'cls_token'),
    (r'^pos_embed$', 'pos_embed'),
    (r'^patch_embed\.projection\.(weight|bias)$', r'patch_embed.proj.\1'),
    (r'^pre_norm\.(weight|bias)$', r'norm_pre.\1'),
    (r'^layers\.(\d+)\.ln1\.(weight|bias)$', r'blocks.\1.norm1.\2'),
    (r'^layers\.(\d+)\.attn\.qkv\.(weight|bias)$', r'blocks.\1.attn.qkv.\2'),
    (r'^layers\.(\d+)\.attn\.proj\.(weight|bias)$',
     r'blocks.\1.attn.proj.\2'),
    (r'^layers\.(\d+)\.attn\.gamma1\.weight$', r'blocks.\1.ls1.gamma'),
    (r'^layers\.(\d+)\.ln2\.(weight|bias)$', r'blocks.\1.norm2.\2'),
    (r'^layers\.(\d+)\.ffn\.layers\.0\.0\.(weight|bias)$',
     r'blocks.\1.mlp.fc1.\2'),
    (r'^layers\.(\d+)\.ffn\.layers\.1\.(weight|bias)$',
     r'blocks.\1.mlp.fc2.\2'),
    (r'^layers\.(\d+)\.ffn\.gamma2\.weight$', r'blocks.\1.ls2.gamma'),
    (r'^ln1\.(weight|bias)$', r'norm.\1'),
)


def timm_key(key: str) -> Optional[str]:
    """timm's name for an mmpretrain ViT key, or None if it has none."""
    for pattern, repl in KEY_MAP:
        if re.match(pattern, key):
            return re.sub(pattern, repl, key)
    return None


def to_timm(weights: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """Rename a NoiseMIM backbone's weights to timm's ViT keys.

    Args:
        weights (dict): ``NoiseMIMViT`` weights, without the ``backbone.``
            prefix (final norm on, the pre-training layout).

    Returns:
        dict: timm ``VisionTransformer`` weights (no classifier head).

    Raises:
        KeyError: A key has no timm counterpart (e.g. the ``ln2`` norm of an
            average-pooling classifier), or the final norm is missing.
    """
    converted, unknown = {}, []
    for key, value in weights.items():
        if matches_any(key, PRETRAIN_ONLY_KEYS):
            continue
        new = timm_key(key)
        if new is None:
            unknown.append(key)
        else:
            converted[new] = value.contiguous()
    if unknown:
        raise KeyError(f'no timm VisionTransformer key for {unknown}; '
                       'expected a NoiseMIMViT pre-training backbone')
    if 'norm.weight' not in converted:
        raise KeyError('the backbone has no final norm (ln1); timm ViTs '
                       'expect one (pre-training uses final_norm=True)')
    return converted


def check_loads(weights: Dict[str, Tensor], model_name: str) -> None:
    """Load the weights strictly into ``timm.create_model(model_name)``.

    Args:
        weights (dict): timm weights from :func:`to_timm`.
        model_name (str): A timm model name, e.g. ``vit_base_patch16_224``.

    The model is built on the ``meta`` device (no memory, no random init):
    ``load_state_dict`` still checks every key and shape.

    Raises:
        RuntimeError: From ``load_state_dict(strict=True)`` on any mismatch.
    """
    import timm
    with torch.device('meta'):
        model = timm.create_model(model_name, pretrained=False, num_classes=0)
    model.load_state_dict(weights, strict=True, assign=True)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Export a NoiseMIM backbone to timm's ViT keys.")
    parser.add_argument(
        'src', help='pre-training checkpoint or published backbone file')
    parser.add_argument('dst', help='output file (.pth, a plain state dict)')
    parser.add_argument(
        '--prefix',
        default='backbone.',
        help='prefix of the backbone keys in src (default: backbone.)')
    parser.add_argument(
        '--check-model',
        metavar='TIMM_NAME',
        help='also load the result with strict=True into '
        'timm.create_model(TIMM_NAME, pretrained=False, num_classes=0)')
    parser.add_argument(
        '--mae',
        action='store_true',
        help="save as {'model': state dict}, the layout of the official "
        "MAE checkpoints: the file for MAE's main_finetune.py --finetune and "
        "for mmdet's projects/ViTDet (its ViT's init_cfg=dict("
        "type='Pretrained', checkpoint=FILE) reads only ckpt['model']); "
        "mmseg's stock MAE configs take it after mmseg's "
        "tools/model_converters/beit2mmseg.py")
    args = parser.parse_args(argv)
    if not osp.isfile(args.src):
        parser.error(f'src {args.src!r} is not a file; expected a NoiseMIM '
                     'pre-training checkpoint or published backbone file')
    if osp.abspath(args.src) == osp.abspath(args.dst):
        parser.error(f'dst {args.dst!r} would overwrite src')
    return args


def main(argv: Optional[List[str]] = None) -> str:
    """Run the exporter.

    Args:
        argv (List[str], optional): Command-line arguments; ``sys.argv`` if
            None.

    Returns:
        str: The path written.
    """
    args = parse_args(argv)
    weights, _ = load_backbone_weights(args.src, args.prefix)
    try:
        converted = to_timm(weights)
        if args.check_model:
            check_loads(converted, args.check_model)
    except (KeyError, RuntimeError) as e:
        sys.exit(f'error: {args.src!r}: {e}')
    torch.save(dict(model=converted) if args.mae else converted, args.dst)
    checked = (f'; loads strictly into {args.check_model}'
               if args.check_model else '')
    layout = " under 'model' (MAE's layout)" if args.mae else ''
    print(f'wrote {args.dst}: {len(converted)} timm tensors{layout}{checked}')
    return args.dst


if __name__ == '__main__':
    main()
