"""Every detection config builds from its file, loads a NoiseMIM ViT-B
pre-training checkpoint with zero missing backbone keys (position embedding
resized from 224 px to 1024 px), and sets up ViTDet's layer-wise lr decay."""
import glob
import os.path as osp

import pytest
import torch
from mmdet.registry import MODELS
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope
from mmpretrain.models.utils import resize_pos_embed

import noisemim  # noqa: F401

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIGS = sorted(glob.glob(osp.join(ROOT, 'configs/detection/*.py')))


def test_detection_configs_are_there():
    names = [osp.basename(c) for c in CONFIGS]
    assert 'mask-rcnn_noisemim-vit-b_simplefpn_lsj-100e_coco.py' in names
    assert 'mask-rcnn_noisemim-vit-b_simplefpn_lsj-25e_coco.py' in names


def test_every_config_builds_and_loads_vit_b(vit_b_pretrain_checkpoint):
    # one test for all configs: under xdist, one worker makes the checkpoint
    ckpt = torch.load(vit_b_pretrain_checkpoint, mmap=True)['state_dict']
    for config in CONFIGS:
        check_config(config, vit_b_pretrain_checkpoint, ckpt)


def check_config(config: str, checkpoint: str, ckpt: dict) -> None:
    """Build a detection config with ``checkpoint`` and check the backbone's
    weights (against ``ckpt``, its state dict) and the optimizer."""
    print(f'checking {osp.basename(config)}')
    cfg = Config.fromfile(config)
    assert cfg.default_scope == 'mmdet'
    assert cfg.custom_imports.imports == ['noisemim', 'noisemim.detection']
    cfg.model.backbone.init_cfg.checkpoint = checkpoint
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(cfg.model)
    backbone = model.backbone
    assert type(backbone).__name__ == 'NoiseMIMViTDet'
    assert backbone.window_size == 14
    assert backbone.global_attn_indexes == (2, 5, 8, 11)
    assert type(model.neck).__name__ == 'NoiseMIMSimpleFPN'
    assert type(model.roi_head.mask_head.convs[0].norm).__name__ == \
        'LayerNorm2d'
    backbone.init_weights()

    state = backbone.state_dict()
    assert [k for k in state if f'backbone.{k}' not in ckpt] == []
    # 224 px (1 + 14 x 14) -> 1024 px (64 x 64, no class token)
    assert state['pos_embed'].shape == (1, 64 * 64, 768)
    torch.testing.assert_close(
        state['pos_embed'],
        resize_pos_embed(ckpt['backbone.pos_embed'][:, 1:], (14, 14),
                         (64, 64), 'bicubic', 0))
    for key in ('patch_embed.projection.weight', 'layers.11.attn.qkv.weight',
                'ln1.weight'):
        torch.testing.assert_close(state[key], ckpt[f'backbone.{key}'])

    # layer-wise lr decay 0.7 from the backbone's depths; AdamW wd 0.1
    cfg.optim_wrapper.type = 'OptimWrapper'  # AMP needs a GPU
    groups = build_optim_wrapper(model, cfg.optim_wrapper).param_groups
    named = {id(p): n for n, p in model.named_parameters()}
    groups = [(named[id(g['params'][0])], g) for g in groups
              if id(g['params'][0]) in named]  # not mmengine's base group
    lr = {name: g['lr'] for name, g in groups}
    wd = {name: g['weight_decay'] for name, g in groups}
    assert lr['backbone.layers.11.attn.qkv.weight'] == pytest.approx(0.7e-4)
    assert lr['backbone.layers.0.attn.qkv.weight'] == pytest.approx(
        1e-4 * 0.7**12)
    assert lr['backbone.patch_embed.projection.weight'] == pytest.approx(
        1e-4 * 0.7**13)
    assert lr['neck.fpn1.0.weight'] == 1e-4
    assert lr['roi_head.mask_head.convs.0.conv.weight'] == 1e-4
    assert wd['backbone.layers.0.attn.qkv.weight'] == 0.1
    assert wd['backbone.pos_embed'] == wd['backbone.layers.0.ln1.weight'] \
        == wd['neck.lateral_convs.0.ln.weight'] == 0.
    assert 'backbone.mask_token' not in lr  # frozen: pre-training only
