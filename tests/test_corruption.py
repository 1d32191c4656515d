import hashlib
import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from mmengine.logging import MessageHub

from noisemim.models import sample_rng
from noisemim.models.corruption import (SAMPLES_PER_ITER_KEY, SHARED_SEED_KEY,
                                        CorruptionSampler, SampleRandom,
                                        add_noise, cosine_alpha_bar, mix32)
from noisemim.models.sample_rng import from_lanes, mix32_lanes


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


@pytest.mark.parametrize('scale_grad', [True, False])
def test_the_noise_scales_with_the_tokens_in_the_gradient_too(scale_grad):
    # The noised token is proportional to h (its noise is rms(h) * eps), so a
    # loss that ignores the tokens' scale (here after a LayerNorm) gets no
    # gradient along h: grad . h = 0 (Euler). With the rms detached
    # (scale_grad=False) the gradient rewards a larger h, as if that beat
    # the noise.
    torch.manual_seed(0)
    tokens = torch.randn(2, 6, 8, requires_grad=True)
    index = torch.tensor([[1, 4], [0, 5]])
    noisy, _ = add_noise(tokens, index, torch.tensor([0.3, 0.6]),
                         torch.randn(2, 2, 8), scale_grad)
    weights = torch.randn(8)
    (F.layer_norm(noisy, (8, )) * weights).sum().backward()
    along_scale = (tokens.grad * tokens).sum().abs()
    bound = 1e-5 * tokens.grad.norm() * tokens.norm()
    assert (along_scale < bound) == scale_grad


def test_an_all_zero_token_gets_a_finite_gradient():
    tokens = torch.zeros(1, 3, 4, requires_grad=True)
    noisy, _ = add_noise(tokens, torch.tensor([[1]]), torch.tensor([0.5]),
                         torch.randn(1, 1, 4))
    noisy.sum().backward()
    assert torch.isfinite(tokens.grad).all()


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


# Counter-based per-sample random numbers ------------------------------------
class Bounded(int):
    """An int that fails if an operation on it reaches 2**63 (int64 overflow)."""

    def _check(self, value):
        assert 0 <= value < 2**63, value
        return Bounded(value)

    def __mul__(self, other):
        return self._check(int(self) * int(other))

    def __add__(self, other):
        return self._check(int(self) + int(other))

    def __lshift__(self, other):
        return self._check(int(self) << int(other))

    def __rshift__(self, other):
        return self._check(int(self) >> int(other))

    def __xor__(self, other):
        return self._check(int(self) ^ int(other))

    def __and__(self, other):
        return self._check(int(self) & int(other))


def test_mix32_is_a_bijection_that_stays_below_2_63_and_matches_int64():
    edge = [0, 1, 2**16 - 1, 2**31, 2**32 - 1, 0x9E3779B9]
    for x in edge + torch.randint(2**32, (200, )).tolist():
        assert 0 <= mix32(Bounded(x)) < 2**32  # no intermediate >= 2**63
    x = torch.tensor(edge)
    assert mix32(x).tolist() == [mix32(v) for v in edge]
    assert mix32(torch.arange(2**18)).unique().numel() == 2**18


def test_uniforms_and_normals_have_the_right_moments():
    random = SampleRandom(1234, torch.arange(64))
    u = random.uniform(7, 4096)
    assert 0 < u.min() and u.max() < 1
    n = u.numel()  # 262144: standard errors ~0.0006 (mean), ~0.0003 (var)
    assert abs(u.mean() - 0.5) < 0.003
    assert abs(u.var() - 1 / 12) < 0.002
    z = random.normal(8, 64, 64).flatten()
    assert abs(z.mean()) < 5 / n**.5
    assert abs(z.var() - 1) < 5 * (2 / n)**.5
    assert abs(z.pow(3).mean()) < 5 * (15 / n)**.5  # skewness 0
    assert abs(z.pow(4).mean() - 3) < 5 * (96 / n)**.5  # kurtosis 3
    # Box-Muller pairs are uncorrelated, and so are neighbouring elements.
    pairs = z.view(-1, 2)
    assert abs(torch.corrcoef(pairs.T)[0, 1]) < 5 / (n / 2)**.5
    assert abs(torch.corrcoef(torch.stack([z[:-1], z[1:]]))[0, 1]) < 5 / n**.5
    # The share beyond 2 sigma is the normal's 4.55 %.
    assert abs((z.abs() > 2).float().mean() - 0.0455) < 0.003


