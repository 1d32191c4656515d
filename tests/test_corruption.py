import math

import pytest
import torch

from noisemim.models.corruption import (CorruptionSampler, add_noise,
                                        cosine_alpha_bar)


def sampler(**kw):
    args = dict(patch_size=8, mask_ratio=0.6, mask_unit=16, noise_ratio=0.5,
                t_range=(0., 1.), noise_channels=5)
    args.update(kw)
    return CorruptionSampler(**args)


def test_mask_and_noised_set_are_disjoint_with_configured_sizes():
    c = sampler()(6, (8, 8), generator=torch.Generator().manual_seed(0))
    # 16 units of 2x2 patches; ceil(0.6 * 16) = 10 units = 40 patches masked.
    assert c.mask.sum(1).tolist() == [40] * 6
    # half of the 24 visible patches are noised
    assert c.noised.sum(1).tolist() == [12] * 6
    assert not (c.mask & c.noised).any()
    assert c.eps.shape == (6, 12, 5)
    # the indices describe the same sets
    assert torch.equal(c.mask.gather(1, c.masked_index),
                       torch.ones_like(c.masked_index, dtype=torch.bool))
    assert torch.equal(c.noised.gather(1, c.noised_index),
                       torch.ones_like(c.noised_index, dtype=torch.bool))


def test_mask_is_made_of_whole_units():
    c = sampler()(4, (8, 8), generator=torch.Generator().manual_seed(1))
    grid = c.mask.view(4, 4, 2, 4, 2)
    # every 2x2 unit is all masked or all visible
    assert torch.equal(grid.all(2).all(-1), grid.any(2).any(-1))


def test_corruption_is_reproducible_under_a_seed():
    draw = lambda seed: sampler()(3, (8, 8), generator=torch.Generator().manual_seed(seed))  # noqa
    a, b, c = draw(7), draw(7), draw(8)
    for name in ('mask', 'noised', 't', 'eps'):
        assert torch.equal(getattr(a, name), getattr(b, name))
    assert not torch.equal(a.mask, c.mask)
    torch.manual_seed(3)
    d = sampler()(3, (8, 8))
    torch.manual_seed(3)
    e = sampler()(3, (8, 8))
    assert torch.equal(d.noised, e.noised) and torch.equal(d.eps, e.eps)


def test_alpha_bar_schedule_endpoints():
    ab = cosine_alpha_bar(torch.tensor([0., 0.5, 1.]))
    assert ab[0] == pytest.approx(math.cos(0.008 / 1.008 * math.pi / 2)**2)
    assert ab[2] == pytest.approx(1e-4)  # clipped at t = 1
    assert ab[0] > ab[1] > ab[2]
    assert ab[1] == pytest.approx(math.cos(0.508 / 1.008 * math.pi / 2)**2)


def test_add_noise_follows_the_formula_and_touches_only_the_index():
    tokens = torch.randn(2, 6, 4)
    index = torch.tensor([[1, 4], [0, 5]])
    ab = torch.tensor([0.25, 0.81])
    eps = torch.randn(2, 2, 4)
    noisy, clean = add_noise(tokens, index, ab, eps)
    for b in range(2):
        for n, i in enumerate(index[b].tolist()):
            h = tokens[b, i]
            rms = h.pow(2).mean().sqrt()
            expected = ab[b].sqrt() * h + (1 - ab[b]).sqrt() * rms * eps[b, n]
            torch.testing.assert_close(noisy[b, i], expected)
            torch.testing.assert_close(clean[b, n], h)
    untouched = torch.ones(2, 6, dtype=torch.bool)
    untouched.scatter_(1, index, False)
    assert torch.equal(noisy[untouched], tokens[untouched])


@pytest.mark.parametrize('kw, word', [
    (dict(mask_ratio=1.0), 'mask_ratio'),
    (dict(noise_ratio=-0.1), 'noise_ratio'),
    (dict(mask_unit=12), 'mask_unit'),
    (dict(t_range=(0.5, 0.2)), 't_range'),
])
def test_bad_values_are_named(kw, word):
    with pytest.raises(ValueError, match=word):
        sampler(**kw)


def test_no_visible_patch_left_is_an_error():
    with pytest.raises(ValueError, match='no visible'):
        sampler(mask_ratio=0.99).counts((2, 2))
