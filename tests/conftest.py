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
