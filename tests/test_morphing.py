"""Dynamic Token Morphing: source matrices, ToMe matching, scheduler, averages."""
import math

import pytest
import torch
import torch.nn.functional as F
from mmengine.logging import MessageHub

from noisemim.models.morphing import (DynamicTokenMorphing,
                                      benchmark_morphing, group_mean,
                                      merge_counts, morph, morph_average)


def _tokens(B=3, N=24, C=8, seed=0):
    return torch.randn(B, N, C, generator=torch.Generator().manual_seed(seed))


def reference_groups(tokens, r, iters, protect_first=True):
    """ToMe's bipartite soft matching written out per sample on lists of
    token indices: alternate split, cosine similarity of the groups' mean
    tokens, the ``r`` best-matched groups of A join their partner in B."""
    out = []
    for x in tokens.double():
        groups = [[n] for n in range(x.shape[0])]
        for _ in range(iters):
            merged = min(r, (len(groups) - int(protect_first)) // 2)
            if merged <= 0:
                break
            means = [x[g].mean(0) for g in groups]
            a, b = groups[0::2], groups[1::2]
            best = []
            for i, m in enumerate(means[0::2]):
                sims = [F.cosine_similarity(m, o, dim=0).item()
                        for o in means[1::2]]
                j = max(range(len(sims)), key=sims.__getitem__)
                best.append((-math.inf if protect_first and i == 0 else
                             sims[j], j))
            order = sorted(range(len(a)), key=lambda i: -best[i][0])
            kept = order[merged:]
            if protect_first:
                kept = sorted(kept)
            new_b = [list(g) for g in b]
            for i in order[:merged]:
                new_b[best[i][1]] += a[i]
            groups = [a[i] for i in kept] + new_b
        out.append(groups)
    return out


def groups_of(source):
    """The groups of a ``(G, N)`` source matrix, as sets of tokens."""
    return {frozenset(row.nonzero().flatten().tolist()) for row in source}


@pytest.mark.parametrize('r, iters, protect_first', [(3, 4, False),
                                                     (5, 2, True),
                                                     (100, 3, False),
                                                     (1, 14, False)])
def test_source_matrix_is_a_partition_of_the_tokens(r, iters, protect_first):
    tokens = _tokens()
    S = morph(tokens, r, iters, protect_first)
    merged = sum(merge_counts(24, r, iters, protect_first))
    assert S.shape == (3, 24 - merged, 24)
    assert set(S.unique().tolist()) <= {0., 1.}
    assert torch.equal(S.sum(1), torch.ones(3, 24))  # one 1 per token column
    assert (S.sum(2) >= 1).all()  # no empty group


@pytest.mark.parametrize('r, iters, protect_first', [(3, 4, False),
                                                     (4, 3, True),
                                                     (7, 2, False)])
def test_matches_tome_matching_written_out(r, iters, protect_first):
    tokens = _tokens(seed=1)
    S = morph(tokens, r, iters, protect_first)
    for b, groups in enumerate(reference_groups(tokens, r, iters,
                                                protect_first)):
        assert groups_of(S[b]) == {frozenset(g) for g in groups}
    if protect_first:
        assert (S[:, :, 0].argmax(1) == 0).all()
        assert torch.equal(S[:, 0].sum(-1), torch.ones(3))  # never merged


def test_similar_tokens_are_merged_first():
    # Token 3 (in B) is a scaled copy of token 2 (in A); the rest is noise.
    tokens = _tokens(B=1, N=8, C=16, seed=2)
    tokens[0, 3] = 3 * tokens[0, 2]  # cosine similarity 1 to token 2
    S = morph(tokens, r=1, iters=1)
    assert frozenset({2, 3}) in groups_of(S[0])
    # Plain ToMe merges the first token too; by default it is protected.
    tokens[0, 1] = 3 * tokens[0, 0]
    plain = groups_of(morph(tokens, r=2, iters=1, protect_first=False)[0])
    assert {frozenset({0, 1}), frozenset({2, 3})} <= plain
    protected = groups_of(morph(tokens, r=2, iters=1)[0])
    assert {frozenset({0}), frozenset({2, 3})} <= protected


def test_the_first_patch_is_never_merged_by_default():
    # As the official DTM code (ToMe's class_token=True on patch tokens).
    tokens = _tokens(B=4, N=24, seed=5)
    tokens[:, 1] = 2 * tokens[:, 0]  # token 0's best match is token 1
    dtm = DynamicTokenMorphing(num_merge_range=(23, 23), iters_range=(3, 3))
    assert dtm.protect_first
    for S in dtm(tokens) + [morph(tokens, 100, 5)]:
        assert torch.equal(S[:, 0], F.one_hot(torch.zeros(4, dtype=torch.long),
                                              24).float())  # group 0 = {0}
        assert S.shape[1] < 24
    plain = DynamicTokenMorphing(num_merge_range=(23, 23), iters_range=(3, 3),
                                 protect_first=False)(tokens)
    assert all((S[:, :, 0] * S[:, :, 1]).sum() == 4 for S in plain)


def test_zero_merges_give_the_identity():
    tokens = _tokens()
    for r, iters in [(0, 1), (0, 14)]:
        S = morph(tokens, r, iters)
        assert torch.equal(S, torch.eye(24).expand(3, 24, 24))
        x = torch.randn(3, 24, 5)
        assert torch.equal(morph_average(x, S), x)
    draws = DynamicTokenMorphing(num_merge_range=(0, 0)).draw(
        torch.Generator().manual_seed(0))
    assert [d.r for d in draws] == [0, 0]


def test_group_averages_equal_a_direct_computation():
    tokens = _tokens(seed=3)
    S = morph(tokens, 4, 3)
    x = torch.randn(3, 24, 5, dtype=torch.float64)
    means, spread = group_mean(x, S), morph_average(x, S)
    for b in range(3):
        for g, row in enumerate(S[b]):
            members = row.nonzero().flatten()
            direct = x[b, members].mean(0)
            torch.testing.assert_close(means[b, g], direct)
            for n in members:  # every member carries its group's mean
                torch.testing.assert_close(spread[b, n], direct)


def test_merges_per_iteration_are_capped_at_half_the_remaining_groups():
    plain = dict(protect_first=False)
    assert merge_counts(196, 1000, 5, **plain) == [98, 49, 24, 12, 6]
    assert merge_counts(196, 1000, 3) == [97, 49, 24]  # token 0 protected
    assert merge_counts(196, 14, 14, **plain) == [14] * 13 + [7]  # cap 7
    assert merge_counts(196, 14, 14) == [14] * 12 + [13, 7]  # 27 // 2, ...
    assert merge_counts(5, 3, 4, **plain) == [2, 1, 1]
    assert merge_counts(1, 3, 4, **plain) == []
    tokens = _tokens(B=2, N=40)
    for protect_first, left in ((False, 1), (True, 2)):
        remaining = 40
        for k, merged in enumerate(merge_counts(40, 1000, 6, protect_first),
                                   start=1):
            assert merged <= (remaining - protect_first) // 2
            remaining -= merged
            assert morph(tokens, 1000, k,
                         protect_first).shape[1] == remaining
        assert remaining == left


def test_scheduler_draws_in_range_with_the_official_merge_rate():
    dtm = DynamicTokenMorphing()
    assert (dtm.num_merge_range, dtm.iters_range, dtm.num_draws) == ((0, 196),
                                                                     (1, 14),
                                                                     2)
    g = torch.Generator().manual_seed(0)
    draws = [d for _ in range(300) for d in dtm.draw(g)]
    assert {d.num_merge for d in draws} <= set(range(197))
    assert {d.iters for d in draws} == set(range(1, 15))
    assert max(d.num_merge for d in draws) >= 190
    assert min(d.num_merge for d in draws) <= 5
    for d in draws:
        ceil = math.ceil(d.num_merge / d.iters)
        assert d.r == (ceil if ceil * d.iters <= 196 else d.num_merge //
                       d.iters)
    assert dtm.merge_rate(196, 3) == 65  # ceil 66 * 3 > 196
    assert dtm.merge_rate(100, 3) == 34


def test_scheduler_returns_one_source_per_draw():
    dtm = DynamicTokenMorphing(num_merge_range=(10, 10), iters_range=(2, 2))
    sources = dtm(_tokens())
    assert len(sources) == 2
    assert all(s.shape == (3, 14, 24) for s in sources)


@pytest.fixture
def runner_hub(request):
    """A MessageHub like a Runner's during training; a blank one after.
    (A new name each time: only a new instance becomes the current one.)"""
    hub = MessageHub.get_instance(f'runner_{request.node.name}')
    yield hub
    MessageHub.get_instance(f'after_{request.node.name}')


def test_draws_are_seeded_from_the_runner_step(runner_hub):
    dtm = DynamicTokenMorphing()
    runner_hub.update_info('seed', 7)
    runner_hub.update_info('iter', 11)
    first = dtm.draw()
    torch.rand(3)  # the global RNG does not matter inside a Runner
    assert dtm.draw() == first
    steps = []
    for it in range(12, 16):
        runner_hub.update_info('iter', it)
        steps.append(dtm.draw())
    assert any(s != first for s in steps)


def test_draws_are_shared_by_the_ranks_or_their_own(runner_hub):
    runner_hub.update_info('seed', 7)
    runner_hub.update_info('iter', 3)
    shared = DynamicTokenMorphing(iters_range=(1, 1000))
    own = DynamicTokenMorphing(iters_range=(1, 1000), per_rank_draws=True)
    assert shared.draw(rank=0) == shared.draw(rank=1) == shared.draw()
    # this process (no process group) is rank 0
    assert own.draw() == own.draw(rank=0)
    by_rank = [own.draw(rank=r) for r in range(4)]
    assert len({tuple(d) for d in by_rank}) == 4  # each rank its own
    assert own.draw(rank=2) == by_rank[2]  # reproducible (and on --resume)
    runner_hub.update_info('iter', 4)
    assert own.draw(rank=2) != by_rank[2]
    assert 'per_rank_draws=True' in repr(own)


@pytest.mark.parametrize('kwargs, word', [
    (dict(num_merge_range=(5, 2)), 'num_merge_range'),
    (dict(num_merge_range=(-1, 2)), 'num_merge_range'),
    (dict(iters_range=(0, 3)), 'iters_range'),
    (dict(iters_range=(1.5, 3)), 'iters_range'),
    (dict(num_draws=0), 'num_draws'),
])
def test_bad_settings_name_the_value(kwargs, word):
    with pytest.raises(ValueError, match=word):
        DynamicTokenMorphing(**kwargs)


def test_bad_token_shape_is_named():
    with pytest.raises(ValueError, match=r'\(B, N, C\)'):
        morph(torch.randn(24, 8), 2, 2)


def test_benchmark_morphing_times_a_call():
    result = benchmark_morphing(batch_size=2, channels=32, repeats=2,
                                warmup=1, num_merge=196, iters=14)
    assert result['num_tokens'] == 196
    assert 0 < result['ms_min'] <= result['ms_per_call'] <= result['ms_max']