def test_samples_streams_and_seeds_draw_different_numbers():
    a = SampleRandom(0, torch.arange(32)).normal(4, 500)
    corr = torch.corrcoef(a)
    off_diagonal = corr[~torch.eye(32, dtype=torch.bool)]
    assert off_diagonal.abs().max() < 0.25  # 500 numbers: sd ~0.045
    b = SampleRandom(0, torch.arange(32)).normal(5, 500)
    c = SampleRandom(1, torch.arange(32)).normal(4, 500)
    for other in (b, c):
        assert torch.corrcoef(torch.stack([a.flatten(),
                                           other.flatten()]))[0, 1].abs() < .02
    # Large positions (beyond 2**32) key distinct samples too.
    big = SampleRandom(0, torch.tensor([5, 5 + 2**32, 5 + 2**40]))
    assert big.bits(1, 8).unique(dim=0).shape[0] == 3


def test_a_sample_is_the_same_in_any_batch_it_is_drawn_in():
    s = sampler()
    whole = s.sample(SampleRandom(3, torch.arange(8)), (8, 8))
    # Two processes: rank r draws positions r, r + 2, ...
    for rank in (0, 1):
        part = s.sample(SampleRandom(3, torch.arange(rank, 8, 2)), (8, 8))
        for name in ('mask', 'noised', 'masked_index', 'noised_index', 't',
                     'eps'):
            assert torch.equal(getattr(part, name),
                               getattr(whole, name)[rank::2]), name
    assert not torch.equal(whole.mask[0], whole.mask[1])
    assert not torch.equal(whole.eps[0], whole.eps[1])


def test_masks_have_exact_counts_over_many_samples():
    c = sampler().sample(SampleRandom(9, torch.arange(512)), (8, 8))
    assert (c.mask.sum(1) == 40).all() and (c.noised.sum(1) == 12).all()
    assert not (c.mask & c.noised).any()
    # every patch is masked about 40/64 of the time
    share = c.mask.float().mean(0)
    assert (share - 40 / 64).abs().max() < 0.12
    assert ((c.t >= 0) & (c.t <= 1)).all() and c.t.std() > 0.2


def test_runner_keys_follow_the_sample_stream_across_accumulation_splits():
    # Inside a Runner the key is (shared seed, iter * samples_per_iter + row):
    # iteration 3 with batch 8 covers the samples of iterations 6 and 7 with
    # batch 4 (gradient accumulation over two batches of 4).
    hub = MessageHub.get_instance('test_corruption_keys')
    hub.update_info(SHARED_SEED_KEY, 11)
    s = sampler()

    def draw(iteration, batch):
        hub.update_info('iter', iteration)
        hub.update_info(SAMPLES_PER_ITER_KEY, batch)
        return s(batch, (8, 8))

    try:
        whole, first, second = draw(3, 8), draw(6, 4), draw(7, 4)
        for name in ('mask', 'noised', 't', 'eps'):
            both = torch.cat([getattr(first, name), getattr(second, name)])
            assert torch.equal(both, getattr(whole, name)), name
        assert not torch.equal(draw(4, 8).eps, whole.eps)
    finally:  # later tests in this process see no Runner's iteration
        MessageHub.get_instance('test_corruption_keys_done')


# The numbers must not change (resumes and the study depend on them) -------
def digest(t):
    return hashlib.sha256(t.contiguous().numpy().tobytes()).hexdigest()[:16]


