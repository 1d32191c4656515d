"""NoiseMIM's loss terms: their weights, and a model without a mask."""
import pytest
import torch
from mmpretrain.registry import MODELS

from conftest import tiny_backbone, tiny_noisemim


def test_token_regression_head_loss_weight_scales_the_loss():
    torch.manual_seed(0)
    tokens, target = torch.randn(2, 5, 64), torch.randn(2, 5, 12)
    head = MODELS.build(
        dict(type='TokenRegressionHead', in_channels=64, out_channels=12))
    weighted = MODELS.build(
        dict(type='TokenRegressionHead', in_channels=64, out_channels=12,
             loss_weight=0.25))
    weighted.load_state_dict(head.state_dict())
    assert torch.allclose(
        weighted.loss(tokens, target), 0.25 * head.loss(tokens, target))
    with pytest.raises(ValueError, match='loss_weight must be a number >= 0'):
        MODELS.build(dict(type='TokenRegressionHead', in_channels=64,
                          out_channels=12, loss_weight=-1))


def test_no_mask_gives_a_finite_denoising_loss(build_model):
    """``mask_ratio=0`` is a valid sampler setting (denoising only); the MIM
    loss over an empty mask was 0/0 = NaN."""
    model = build_model(
        tiny_noisemim(tiny_backbone(mask_ratio=0.), disruption=None))
    torch.manual_seed(0)
    losses = model.loss(torch.randn(2, 3, 32, 32), [])
    assert set(losses) == {'loss_denoise'}
    assert torch.isfinite(losses['loss_denoise'])


def test_no_mask_refuses_a_disruption_loss_and_no_task(build_model):
    with pytest.raises(ValueError, match='mask_ratio=0 .*disruption=None'):
        build_model(tiny_noisemim(tiny_backbone(mask_ratio=0.)))
    with pytest.raises(ValueError, match='nothing to restore'):
        build_model(
            tiny_noisemim(
                tiny_backbone(mask_ratio=0., noise_ratio=0.),
                disruption=None))
