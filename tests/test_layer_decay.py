"""LayerDecayOptimWrapperConstructor: lr = base_lr * rate ** (top - depth) for
tiny NoiseMIM ViTs inside a classifier (mmpretrain), a detector (mmdet) and a
segmentor (mmseg), each built and optimised through its own scope's
registries."""
import importlib
import re

import pytest
import torch
from conftest import TINY_ARCH, tiny_backbone
from mmengine.registry import DefaultScope
from torch import nn

from noisemim.engine.optimizers import LayerDecayOptimWrapperConstructor
from noisemim.models.backbones.noisemim_vit import NoiseMIMViT

BASE_LR, WD, RATE = 1e-3, 0.05, 0.5
NUM_DEPTHS = TINY_ARCH['num_layers'] + 2  # stem, 4 blocks, the rest
STEM = ('cls_token', 'pos_embed', 'mask_token', 'patch_embed.')
NO_DECAY = ('cls_token', 'pos_embed', 'mask_token')


def featmap_backbone(**overrides) -> dict:
    """The tiny ViT as a downstream backbone (feature maps of blocks 1, 3)."""
    cfg = tiny_backbone(
        type='mmpretrain.NoiseMIMViT', out_type='featmap', out_indices=(1, 3))
    cfg.update(overrides)
    return cfg


def classifier() -> dict:
    return dict(
        type='ImageClassifier',
        backbone=tiny_backbone(),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=5, in_channels=64))


def detector() -> dict:
    return dict(
        type='RetinaNet',
        backbone=featmap_backbone(),
        neck=dict(
            type='FPN', in_channels=[64, 64], out_channels=32, num_outs=2),
        bbox_head=dict(
            type='RetinaHead',
            num_classes=3,
            in_channels=32,
            feat_channels=32,
            stacked_convs=1,
            anchor_generator=dict(
                type='AnchorGenerator',
                octave_base_scale=4,
                scales_per_octave=1,
                ratios=[1.0],
                strides=[8, 16]),
            bbox_coder=dict(type='DeltaXYWHBBoxCoder'),
            loss_cls=dict(type='FocalLoss', use_sigmoid=True),
            loss_bbox=dict(type='L1Loss')))


def segmentor() -> dict:
    return dict(
        type='EncoderDecoder',
        backbone=featmap_backbone(),
        decode_head=dict(
            type='FCNHead',
            in_channels=64,
            in_index=1,
            channels=16,
            num_convs=1,
            num_classes=3,
            norm_cfg=dict(type='BN', requires_grad=True)))


MODELS_BY_SCOPE = {
    'mmpretrain': classifier,
    'mmdet': detector,
    'mmseg': segmentor,
}


def expected_depth(name: str) -> int:
    """The depth of a parameter, written out from the rule (not asked of the
    backbone): stem 0, block i -> i + 1, everything else on top."""
    if not name.startswith('backbone.'):
        return NUM_DEPTHS - 1
    name = name[len('backbone.'):]
    if name.startswith(STEM):
        return 0
    block = re.match(r'layers\.(\d+)\.', name)
    return int(block.group(1)) + 1 if block else NUM_DEPTHS - 1


def optim_cfg(**paramwise) -> dict:
    return dict(
        type='OptimWrapper',
        optimizer=dict(type='AdamW', lr=BASE_LR, weight_decay=WD),
        constructor='LayerDecayOptimWrapperConstructor',
        paramwise_cfg=dict(layer_decay_rate=RATE, **paramwise))


def build_in_scope(scope: str, model_cfg: dict, cfg: dict):
    """Build the model and its optimizer wrapper from ``scope``'s registries,
    with that scope as the default scope (as a Runner of that scope does)."""
    registry = importlib.import_module(f'{scope}.registry')
    with DefaultScope.overwrite_default_scope(scope):
        model = registry.MODELS.build(model_cfg)
        cfg = dict(cfg)
        constructor = registry.OPTIM_WRAPPER_CONSTRUCTORS.build(
            dict(
                type=cfg.pop('constructor'),
                paramwise_cfg=cfg.pop('paramwise_cfg'),
                optim_wrapper_cfg=cfg))
        return model, constructor(model)


