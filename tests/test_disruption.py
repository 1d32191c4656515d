"""The disruption loss does what it is for: less attention between M and S."""
import torch

from conftest import tiny_noisemim
from noisemim.models.backbones.noisemim_vit import cross_corruption_mask


def measured_mass(model, x, corruption, hard=False):
    """M <-> S attention mass, measured from the attention probabilities that
    the encoder used in the disruption blocks."""
    layers = model.disruption_layers
    with torch.no_grad():
        out = model.backbone(x, corruption, probe_layers=layers,
                             blocked_layers=layers if hard else ())
    total = []
    for q, k in out.attention.values():
        A = (q @ k.transpose(-2, -1) * q.shape[-1]**-0.5)
        if hard:
            allowed = cross_corruption_mask(corruption, 1)
            A = A.masked_fill(~allowed, float('-inf'))
        A = A.softmax(-1)
        is_m = torch.nn.functional.pad(corruption.mask, (1, 0)).float()
        is_s = torch.nn.functional.pad(corruption.noised, (1, 0)).float()
        m_to_s = torch.einsum('bhij,bi,bj->bh', A, is_m, is_s)
        s_to_m = torch.einsum('bhij,bi,bj->bh', A, is_s, is_m)
        total.append((m_to_s + s_to_m).sum())
    return torch.stack(total).sum().item()


def test_optimising_disruption_alone_lowers_cross_attention(build_model):
    torch.manual_seed(0)
    model = build_model(tiny_noisemim())
    x = torch.randn(4, 3, 32, 32)
    corruption = model.backbone.sample_corruption(
        x, generator=torch.Generator().manual_seed(0))
    before = measured_mass(model, x, corruption)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(15):
        _, out = model.corrupted_forward(x, corruption)
        assert set(out.cross_mass) == set(model.disruption_layers)
        loss = model.disruption(out.cross_mass, corruption, 1)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = measured_mass(model, x, corruption)
    assert after < 0.5 * before, (before, after)


def test_hard_disentanglement_leaves_no_cross_attention(build_model):
    model = build_model(
        tiny_noisemim(disruption=dict(type='DisruptionLoss', mode='hard')))
    x = torch.randn(2, 3, 32, 32)
    corruption = model.backbone.sample_corruption(x)
    assert model.disruption_layers == (2, 3)
    assert measured_mass(model, x, corruption, hard=True) == 0.0
    assert measured_mass(model, x, corruption) > 0.0
    assert set(model.loss(x, [])) == {'loss_mim', 'loss_denoise'}


def test_hard_mask_changes_the_encoder_output(build_model):
    soft = build_model(tiny_noisemim())
    hard = build_model(
        tiny_noisemim(disruption=dict(type='DisruptionLoss', mode='hard')))
    hard.load_state_dict(soft.state_dict())
    x = torch.randn(2, 3, 32, 32)
    c = soft.backbone.sample_corruption(x)
    a = soft.corrupted_forward(x, c)[1].tokens
    b = hard.corrupted_forward(x, c)[1].tokens
    assert not torch.allclose(a, b)
