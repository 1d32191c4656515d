"""Segmentation transfer (mmseg UperNet, ADE20K format): every config in
configs/segmentation loads a NoiseMIM ViT-B checkpoint with no missing
backbone key. (UperNet trains and is evaluated with mmseg's IoUMetric
through tools/train.py in tests/test_smoke_recipes.py; :func:`tiny_config`
is the DDP test's.)"""
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmpretrain.models.utils import resize_pos_embed

import noisemim  # noqa: F401  (registers the modules)
from noisemim.utils.tiny_data import ADE20K_SIZE

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
SEG_CONFIGS = sorted(glob.glob(osp.join(ROOT, 'configs/segmentation/*.py')))
MAIN = osp.join(
    ROOT, 'configs/segmentation/'
    'upernet_noisemim-vit-b_8xb2-amp-160k_ade20k-512x512.py')
SIZE = ADE20K_SIZE


def tiny_config(data_root: str, checkpoint: str, base: str = MAIN) -> str:
    """A segmentation config (the main one by default) with a tiny ViT (the
    tiny pre-training demo's: 4 blocks, 64-d, 8 px patches), 64 px crops, BN
    for SyncBN, fp32 and 4 iterations; everything else (UperNet,
    Feature2Pyramid, FCN auxiliary head, layer decay, IoUMetric) comes from
    the file."""
    return f'''
_base_ = {base!r}
norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    data_preprocessor=dict(size=({SIZE}, {SIZE})),
    backbone=dict(
        arch=dict(_delete_=True, embed_dims=64, num_layers=4, num_heads=4,
                  feedforward_channels=256),
        img_size={SIZE}, patch_size=8, out_indices=[0, 1, 2, 3],
        init_cfg=dict(checkpoint={checkpoint!r})),
    neck=dict(embed_dim=64, norm_cfg=norm_cfg),
    decode_head=dict(in_channels=[64] * 4, channels=32, norm_cfg=norm_cfg),
    auxiliary_head=dict(in_channels=64, channels=16, norm_cfg=norm_cfg),
    test_cfg=dict(_delete_=True, mode='whole'))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=(128, {SIZE}), ratio_range=(0.5, 2.0),
         keep_ratio=True),
    dict(type='RandomCrop', crop_size=({SIZE}, {SIZE}), cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(128, {SIZE}), keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
loader = dict(num_workers=0, persistent_workers=False)
train_dataloader = dict(
    **loader, dataset=dict(data_root={data_root!r}, pipeline=train_pipeline))
test_dataloader = dict(
    **loader, dataset=dict(data_root={data_root!r}, pipeline=test_pipeline))
val_dataloader = val_cfg = val_evaluator = None  # tools/test.py evaluates
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999),
                   weight_decay=0.05),
    constructor='LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=0.65))
train_cfg = dict(max_iters=4)
default_hooks = dict(
    logger=dict(interval=1),
    checkpoint=dict(interval=4, save_best=None))
'''


@pytest.mark.parametrize(
    'config', SEG_CONFIGS, ids=[osp.basename(c) for c in SEG_CONFIGS])
def test_config_loads_vit_b_checkpoint_with_no_missing_key(
        config, vit_b_pretrain_checkpoint):
    from mmseg.registry import MODELS
    cfg = Config.fromfile(config)
    assert cfg.default_scope == 'mmseg'
    assert 'noisemim' in cfg.custom_imports.imports
    assert cfg.model.backbone.init_cfg.type == 'StrictPretrained'
    cfg.model.backbone.init_cfg.checkpoint = vit_b_pretrain_checkpoint
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = MODELS.build(cfg.model)
        model.init_weights()

    backbone = model.backbone
    assert type(backbone).__module__.startswith('mmpretrain.')  # stock class
    report = backbone.pretrained_report  # StrictPretrained raises on missing
    assert sorted(report.loaded) == sorted(backbone.state_dict())
    assert report.new == []  # no backbone key kept its random init
    assert report.pretrain_only == ['mask_token']
    weights = torch.load(vit_b_pretrain_checkpoint)['state_dict']
    torch.testing.assert_close(backbone.layers[11].attn.qkv.weight,
                               weights['backbone.layers.11.attn.qkv.weight'])
    # the 224 px (14x14) position embedding, resized to the 512 px grid
    grid = backbone.patch_resolution
    assert grid == (512 // 16, 512 // 16)
    torch.testing.assert_close(
        backbone.pos_embed,
        resize_pos_embed(weights['backbone.pos_embed'], (14, 14), grid,
                         'bicubic', 1))
