"""Make a DTM teacher file (``ViTTeacher``) from CLIP weights, or a random one.

CLIP's ViT image tower (OpenAI's ``ViT-B-16.pt``, a TorchScript archive, or
a state dict saved from open_clip or ``clip.load(..., jit=False)``, keys
``visual.*``) becomes the keys of :class:`noisemim.models.teachers.ViTTeacher`:
an mmpretrain ``VisionTransformer`` (``vit.*``) and CLIP's projection
(``proj``). Nothing is downloaded: ``SRC`` is a local file. Examples::

    # OpenAI CLIP ViT-B/16 -> the teacher of
    # configs/pretrain/dtm_vit-base-p16_8xb256-amp-coslr-300e_in1k.py
    python tools/model_converters/clip_to_teacher.py \\
        ViT-B-16.pt data/teachers/clip_vit-b16.pth

    # a random teacher for the CPU demo (written to the config's path)
    python tools/model_converters/clip_to_teacher.py \\
        --random configs/pretrain/dtm_vit-tiny_demo.py

The converter prints the ``vit`` settings of the converted tower (width,
depth, heads, patch size, image size); the default ``ViTTeacher`` is CLIP's
ViT-B/16.
"""
import argparse
import os
import os.path as osp
import re
import sys
from typing import Dict, Tuple

import torch
from torch import Tensor

# CLIP (OpenAI / open_clip) visual keys -> mmpretrain VisionTransformer keys.
BLOCK_RENAMES = (
    ('ln_1.', 'ln1.'),
    ('ln_2.', 'ln2.'),
    ('attn.in_proj_weight', 'attn.qkv.weight'),
    ('attn.in_proj_bias', 'attn.qkv.bias'),
    ('attn.out_proj.', 'attn.proj.'),
    ('mlp.c_fc.', 'ffn.layers.0.0.'),
    ('mlp.c_proj.', 'ffn.layers.1.'),
)
BLOCK_KEY = re.compile(r'^transformer\.resblocks\.(\d+)\.(.+)$')


def load_clip_state_dict(path: str) -> Dict[str, Tensor]:
    """The tensors of a CLIP file: a TorchScript archive or a state dict.

    Args:
        path (str): The local file.

    Returns:
        Dict[str, Tensor]: Its state dict.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'No CLIP weights at {osp.abspath(path)!r}')
    try:  # OpenAI's published files are TorchScript archives
        return dict(torch.jit.load(path, map_location='cpu').state_dict())
    except RuntimeError:
        pass
    checkpoint = torch.load(path, map_location='cpu', weights_only=True)
    for key in ('state_dict', 'model'):
        if isinstance(checkpoint, dict) and isinstance(
                checkpoint.get(key), dict):
            checkpoint = checkpoint[key]
    return {re.sub(r'^module\.', '', k): v for k, v in checkpoint.items()}


def convert_clip_visual(state_dict: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """CLIP's ViT image tower -> ``ViTTeacher`` keys (``vit.*``, ``proj``).

    Args:
        state_dict (Dict[str, Tensor]): CLIP weights, with the ``visual.``
            prefix (a whole CLIP model) or without it (the tower alone).

    Returns:
        Dict[str, Tensor]: The teacher's weights.
    """
    if any(k.startswith('visual.') for k in state_dict):
        state_dict = {
            k[len('visual.'):]: v
            for k, v in state_dict.items() if k.startswith('visual.')
        }
    if 'conv1.weight' not in state_dict or 'class_embedding' not in state_dict:
        raise KeyError('Not a CLIP ViT image tower: expected visual.conv1.'
                       'weight and visual.class_embedding (a ResNet CLIP '
                       'has no ViT tower), found keys '
                       f'{sorted(state_dict)[:8]}...')
    out = {}
    for key, value in state_dict.items():
        block = BLOCK_KEY.match(key)
        if block:
            rest = block.group(2)
            for old, new in BLOCK_RENAMES:
                rest = rest.replace(old, new)
            out[f'vit.layers.{block.group(1)}.{rest}'] = value
        elif key == 'conv1.weight':
            out['vit.patch_embed.projection.weight'] = value
        elif key == 'class_embedding':
            out['vit.cls_token'] = value.reshape(1, 1, -1)
        elif key == 'positional_embedding':
            out['vit.pos_embed'] = value.unsqueeze(0)
        elif key.startswith('ln_pre.'):
            out['vit.pre_norm.' + key[len('ln_pre.'):]] = value
        elif key.startswith('ln_post.'):
            out['vit.ln1.' + key[len('ln_post.'):]] = value
        elif key == 'proj':
            out['proj'] = value
        else:
            raise KeyError(f'Unexpected key in a CLIP ViT tower: {key!r}')
    return out


def tower_settings(teacher: Dict[str, Tensor]) -> Tuple[dict, int]:
    """The ``vit`` config and ``proj_channels`` of converted weights.

    Args:
        teacher (Dict[str, Tensor]): From :func:`convert_clip_visual`.

    Returns:
        Tuple[dict, int]: The ``ViTTeacher`` ``vit`` config (with CLIP's
        ``pre_norm``, QuickGELU and LayerNorm eps) and the projection width.
    """
    width, _, patch, _ = teacher['vit.patch_embed.projection.weight'].shape
    depth = 1 + max(
        int(k.split('.')[2]) for k in teacher if k.startswith('vit.layers.'))
    grid = int(round((teacher['vit.pos_embed'].shape[1] - 1)**0.5))
    ffn = teacher['vit.layers.0.ffn.layers.0.0.weight'].shape[0]
    vit = dict(
        type='VisionTransformer',
        arch=dict(
            embed_dims=width,
            num_layers=depth,
            num_heads=width // 64,  # CLIP's head width is 64
            feedforward_channels=ffn),
        img_size=grid * patch,
        patch_size=patch,
        drop_rate=0.,
        pre_norm=True,
        norm_cfg=dict(type='LN', eps=1e-5),
        layer_cfgs=dict(act_cfg=dict(type='mmpretrain.QuickGELU')))
    proj = teacher['proj'].shape[1] if 'proj' in teacher else None
    return vit, proj


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Make a DTM teacher file from CLIP weights (or a random '
        'one with --random CONFIG).')
    parser.add_argument('src', nargs='?', help='CLIP weights (local file)')
    parser.add_argument('dst', nargs='?', help='the teacher file to write')
    parser.add_argument(
        '--random',
        metavar='CONFIG',
        help='write a randomly initialised teacher for the teacher of this '
        'config (to DST, or to the config\'s model.teacher.checkpoint); for '
        'the CPU demo and tests, not a real teacher')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.random:
        from mmengine.config import Config

        import noisemim  # noqa: F401  (registers the teachers)
        from noisemim.models.teachers import save_random_teacher
        teacher = Config.fromfile(args.random).model.teacher
        dst = args.dst or args.src or teacher.checkpoint
        save_random_teacher(teacher.to_dict(), dst)
        print(f'Wrote a random {teacher.type} to {dst}')
        return
    if not (args.src and args.dst):
        sys.exit('usage: clip_to_teacher.py SRC DST, or --random CONFIG')
    teacher = convert_clip_visual(load_clip_state_dict(args.src))
    os.makedirs(osp.dirname(osp.abspath(args.dst)), exist_ok=True)
    torch.save(
        dict(state_dict=teacher, meta=dict(source=osp.basename(args.src))),
        args.dst)
    vit, proj = tower_settings(teacher)
    print(f'Wrote {len(teacher)} tensors to {args.dst}. ViTTeacher settings:'
          f'\n  vit={vit}\n  proj_channels={proj}')


if __name__ == '__main__':
    main()
