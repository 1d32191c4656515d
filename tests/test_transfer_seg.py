"""Segmentation transfer (mmseg UperNet, ADE20K format): every config in
configs/segmentation loads a NoiseMIM ViT-B checkpoint with no missing
backbone key, and a tiny UperNet trains through tools/train.py and is
evaluated by tools/test.py with mmseg's IoUMetric."""
import glob
import json
import os
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmpretrain.models.utils import resize_pos_embed
from PIL import Image

import noisemim  # noqa: F401  (registers the modules)

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
SEG_CONFIGS = sorted(glob.glob(osp.join(ROOT, 'configs/segmentation/*.py')))
MAIN = osp.join(
    ROOT, 'configs/segmentation/'
    'upernet_noisemim-vit-b_8xb2-amp-160k_ade20k-512x512.py')
PHOTOS = ('astronaut.png', 'chelsea.png', 'coffee.png', 'rocket.jpg',
          'motorcycle_left.png', 'retina.jpg')
SIZE = 64


def label_map(image: np.ndarray) -> np.ndarray:
    """An ADE20K-style label map made from an image: 1 + its dominant colour
    channel (classes 1..3), 0 (ignored: "other") where it is dark."""
    labels = 1 + image.argmax(axis=-1)
    labels[image.max(axis=-1) < 40] = 0
    return labels.astype(np.uint8)


def write_ade20k(root: str) -> str:
    """A tiny ADE20K tree (ADEChallengeData2016 layout) of 64 px photographs
    from scikit-image: 4 training and 2 validation images."""
    import skimage
    photos = osp.join(osp.dirname(skimage.__file__), 'data')
    for i, name in enumerate(PHOTOS):
        split = 'training' if i < 4 else 'validation'
        image = Image.open(osp.join(photos, name)).convert('RGB')
        image = np.asarray(image.resize((SIZE, SIZE), Image.BILINEAR))
        stem = f"ADE_{'train' if split == 'training' else 'val'}_{i + 1:08d}"
        for sub, array, ext in (('images', image, 'jpg'),
                                ('annotations', label_map(image), 'png')):
            path = osp.join(root, sub, split, f'{stem}.{ext}')
            Image.fromarray(array).save(_mkdirs(path))
    return root


def _mkdirs(path: str) -> str:
    os.makedirs(osp.dirname(path), exist_ok=True)
    return path


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


def run_tool(*args: str) -> None:
    """Run a tool of ``tools/``; one thread, as tests run side by side."""
    env = dict(os.environ, OMP_NUM_THREADS='1')
    subprocess.run([sys.executable, *args],
                   check=True,
                   cwd=ROOT,
                   env=env,
                   timeout=300)


def test_upernet_trains_and_evaluates_on_ade20k_format(
        tmp_path, tiny_pretrain_checkpoint):
    data_root = write_ade20k(str(tmp_path / 'ADEChallengeData2016'))
    config = tmp_path / 'upernet_tiny.py'
    config.write_text(tiny_config(data_root, tiny_pretrain_checkpoint))
    work_dir = str(tmp_path / 'work')

    run_tool('tools/train.py', str(config), '--work-dir', work_dir)
    run_tool('tools/test.py', str(config), osp.join(work_dir, 'iter_4.pth'),
             '--work-dir', work_dir)

    records = [
        json.loads(line) for path in sorted(
            glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')))
        for line in open(path)
    ]
    train = [r for r in records if 'loss' in r]
    assert [r['iter'] for r in train] == [1, 2, 3, 4]
    assert {'decode.loss_ce', 'aux.loss_ce'} <= set(train[0])
    assert all(np.isfinite(r['loss']) for r in train)
    # the logged lr is the stem's: decayed by 0.65 per depth, 6 depths
    assert train[-1]['lr'] == pytest.approx(train[-1]['base_lr'] * 0.65**5)
    assert not any('mIoU' in r for r in records)  # no validation in training
    # tools/test.py: IoUMetric over the labelled pixels (finite: not all
    # ignored), in its run's <timestamp>.json
    tested = [
        json.loads(line)
        for path in glob.glob(osp.join(work_dir, '*', '*.json'))
        for line in open(path)
    ]
    assert len(tested) == 1 and {'aAcc', 'mIoU', 'mAcc'} <= set(tested[0])
    assert all(0 <= tested[0][k] <= 100 for k in ('aAcc', 'mIoU', 'mAcc'))
    # training started from the pre-trained weights (StrictPretrained raises
    # on a missing key): all 54 of the tiny stock ViT (the pre-training-only
    # mask token dropped)
    logs = ''.join(
        open(p).read() for p in glob.glob(osp.join(work_dir, '*', '*.log')))
    assert 'StrictPretrained: loaded 54 keys of VisionTransformer' in logs
    assert 'dropped pre-training-only keys: mask_token' in logs


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
