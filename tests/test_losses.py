"""Each loss term against a direct reference computation on small hand-made cases."""
import math

import pytest
import torch
import torch.nn.functional as F
from mmpretrain.registry import MODELS

from conftest import tiny_backbone, tiny_noisemim
from noisemim.models.algorithms.noisemim import normalize_patches
from noisemim.models.corruption import Corruption
from noisemim.models.losses.disruption import (cross_corruption_mass,
                                               masked_attention_entropy_gap)
from noisemim.models.patches import patchify


def _qk(B=2, H=3, L=7, d=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, H, L, d, generator=g), torch.randn(
        B, H, L, d, generator=g)


def test_cross_corruption_mass_matches_the_definition():
    q, k = _qk()
    M = torch.tensor([[1, 2, 5], [2, 3, 4]])
    S = torch.tensor([[3, 6], [1, 6]])
    got = cross_corruption_mass(q, k, M, S)
    A = (q @ k.transpose(-2, -1) / 2).softmax(-1)  # d = 4 -> scale 1/2
    for b in range(2):
        for h in range(3):
            m_to_s = sum(sum(A[b, h, i, j] for j in S[b]) for i in M[b]) / 3
            s_to_m = sum(sum(A[b, h, i, j] for j in M[b]) for i in S[b]) / 2
            assert got[b, h].item() == pytest.approx(
                (m_to_s + s_to_m).item(), abs=1e-6)


def test_entropy_gap_matches_the_definition():
    q, k = _qk(seed=1)
    M = torch.tensor([[1, 2], [0, 5]])
    S = torch.tensor([[4, 6], [2, 3]])
    got = masked_attention_entropy_gap(q, k, M, S)
    logits = q @ k.transpose(-2, -1) / 2
    for b in range(2):
        keep = [j for j in range(7) if j not in S[b].tolist()]
        for h in range(3):
            gaps = []
            for i in M[b]:
                p = logits[b, h, i, keep].softmax(-1)
                ent = -(p * p.log()).sum()
                gaps.append(1 - ent / math.log(len(keep)))
            assert got[b, h].item() == pytest.approx(
                sum(gaps).item() / 2, abs=1e-6)


def test_disruption_loss_is_weighted_mean_over_blocks():
    loss = MODELS.build(dict(type='DisruptionLoss', loss_weight=0.1))
    blocks = {2: _qk(seed=2), 3: _qk(seed=3)}
    M = torch.tensor([[0, 1], [2, 3]])
    S = torch.tensor([[2, 4], [4, 5]])
    c = Corruption(mask=None, noised=None, masked_index=M, noised_index=S,
                   t=None, alpha_bar=None, eps=None)
    got = loss(blocks, c, num_extra_tokens=1)
    ref = sum(cross_corruption_mass(q, k, M + 1, S + 1).mean()
              for q, k in blocks.values()) / 2
    assert got.item() == pytest.approx(0.1 * ref.item(), rel=1e-6)


def _loss_terms_by_hand(model, x):
    """Recompute every loss term from the model's own corruption and output."""
    torch.manual_seed(0)
    corruption, out = model.corrupted_forward(x)
    pixels = normalize_patches(patchify(x, 8))
    pred = model.mim_head.predictor(out.tokens)
    mim = ((pred - pixels)**2).mean(-1)[corruption.mask].mean()
    S = corruption.noised_index
    idx = S[..., None]
    tok_s = out.tokens.gather(1, idx.expand(-1, -1, 64))
    return corruption, out, mim, tok_s


@pytest.mark.parametrize('target', ['pixel', 'feature', 'noise'])
def test_mim_and_denoise_losses_match_references(build_model, target):
    out_ch = 8**2 * 3 if target == 'pixel' else 64
    cfg = tiny_noisemim(denoise_target=target)
    cfg['denoise_head']['out_channels'] = out_ch
    model = build_model(cfg)
    x = torch.randn(2, 3, 32, 32)
    torch.manual_seed(0)
    losses = model.loss(x, [])
    assert set(losses) == {'loss_mim', 'loss_denoise', 'loss_disruption'}
    corruption, out, mim, tok_s = _loss_terms_by_hand(model, x)
    torch.testing.assert_close(losses['loss_mim'], mim)
    S = corruption.noised_index
    pred = model.denoise_head.predictor(tok_s)
    if target == 'pixel':
        ref = normalize_patches(patchify(x, 8)).gather(
            1, S[..., None].expand(-1, -1, 192))
    elif target == 'feature':
        ref = F.layer_norm(out.clean, (64, ))
    else:
        ref = corruption.eps
    torch.testing.assert_close(losses['loss_denoise'], ((pred - ref)**2).mean())


def test_l1_raw_pixel_mim_option(build_model):
    cfg = tiny_noisemim(norm_pix=False)
    cfg['mim_head']['loss'] = dict(type='PixelReconstructionLoss',
                                   criterion='L1')
    model = build_model(cfg)
    x = torch.randn(2, 3, 32, 32)
    torch.manual_seed(0)
    losses = model.loss(x, [])
    torch.manual_seed(0)
    corruption, out = model.corrupted_forward(x)
    pred = model.mim_head.predictor(out.tokens)
    ref = (pred - patchify(x, 8)).abs().mean(-1)[corruption.mask].mean()
    torch.testing.assert_close(losses['loss_mim'], ref)


def test_no_noise_is_simmim(build_model):
    model = build_model(
        tiny_noisemim(backbone=tiny_backbone(noise_ratio=0.), denoise_head=None))
    assert set(model.loss(torch.randn(2, 3, 32, 32), [])) == {'loss_mim'}


@pytest.mark.parametrize('overrides, word', [
    (dict(denoise_target='edges'), 'denoise_target'),
    (dict(denoise_head=None), 'denoise_head'),
    (dict(disruption=dict(type='DisruptionLoss', mode='soft')), 'mode'),
    (dict(disruption=dict(type='DisruptionLoss', layers=[1, 9])), 'layers'),
    (dict(disruption=dict(type='DisruptionLoss', loss_weight=-1)),
     'loss_weight'),
])
def test_algorithm_validation_names_the_value(overrides, word):
    with pytest.raises(ValueError, match=word):
        MODELS.build(tiny_noisemim(**overrides))


def test_head_width_mismatch_is_named():
    cfg = tiny_noisemim(denoise_target='feature')
    with pytest.raises(ValueError, match='denoise_head.out_channels must be 64'):
        MODELS.build(cfg)


def test_feature_target_needs_feature_noise():
    cfg = tiny_noisemim(backbone=tiny_backbone(noise_layer='pixel'),
                        denoise_target='feature')
    with pytest.raises(ValueError, match="denoise_target='feature'"):
        MODELS.build(cfg)
