"""Shared fixtures: tiny NoiseMIM models (4 blocks, 64-d, 32 px, 8 px patches)."""
import copy

import pytest

import noisemim  # noqa: F401  (registers the modules)

TINY_ARCH = dict(
    embed_dims=64, num_layers=4, num_heads=4, feedforward_channels=128)


def tiny_backbone(**overrides) -> dict:
    """A tiny ``NoiseMIMViT`` config: 32 px images, 4x4 patches of 8 px."""
    cfg = dict(
        type='NoiseMIMViT',
        arch=copy.deepcopy(TINY_ARCH),
        img_size=32,
        patch_size=8,
        mask_ratio=0.6,
        mask_unit=16,
        noise_ratio=0.5,
        noise_layer=2)
    cfg.update(overrides)
    return cfg


def tiny_noisemim(backbone: dict = None, **overrides) -> dict:
    """A tiny ``NoiseMIM`` config over :func:`tiny_backbone`."""
    backbone = backbone or tiny_backbone()
    pixels = backbone['patch_size']**2 * 3
    head = dict(type='TokenRegressionHead', in_channels=64,
                out_channels=pixels)
    cfg = dict(
        type='NoiseMIM',
        backbone=backbone,
        mim_head=head,
        denoise_head=copy.deepcopy(head),
        disruption=dict(type='DisruptionLoss', mode='mass', loss_weight=0.1),
        data_preprocessor=dict(
            type='SelfSupDataPreprocessor', mean=[0, 0, 0], std=[1, 1, 1]))
    cfg.update(overrides)
    return cfg


@pytest.fixture
def build_model():
    from mmpretrain.registry import MODELS

    def build(cfg: dict):
        model = MODELS.build(cfg)
        model.init_weights()
        return model

    return build


def _save_pretrain_checkpoint(config: str, path) -> str:
    """Build a NoiseMIM pre-training model from a config file and save it as
    an mmengine Runner would (``meta`` + ``state_dict`` with the
    ``backbone.``/``mim_head.``/... prefixes)."""
    import os.path as osp

    import torch
    from mmengine.config import Config
    from mmpretrain.registry import MODELS

    root = osp.dirname(osp.dirname(osp.abspath(__file__)))
    cfg = Config.fromfile(osp.join(root, config))
    model = MODELS.build(cfg.model)
    model.init_weights()
    torch.save(
        dict(meta=dict(epoch=1, iter=1), state_dict=model.state_dict()),
        str(path))
    return str(path)


@pytest.fixture(scope='session')
def vit_b_pretrain_checkpoint(tmp_path_factory) -> str:
    """A NoiseMIM ViT-B/16 pre-training checkpoint (random weights)."""
    return _save_pretrain_checkpoint(
        'configs/pretrain/noisemim_vit-base-p16_8xb512-amp-coslr-400e_in1k.py',
        tmp_path_factory.mktemp('ckpt') / 'noisemim_vit-b.pth')


@pytest.fixture(scope='session')
def tiny_pretrain_checkpoint(tmp_path_factory) -> str:
    """A checkpoint of the tiny demo NoiseMIM (4 blocks, 64-d, patch 8)."""
    return _save_pretrain_checkpoint(
        'configs/pretrain/noisemim_vit-tiny_demo.py',
        tmp_path_factory.mktemp('ckpt') / 'noisemim_tiny.pth')
