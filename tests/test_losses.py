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


# -- the disruption loss read off the encoder's own attention ----------------


def explicit_cross_mass(q, k, is_m, is_s):
    """``c`` by METHOD.md §6: softmax probabilities, summed, per (B, H)."""
    A = (q.float() @ k.float().transpose(-2, -1) *
         q.shape[-1]**-0.5).softmax(-1)
    m_to_s = torch.einsum('bhij,bi,bj->bh', A, is_m, is_s)
    s_to_m = torch.einsum('bhij,bi,bj->bh', A, is_s, is_m)
    return m_to_s / is_m.sum(1, keepdim=True) + s_to_m / is_s.sum(
        1, keepdim=True)


def _corruption(mask, noised):
    idx = [m.nonzero().flatten() for m in mask]
    nidx = [m.nonzero().flatten() for m in noised]
    return Corruption(mask=mask, noised=noised,
                      masked_index=torch.stack(idx),
                      noised_index=torch.stack(nidx), t=None,
                      alpha_bar=None, eps=None)


@pytest.mark.parametrize('device_type', ['cpu', 'cuda'])
def test_attention_with_mass_is_attention_plus_the_exact_mass(device_type):
    """One fused call and one projection: the usual projected output, and c
    with its exact gradient (the 'cuda' width, 16, is run on CPU too: it is
    the padding that differs)."""
    from noisemim.models.mass_attention import MassProbe, attention_with_mass
    g = torch.Generator().manual_seed(0)
    B, L, H, d, D = 2, 9, 3, 8, 5
    qkv = torch.randn(B, L, 3, H, d, generator=g, requires_grad=True)
    proj = torch.nn.Linear(H * d, D)
    mask = torch.tensor([[0, 1, 1, 0, 1, 0, 0, 0],
                         [1, 0, 0, 1, 0, 0, 1, 0]], dtype=torch.bool)
    noised = torch.tensor([[1, 0, 0, 1, 0, 0, 0, 0],
                           [0, 1, 0, 0, 0, 1, 0, 0]], dtype=torch.bool)
    probe = MassProbe(_corruption(mask, noised), 1, d, torch.float32,
                      device_type)
    assert probe.width == (d + 2 if device_type == 'cpu' else 16)
    out, c = attention_with_mass(qkv, proj, probe)
    w_out = torch.randn(out.shape, generator=g)
    w_c = torch.randn(c.shape, generator=g)
    inputs = (qkv, proj.weight, proj.bias)
    fused = torch.autograd.grad((out * w_out).sum() + (c * w_c).sum(), inputs)

    q, k, v = qkv.permute(2, 0, 3, 1, 4)
    ref_out = proj(torch.nn.functional.scaled_dot_product_attention(
        q, k, v).transpose(1, 2).reshape(B, L, H * d))
    is_m = torch.nn.functional.pad(mask, (1, 0)).float()
    is_s = torch.nn.functional.pad(noised, (1, 0)).float()
    ref_c = explicit_cross_mass(q, k, is_m, is_s)
    torch.testing.assert_close(out, ref_out, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(c, ref_c, atol=1e-6, rtol=1e-5)
    ref = torch.autograd.grad((ref_out * w_out).sum() + (ref_c * w_c).sum(),
                              inputs)
    for a, b in zip(fused, ref):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def _disruption_grads(model, x, corruption, explicit: bool):
    """The disruption loss of the model and its gradient w.r.t. the encoder
    parameters: fused (the training path) or by the explicit definition."""
    layers = model.disruption_layers
    params = [p for p in model.backbone.parameters() if p.requires_grad]
    if explicit:
        out = model.backbone(x, corruption, probe_layers=layers)
        is_m = torch.nn.functional.pad(corruption.mask, (1, 0)).float()
        is_s = torch.nn.functional.pad(corruption.noised, (1, 0)).float()
        loss = model.disruption.loss_weight * torch.stack([
            explicit_cross_mass(q, k, is_m, is_s).mean()
            for q, k in out.attention.values()
        ]).mean()
    else:
        _, out = model.corrupted_forward(x, corruption)
        assert out.attention == {}  # nothing but the masses is kept
        loss = model.disruption(out.cross_mass, corruption, 1)
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return loss, torch.cat([
        (g if g is not None else torch.zeros_like(p)).flatten()
        for g, p in zip(grads, params)
    ])


def test_fused_disruption_loss_matches_the_definition_value_and_gradient(
        build_model):
    model = build_model(tiny_noisemim())
    x = torch.randn(2, 3, 32, 32)
    c = model.backbone.sample_corruption(
        x, generator=torch.Generator().manual_seed(0))
    loss, grad = _disruption_grads(model, x, c, explicit=False)
    ref_loss, ref_grad = _disruption_grads(model, x, c, explicit=True)
    torch.testing.assert_close(loss, ref_loss, atol=1e-7, rtol=1e-5)
    assert ref_grad.abs().max() > 0
    torch.testing.assert_close(grad, ref_grad, atol=1e-7, rtol=1e-4)
    # ... and the probed blocks' output is the plain attention's.
    out = model.backbone(x, c, mass_layers=model.disruption_layers).tokens
    ref = model.backbone(x, c).tokens
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


# bf16 has an 8-bit mantissa (relative rounding 2**-9 per value); the fused
# kernel accumulates in fp32. Measured on this tiny model over 5 seeds: the
# value within 0.07 % of fp32, the gradient w.r.t. the encoder parameters
# within 2 % (relative L2 norm). The tolerances leave room for other seeds.
BF16_VALUE_RTOL = 1e-2
BF16_GRAD_RTOL = 5e-2


def test_bf16_autocast_disruption_loss_within_tolerance_of_fp32(build_model):
    """Under bf16 autocast the loss runs in bf16 (the fused CPU flash kernel,
    no fp32 cast) and stays close to the fp32 definition."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class AttentionCalls(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.calls = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if 'scaled_dot_product' in func.__name__:
                self.calls.append((func.__name__, args[0].dtype))
            return func(*args, **(kwargs or {}))

    model = build_model(tiny_noisemim())
    x = torch.randn(2, 3, 32, 32)
    c = model.backbone.sample_corruption(
        x, generator=torch.Generator().manual_seed(0))
    ref_loss, ref_grad = _disruption_grads(model, x, c, explicit=True)
    with torch.autocast('cpu', dtype=torch.bfloat16), \
            AttentionCalls() as seen:
        loss, grad = _disruption_grads(model, x, c, explicit=False)
    probed = [call for call in seen.calls
              if 'backward' not in call[0]][-len(model.disruption_layers):]
    assert probed and all(
        name.startswith('_scaled_dot_product_flash_attention')
        and dtype == torch.bfloat16 for name, dtype in probed), seen.calls
    assert loss.dtype == torch.float32
    assert abs(loss.item() - ref_loss.item()) <= BF16_VALUE_RTOL * abs(
        ref_loss.item())
    err = (grad.float() - ref_grad).norm() / ref_grad.norm()
    assert err <= BF16_GRAD_RTOL, err


def test_entropy_mode_under_bf16_keeps_only_the_log_softmax_in_fp32():
    q, k = _qk(B=2, H=2, L=9, d=8, seed=4)
    M = torch.tensor([[1, 2, 5], [0, 3, 4]])
    S = torch.tensor([[3, 6], [1, 8]])
    ref = masked_attention_entropy_gap(q, k, M, S)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        got = masked_attention_entropy_gap(q, k, M, S)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, ref, atol=2e-2, rtol=2e-2)


def test_hard_bias_is_built_once_in_the_compute_dtype():
    from noisemim.models.backbones.noisemim_vit import (cross_corruption_bias,
                                                        cross_corruption_mask)
    mask = torch.tensor([[0, 1, 1, 0, 1, 0, 0, 0]], dtype=torch.bool)
    noised = torch.tensor([[1, 0, 0, 1, 0, 0, 0, 0]], dtype=torch.bool)
    c = _corruption(mask, noised)
    bias = cross_corruption_bias(c, 1, torch.bfloat16)
    allowed = cross_corruption_mask(c, 1)
    assert bias.dtype == torch.bfloat16 and bias.shape == (1, 1, 9, 9)
    assert torch.equal(bias == 0, allowed)
    assert torch.isinf(bias[~allowed]).all()
    assert allowed.any(-1).all()  # no row is blocked entirely


def test_mass_from_queries_and_keys_has_the_explicit_gradient():
    """:func:`cross_corruption_mass` (analyses, attention dropout): one fused
    call on the M and S rows, with the definition's value and gradient."""
    g = torch.Generator().manual_seed(0)
    q = torch.randn(2, 3, 9, 8, generator=g, requires_grad=True)
    k = torch.randn(2, 3, 9, 8, generator=g, requires_grad=True)
    M = torch.tensor([[1, 2, 5], [2, 3, 8]])
    S = torch.tensor([[3, 6], [1, 6]])
    weights = torch.randn(2, 3, generator=g)
    fused = torch.autograd.grad((cross_corruption_mass(q, k, M, S) *
                                 weights).sum(), (q, k))
    is_m = torch.zeros(2, 9).scatter_(1, M, 1.)
    is_s = torch.zeros(2, 9).scatter_(1, S, 1.)
    explicit = torch.autograd.grad(
        (explicit_cross_mass(q, k, is_m, is_s) * weights).sum(), (q, k))
    for a, b in zip(fused, explicit):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_with_attention_dropout_the_mass_is_of_the_undropped_attention(
        build_model):
    """Dropout would drop the mass channels too: the probed blocks then take
    c from their queries and keys (the definition), dropout unchanged."""
    model = build_model(tiny_noisemim(
        backbone=tiny_backbone(layer_cfgs=dict(attn_drop_rate=0.5)))).train()
    assert model.backbone.layers[2].attn.attn_drop == 0.5
    x = torch.randn(2, 3, 32, 32)
    c = model.backbone.sample_corruption(
        x, generator=torch.Generator().manual_seed(0))
    layers = model.disruption_layers
    torch.manual_seed(0)
    fused = model.backbone(x, c, mass_layers=layers)
    torch.manual_seed(0)
    probed = model.backbone(x, c, probe_layers=layers)
    torch.testing.assert_close(fused.tokens, probed.tokens)
    is_m = torch.nn.functional.pad(c.mask, (1, 0)).float()
    is_s = torch.nn.functional.pad(c.noised, (1, 0)).float()
    for i in layers:
        q, k = probed.attention[i]
        torch.testing.assert_close(fused.cross_mass[i],
                                   explicit_cross_mass(q, k, is_m, is_s),
                                   atol=1e-6, rtol=1e-5)


# -- the disruption loss at its minimum (issue 22) ----------------------------
# The references below are the code as it was before the change: q, k and v
# all padded with the mass channels, the reduction under autocast, the hard
# bias allocated (B, 1, L, L).


def padded_reference(qkv, proj, probe_mask, probe_noised, d, width):
    """The previous ``attention_with_mass``: q, k, v padded to ``width``."""
    B, L, _, H, _ = qkv.shape
    is_m = F.pad(probe_mask, (1, 0)).float()
    is_s = F.pad(probe_noised, (1, 0)).float()
    extra = torch.zeros(B, L, 3, 1, width - d)
    extra[:, :, 2, 0, 0] = is_s
    extra[:, :, 2, 0, 1] = is_m
    q, k, v = torch.cat([qkv, extra.to(qkv.dtype).expand(-1, -1, -1, H, -1)],
                        -1).permute(2, 0, 3, 1, 4).unbind(0)
    out = F.scaled_dot_product_attention(q, k, v, scale=d**-0.5)
    tokens = out.transpose(1, 2).reshape(B, L, H * width)
    weight = F.pad(proj.weight.view(-1, H, d), (0, width - d)).flatten(1)
    rows = torch.zeros(H, 2, H, width, dtype=weight.dtype)
    for c in range(2):
        rows[:, c, :, d + c] = torch.eye(H, dtype=weight.dtype)
    weight = torch.cat([weight, rows.view(2 * H, H * width)])
    y, mass = F.linear(tokens, weight, F.pad(proj.bias, (0, 2 * H))).split(
        [proj.out_features, 2 * H], -1)
    num_m, num_s = int(probe_mask.sum(1)[0]), int(probe_noised.sum(1)[0])
    row_weights = torch.stack([is_m / num_m, is_s / num_s], -1)
    return y, torch.einsum('blhc,blc->bh',
                           mass.view(B, L, H, 2).float(), row_weights)


class AttentionShapes:
    """Records the (q, k, v) widths and the mask of each attention call."""

    def __init__(self):
        from torch.overrides import TorchFunctionMode

        calls = self.calls = []

        class Mode(TorchFunctionMode):
            def __torch_function__(self, func, types, args=(), kwargs=None):
                kwargs = kwargs or {}
                if func is F.scaled_dot_product_attention:
                    mask = kwargs.get('attn_mask', None)
                    if mask is None and len(args) > 3:
                        mask = args[3]
                    calls.append(([a.shape[-1] for a in args[:3]], mask))
                return func(*args, **kwargs)

        self.mode = Mode()

    def __enter__(self):
        self.mode.__enter__()
        return self

    def __exit__(self, *exc):
        return self.mode.__exit__(*exc)


MASK = torch.tensor([[0, 1, 1, 0, 1, 0, 0, 0], [1, 0, 0, 1, 0, 0, 1, 0]],
                    dtype=torch.bool)
NOISED = torch.tensor([[1, 0, 0, 1, 0, 0, 0, 0], [0, 1, 0, 0, 0, 1, 0, 0]],
                      dtype=torch.bool)


@pytest.mark.parametrize('device_type', ['cpu', 'cuda'])
def test_mass_channels_on_v_alone_where_the_kernel_allows(device_type):
    """On CUDA only v carries the mass channels (q and k at head width); on
    CPU (its flash kernel wants one width) q, k and v are padded as before,
    bit for bit. Both give the previous output and c."""
    from noisemim.models.mass_attention import MassProbe, attention_with_mass
    g = torch.Generator().manual_seed(1)
    B, L, H, d, D = 2, 9, 3, 8, 5
    qkv = torch.randn(B, L, 3, H, d, generator=g)
    proj = torch.nn.Linear(H * d, D)
    probe = MassProbe(_corruption(MASK, NOISED), 1, d, torch.float32,
                      device_type)
    with AttentionShapes() as seen:
        out, c = attention_with_mass(qkv, proj, probe)
    ref_out, ref_c = padded_reference(qkv, proj, MASK, NOISED, d,
                                      probe.width)
    if device_type == 'cuda':
        assert probe.value_only and seen.calls[0][0] == [d, d, 16]
        torch.testing.assert_close(out, ref_out, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(c, ref_c, atol=1e-6, rtol=1e-5)
    else:
        assert not probe.value_only and seen.calls[0][0] == [d + 2] * 3
        assert torch.equal(out, ref_out) and torch.equal(c, ref_c)


def test_mass_reduction_runs_in_fp32_under_autocast():
    """Under bf16 autocast the weighted sum of the mass channels is fp32
    arithmetic on the bf16 channels (it was a bf16 product before)."""
    from noisemim.models.mass_attention import MassProbe, attention_with_mass
    g = torch.Generator().manual_seed(2)
    B, L, H, d, D = 2, 9, 3, 8, 5
    qkv = torch.randn(B, L, 3, H, d, generator=g)
    proj = torch.nn.Linear(H * d, D)
    probe = MassProbe(_corruption(MASK, NOISED), 1, d, torch.bfloat16)
    captured = {}
    project = probe.project

    def spy(out, proj):
        captured['out'] = out
        return project(out, proj)

    probe.project = spy
    with torch.autocast('cpu', dtype=torch.bfloat16):
        _, c = attention_with_mass(qkv, proj, probe)
        before = torch.einsum(  # the previous reduction, under autocast
            'blhc,blc->bh', captured['out'].transpose(1, 2)[..., d:d + 2]
            .float(), probe.row_weights)
    assert captured['out'].dtype == torch.bfloat16 and c.dtype == torch.float32
    channels = captured['out'].transpose(1, 2)[..., d:d + 2].double()
    exact = torch.einsum('blhc,blc->bh', channels, probe.row_weights.double())
    torch.testing.assert_close(c.double(), exact, atol=1e-6, rtol=1e-6)
    assert (before.double() - exact).abs().max() > 1e-4  # bf16 rounding


def test_mass_from_queries_and_keys_with_the_cuda_layout():
    """:func:`cross_corruption_mass` with a narrow value (CUDA's layout, run
    here on CPU's math kernel) equals the definition."""
    q, k = _qk(B=2, H=3, L=9, d=8, seed=5)
    M = torch.tensor([[1, 2, 5], [2, 3, 8]])
    S = torch.tensor([[3, 6], [1, 6]])
    is_m = torch.zeros(2, 9).scatter_(1, M, 1.)
    is_s = torch.zeros(2, 9).scatter_(1, S, 1.)
    with AttentionShapes() as seen:
        got = cross_corruption_mass(q, k, M, S, device_type='cuda')
    assert seen.calls[0][0] == [8, 8, 8]  # the value: 2 channels, aligned
    torch.testing.assert_close(got, explicit_cross_mass(q, k, is_m, is_s),
                               atol=1e-6, rtol=1e-5)
    assert torch.equal(cross_corruption_mass(q, k, M, S),
                       cross_corruption_mass(q, k, M, S, device_type='cpu'))


def test_hard_bias_rows_are_aligned_and_shared_by_all_blocks(
        build_model, monkeypatch):
    from noisemim.models.backbones import noisemim_vit
    model = build_model(
        tiny_noisemim(disruption=dict(type='DisruptionLoss', mode='hard')))
    layers = model.disruption_layers
    x = torch.randn(2, 3, 32, 32)
    c = model.backbone.sample_corruption(
        x, generator=torch.Generator().manual_seed(3))
    bias = noisemim_vit.cross_corruption_bias(c, 1, torch.float32)
    allowed = noisemim_vit.cross_corruption_mask(c, 1)
    previous = torch.zeros(allowed.shape).masked_fill_(~allowed, -math.inf)
    assert bias.shape == (2, 1, 17, 17) and torch.equal(bias, previous)
    assert all(s % 8 == 0 for s in bias.stride()[:-1]) and bias.stride(-1) == 1
    with AttentionShapes() as seen:
        aligned = model.backbone(x, c, blocked_layers=layers).tokens
    masks = [mask for _, mask in seen.calls if mask is not None]
    assert len(masks) == len(layers) == 2
    # one tensor, built once, aligned, passed to every blocked block
    assert len({m.data_ptr() for m in masks}) == 1
    assert all(s % 8 == 0 for s in masks[0].stride()[:-1])
    # the encoder's output is that of the previous, unaligned bias
    monkeypatch.setattr(noisemim_vit, 'cross_corruption_bias',
                        lambda corruption, extra, dtype: previous.to(dtype))
    unaligned = model.backbone(x, c, blocked_layers=layers).tokens
    torch.testing.assert_close(aligned, unaligned, atol=1e-6, rtol=1e-6)