@pytest.mark.parametrize('scope', sorted(MODELS_BY_SCOPE))
def test_lr_follows_depth_in_every_scope(scope):
    model, wrapper = build_in_scope(scope, MODELS_BY_SCOPE[scope](),
                                    optim_cfg())
    groups = wrapper.optimizer.param_groups
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert [g['param_name'] for g in groups] == trainable
    depths = set()
    for g in groups:
        depth = expected_depth(g['param_name'])
        depths.add(depth)
        assert g['lr'] == pytest.approx(
            BASE_LR * RATE**(NUM_DEPTHS - 1 - depth)), g['param_name']
    assert depths == set(range(NUM_DEPTHS))  # the stem, 4 blocks, the top
    # neck and heads train at the base lr
    head = [g for g in groups if not g['param_name'].startswith('backbone.')]
    assert head and all(g['lr'] == BASE_LR for g in head)


def test_no_weight_decay_for_norms_biases_and_tokens():
    _, wrapper = build_in_scope('mmseg', segmentor(), optim_cfg())
    for g in wrapper.optimizer.param_groups:
        name, p = g['param_name'], g['params'][0]
        last = name.rsplit('.', 1)[-1]
        flat = p.ndim == 1 or last in NO_DECAY
        assert g['weight_decay'] == (0. if flat else WD), name
    names = {g['param_name'] for g in wrapper.optimizer.param_groups}
    assert {'backbone.pos_embed', 'backbone.cls_token',
            'backbone.layers.0.ln1.weight'} <= names


def test_custom_keys_and_overrides():
    cfg = optim_cfg(
        flat_decay_mult=1.,
        norm_decay_mult=1.,
        bias_decay_mult=1.,
        custom_keys={'decode_head': dict(lr_mult=10., decay_mult=0.)})
    _, wrapper = build_in_scope('mmseg', segmentor(), cfg)
    by_name = {g['param_name']: g for g in wrapper.optimizer.param_groups}
    conv = by_name['decode_head.conv_seg.weight']
    assert conv['lr'] == pytest.approx(10 * BASE_LR)
    assert conv['weight_decay'] == 0.
    assert by_name['backbone.layers.0.ln1.bias']['weight_decay'] == WD
    assert by_name['backbone.pos_embed']['weight_decay'] == 0.  # a token


class WindowedViT(NoiseMIMViT):
    """A subclass with an extra per-block parameter (as a ViTDet variant
    with relative positions would have)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        for layer in self.layers:
            layer.rel_pos = nn.Parameter(torch.zeros(3, 4))


def test_any_subclass_and_frozen_parameters():
    backbone_cfg = tiny_backbone()
    backbone_cfg.pop('type')
    model = nn.Module()
    model.backbone = WindowedViT(**backbone_cfg)
    model.backbone.patch_embed.requires_grad_(False)
    model.head = nn.Linear(64, 2)
    wrapper = LayerDecayOptimWrapperConstructor(
        dict(optimizer=dict(type='AdamW', lr=BASE_LR, weight_decay=WD)),
        dict(layer_decay_rate=RATE))(model)
    by_name = {g['param_name']: g for g in wrapper.optimizer.param_groups}
    assert not any('patch_embed' in n for n in by_name)
    assert by_name['backbone.layers.2.rel_pos']['lr'] == pytest.approx(
        BASE_LR * RATE**(NUM_DEPTHS - 1 - 3))
    assert by_name['head.weight']['lr'] == BASE_LR


@pytest.mark.parametrize(
    'paramwise, error, match',
    [(dict(layer_decay_rate=1.5), ValueError, r'in \(0, 1\], got 1.5'),
     (dict(layer_decay_rate=0.6, num_layers=12), KeyError, 'num_layers')])
def test_bad_config_is_named(paramwise, error, match):
    cfg = optim_cfg()
    cfg['paramwise_cfg'] = paramwise
    with pytest.raises(error, match=match):
        build_in_scope('mmpretrain', classifier(), cfg)


def test_model_without_layer_depth_is_named():
    model = nn.Module()
    model.backbone = nn.Conv2d(3, 4, 3)
    constructor = LayerDecayOptimWrapperConstructor(
        dict(optimizer=dict(type='AdamW', lr=BASE_LR)),
        dict(layer_decay_rate=RATE))
    with pytest.raises(TypeError, match='backbone Conv2d has none'):
        constructor(model)