# sha256 prefixes of bits (int64) and uniforms (float32) computed by the
# first version of the draws (int64 lanes, commit b2483d8), before the
# per-element work moved to 32-bit lanes. Both are exact arithmetic, so they
# hold on any machine.
KEYS = [  # seed, positions, stream, shape, digest(bits), digest(uniform)
    (0, [0, 1, 2, 3, 4], 1, (7, ), '240ba59f53e1318b', '542128397aee6e6b'),
    (1234, [5, 5 + 2**32, 5 + 2**40, 2**62], 4, (3, 5), '034589f6a912af6b',
     'fadefafaf78b8dab'),
    (2**63 + 5, [17, 99], 2**32 - 1, (64, ), 'e72ee8b9d858f9c3',
     '6c6efb16e1ae488f'),
    (-3, [0, 2**31], 0, (2, 2, 2), '043624c3ed37ae22', 'b118e7eaab1178af'),
]


@pytest.mark.parametrize('seed, positions, stream, shape, bits, uniform',
                         KEYS)
def test_the_numbers_are_those_of_the_first_version(seed, positions, stream,
                                                    shape, bits, uniform):
    random = SampleRandom(seed, torch.tensor(positions))
    assert digest(random.bits(stream, *shape)) == bits
    assert digest(random.uniform(stream, *shape)) == uniform


def reference_key(seed, p, stream):
    """The first version's per-sample key, on Python ints."""
    seed %= 2**64
    state = mix32(mix32((seed & 0xFFFFFFFF) ^ 0x9E3779B9) ^ (seed >> 32))
    key = mix32(mix32((p & 0xFFFFFFFF) ^ state) ^ (p >> 32))
    return mix32(key ^ stream)


def reference_uniform(seed, positions, stream, count):
    """The first version's uniforms: ``mix(key ^ mix(j ^ salt))``, top 23
    bits, ``(b + 0.5) / 2**23`` (on Python ints, then float32)."""
    rows = []
    for p in positions:
        key = reference_key(seed, p, stream)
        rows.append([mix32(key ^ mix32(j ^ 0x85EBCA6B)) >> 9
                     for j in range(count)])
    return (torch.tensor(rows, dtype=torch.int64).float() + 0.5) * 2.**-23


def reference_normal(u, count):
    """The first version's Box-Muller, op for op, on ``(B, pairs, 2)``."""
    radius = torch.sqrt(-2 * torch.log(u[..., 0]))
    angle = (2 * math.pi) * u[..., 1]
    z = torch.stack((radius * torch.cos(angle), radius * torch.sin(angle)),
                    dim=-1).view(u.shape[0], -1)
    return z[:, :count]


def test_the_draws_equal_a_reference_on_python_ints():
    positions = [0, 7, 2**32 + 3, 2**45 + 11]
    random = SampleRandom(2**40 + 9, torch.tensor(positions))
    expected = reference_uniform(2**40 + 9, positions, 6, 2 * 13)
    assert torch.equal(random.uniform(6, 2 * 13), expected)
    # an odd count drops the last normal of the last pair
    z = random.normal(6, 25)
    assert torch.equal(z, reference_normal(expected.view(4, 13, 2), 25))
    exact = (-2 * expected[:, 0::2].double().log()).sqrt() * torch.cos(
        2 * math.pi * expected[:, 1::2].double())
    torch.testing.assert_close(z[:, 0::2], exact[:, :13].float())


