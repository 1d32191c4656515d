"""tools/benchmark.py runs the three models side by side and reports its tables.

A test of behaviour, not of speed: a tiny architecture, one round.
"""
import json
import os.path as osp
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, osp.join(ROOT, 'tools'))

import benchmark  # noqa: E402  (tools/benchmark.py)

MODELS = ('NoiseMIM', 'SimMIM-style ViT', 'MAE')
TINY = [
    '--config', osp.join(ROOT, 'configs/pretrain/noisemim_vit-tiny_demo.py'),
    '--cfg-options', 'model.backbone.img_size=32',
    '--batch-size', '2', '--warmup', '0', '--repeats', '1',
    '--pipeline-images', '2', '--threads', '1',
    '--mae-neck', 'decoder_embed_dim=32', 'decoder_depth=1',
    'decoder_num_heads=2'
]


def test_benchmark_times_three_models_and_reports_tables(tmp_path, capsys):
    out = tmp_path / 'results.json'
    benchmark.main(TINY + ['--json', str(out)])
    printed = capsys.readouterr().out
    results = json.loads(out.read_text())

    assert set(results['models']) == set(MODELS)
    for name in MODELS:
        m = results['models'][name]
        assert len(m['step_times']) == 1 and m['median'] > 0
        assert m['memory']['peak'] >= m['memory']['model'] > 0
        assert f'| {name} |' in printed
    assert 'flops' not in results['models']['NoiseMIM']  # CPU: no MFU
    header = next(line for line in printed.splitlines()
                  if line.startswith('| model |'))
    for column in ('images/s', 'step time vs SimMIM-style', 'peak MiB',
                   'memory vs SimMIM-style'):
        assert column in header
    simmim_row = next(line for line in printed.splitlines()
                      if line.startswith('| SimMIM-style ViT |'))
    assert '| 1.000 |' in simmim_row  # the reference of the ratios

    shares = results['noisemim_shares']
    assert set(shares) == set(benchmark.RANGES)
    assert 0 < shares['noisemim.disruption_loss'] < 1
    assert 0 < shares['noisemim.noise_injection'] < 1
    assert results['pipeline_images_per_s'] > 0
    assert 'one worker process' in printed


def test_amp_needs_cuda(capsys):
    import pytest
    with pytest.raises(SystemExit):
        benchmark.parse_args(['--amp', 'bf16'])
    assert '--amp needs --device cuda' in capsys.readouterr().err


def test_range_shares_count_forward_and_backward():
    import torch
    from torch.profiler import profile, record_function

    from noisemim.benchmark import range_shares
    x = torch.randn(256, 256, requires_grad=True)
    with profile() as prof:
        with record_function('inside'):
            y = (x @ x).softmax(-1)
        (y.sum() + (x @ x).sum()).backward()
    events = prof.events()
    total = sum(e.cpu_time_total for e in events if e.cpu_parent is None)
    share = range_shares(events, ['inside', 'absent'], total)
    forward = sum(e.cpu_time_total for e in events if e.name == 'inside')
    assert share['absent'] == 0
    assert forward / total < share['inside'] < 1  # + its backward nodes


def test_fused_disruption_mass_has_the_explicit_gradient():
    """The speed change (fused attention rows) keeps the loss's gradient."""
    import torch

    from noisemim.models.losses.disruption import cross_corruption_mass
    g = torch.Generator().manual_seed(0)
    q = torch.randn(2, 3, 9, 8, generator=g, requires_grad=True)
    k = torch.randn(2, 3, 9, 8, generator=g, requires_grad=True)
    M = torch.tensor([[1, 2, 5], [2, 3, 8]])
    S = torch.tensor([[3, 6], [1, 6]])
    weights = torch.randn(2, 3, generator=g)
    fused = torch.autograd.grad((cross_corruption_mass(q, k, M, S) *
                                 weights).sum(), (q, k))

    A = (q @ k.transpose(-2, -1) * 8**-0.5).softmax(-1)
    is_m = torch.zeros(2, 9).scatter_(1, M, 1.)
    is_s = torch.zeros(2, 9).scatter_(1, S, 1.)
    c = (torch.einsum('bhij,bi,bj->bh', A, is_m, is_s) / 3 +
         torch.einsum('bhij,bi,bj->bh', A, is_s, is_m) / 2)
    explicit = torch.autograd.grad((c * weights).sum(), (q, k))
    for a, b in zip(fused, explicit):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