def test_the_corruption_is_that_of_the_first_version():
    # ViT-B/16 sizes: 14x14 patches, 32 px units, 38 noised patches x 768.
    s = sampler(patch_size=16, mask_unit=32, noise_channels=768)
    random = SampleRandom(7, torch.arange(100, 108))
    c = s.sample(random, (14, 14))
    expected = dict(mask='fe073b382f48f161', noised='37f48c9a1ed6da8c',
                    masked_index='8df00da8c0146551',
                    noised_index='5e7ddd20303e8261', t='6fee8d3cbbc7a051')
    assert {k: digest(getattr(c, k)) for k in expected} == expected
    u = random.uniform(4, 38 * 768 // 2, 2)
    assert torch.equal(c.eps.flatten(1), reference_normal(u, 38 * 768))


def test_32_bit_lanes_mix_as_the_int64_reference():
    x = torch.cat([torch.tensor([0, 1, 2**16 - 1, 2**31 - 1, 2**31,
                                 2**32 - 1]),
                   torch.randint(2**32, (4096, ))])
    assert torch.equal(from_lanes(mix32_lanes(x.to(torch.int32))), mix32(x))


@pytest.fixture
def compiled_draws():
    yield sample_rng.use_compiled_draws
    sample_rng.use_compiled_draws(None)


def test_compiled_uniforms_are_bit_identical(compiled_draws):
    # Exact integer arithmetic: inductor's kernel must give eager's bits
    # (a real compile, ~10 s cold; the Box-Muller step is left eager here).
    random = SampleRandom(5, torch.arange(16))
    eager = random.uniform(4, 101)
    compiled_draws(True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        u = random.uniform(4, 101)
    messages = [str(w.message) for w in caught if 'is off' in str(w.message)]
    assert torch.equal(u, eager)
    assert not any('differs' in m for m in messages), messages
    if messages:
        pytest.skip(messages[0])  # e.g. no C++ compiler for inductor here
    assert ('uniforms', 'cpu', (16, ), (1, 101)) in sample_rng._checked


def test_a_compiled_kernel_that_differs_stays_eager(compiled_draws,
                                                    monkeypatch):
    # e.g. a compiled log/cos that rounds apart from eager's: the first call
    # of each shape is checked, and the numbers never change.
    random = SampleRandom(5, torch.arange(4))
    eager = random.normal(2, 9)

    def off_by_an_ulp(fn, **kwargs):
        return lambda *args: torch.nextafter(fn(*args), torch.tensor(9.))

    monkeypatch.setattr(torch, 'compile', off_by_an_ulp)
    monkeypatch.setattr(sample_rng, '_compiled', {})
    monkeypatch.setattr(sample_rng, '_off', set())
    compiled_draws(True)
    with pytest.warns(UserWarning, match='compiled uniforms differs'):
        assert torch.equal(random.normal(2, 9), eager)
    assert sample_rng._off == {'uniforms', 'normals'}


def test_a_failing_compiler_falls_back_to_eager(compiled_draws, monkeypatch):
    random = SampleRandom(5, torch.arange(4))
    eager = random.uniform(2, 9)

    def broken(*args, **kwargs):
        raise RuntimeError('no compiler')

    monkeypatch.setattr(torch, 'compile', broken)
    monkeypatch.setattr(sample_rng, '_compiled', {})
    monkeypatch.setattr(sample_rng, '_off', set())
    compiled_draws(True)
    with pytest.warns(UserWarning, match='uniforms is off.*no compiler'):
        assert torch.equal(random.uniform(2, 9), eager)
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # eager from now on, no new warning
        assert torch.equal(random.uniform(2, 9), eager)


def test_a_dispatch_mode_sees_the_eager_ops(compiled_draws):
    # (dynamo skips frames under a TorchDispatchMode, e.g. an op counter:
    # the draw then runs eager, and the compiled kernels stay on)
    from torch.utils._python_dispatch import TorchDispatchMode

    class Names(TorchDispatchMode):
        seen = set()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.seen.add(func.overloadpacket.__name__)
            return func(*args, **(kwargs or {}))

    positions = torch.arange(3)
    eager = SampleRandom(1, positions).uniform(4, 7)
    compiled_draws(True)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        with Names():
            u = SampleRandom(1, positions).uniform(4, 7)
    assert torch.equal(u, eager) and 'mul_' in Names.seen
    assert not sample_rng._off & {'keys', 'uniforms'}
