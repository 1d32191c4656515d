"""tools/benchmark.py runs the three models side by side and reports its tables.

A test of behaviour, not of speed: a tiny architecture, one round.
"""
import json
import os.path as osp
import subprocess
import sys

import pytest
import torch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, osp.join(ROOT, 'tools'))

import benchmark  # noqa: E402  (tools/benchmark.py)

MODELS = ('NoiseMIM', 'NoiseMIM (compiled)', 'SimMIM-style ViT', 'MAE')
TINY = [
    '--config', osp.join(ROOT, 'configs/pretrain/noisemim_vit-tiny_demo.py'),
    '--cfg-options', 'model.backbone.img_size=32',
    '--batch-size', '2', '--warmup', '0', '--repeats', '2',
    '--pipeline-images', '2', '--threads', '1',
    '--mae-neck', 'decoder_embed_dim=32', 'decoder_depth=1',
    'decoder_num_heads=2'
]
RATIO = 'step time vs SimMIM-style (median of paired rounds)'


def _row(printed: str, name: str) -> dict:
    lines = printed.splitlines()
    header = next(line for line in lines if line.startswith('| model |'))
    row = next(line for line in lines if line.startswith(f'| {name} |'))
    cells = lambda line: [c.strip() for c in line.strip('|').split('|')]  # noqa
    return dict(zip(cells(header), cells(row)))


def test_benchmark_times_the_models_and_reports_tables(tmp_path, capsys):
    """Interleaved schedule (the CPU default), with the compiled NoiseMIM row
    (dynamo's 'eager' backend here: inductor's C++ build takes minutes)."""
    out = tmp_path / 'results.json'
    benchmark.main(TINY + ['--compile-backend', 'eager', '--json', str(out)])
    printed = capsys.readouterr().out
    results = json.loads(out.read_text())

    assert results['schedule'] == 'interleaved'
    assert results['malloc'] == 'pinned'
    assert set(results['models']) == set(MODELS)
    simmim = results['models']['SimMIM-style ViT']
    for name in MODELS:
        m = results['models'][name]
        assert len(m['step_times']) == 2 and m['warmup_times'] == []
        assert len(m['cpu_times']) == 2 and min(m['cpu_times']) > 0
        assert len(m['page_faults']) == 2 and min(m['page_faults']) >= 0
        assert m['median'] > 0
        assert m['memory']['peak'] >= m['memory']['model'] > 0
        ratios = [a / b for a, b in zip(m['step_times'],
                                        simmim['step_times'])]
        assert m['vs_simmim']['median'] == pytest.approx(
            sorted(ratios)[0] / 2 + sorted(ratios)[1] / 2)
        assert m['vs_simmim']['min'] == pytest.approx(min(ratios))
        row = _row(printed, name)
        assert row[RATIO] == f"{m['vs_simmim']['median']:.3f}"
        assert 'flops' not in m  # CPU: no MFU
    assert _row(printed, 'SimMIM-style ViT')[RATIO] == '1.000'
    for column in ('images/s', 'paired ratio IQR', 'paired ratio min-max',
                   'first step s', 'peak MiB', 'memory vs SimMIM-style',
                   'page faults/step (median)'):
        assert column in _row(printed, 'MAE')
    assert 'reserved MiB' not in _row(printed, 'MAE')  # CUDA only

    shares = results['noisemim_shares']
    assert set(shares) == set(benchmark.RANGES)
    assert 0 < shares['noisemim.disruption_loss'] < 1
    assert 0 < shares['noisemim.noise_injection'] < 1
    paths = results['data_paths']
    assert len(paths) == 3 and all(p['per_worker'] > 0 for p in paths)
    assert 'device decode (workers read bytes), num_workers=6' in printed
    assert 'CPU decode: a stand-in, not a GPU rate' in printed


def test_sequential_schedule_runs_one_model_process_at_a_time():
    """The CUDA schedule (no two allocator caches on one GPU), run on CPU
    with one tiny model: its process ends before the function returns."""
    from mmengine.config import Config

    from noisemim.benchmark import benchmark_models
    cfg = Config.fromfile(TINY[1])
    cfg.model.backbone.img_size = 32
    spec = benchmark_models(cfg)['SimMIM-style ViT']
    args = benchmark.parse_args(['--schedule', 'sequential', '--warmup',
                                 '1', '--repeats', '2'])
    worker_spec = benchmark.WorkerSpec(
        'SimMIM-style ViT', spec.model, benchmark.optim_wrapper_cfg(
            cfg, 'none'), 2, 32, threads=1,
        mask_generator=spec.mask_generator)
    results = benchmark.run_sequential([worker_spec], args)
    m = results['SimMIM-style ViT']
    assert len(m['step_times']) == 2 and len(m['warmup_times']) == 1
    assert m['memory']['model'] > 0


def test_paired_ratio_is_the_median_of_per_round_ratios():
    summary = benchmark.paired_ratio([2., 4., 3., 9.], [1., 2., 3., 3.])
    assert summary['median'] == pytest.approx(2.)  # ratios 2, 2, 1, 3
    assert (summary['min'], summary['max']) == (1., 3.)
    assert summary['q1'] <= summary['median'] <= summary['q3']
    assert summary['pairs'] == 4
    with pytest.raises(ValueError, match='as many rounds'):
        benchmark.paired_ratio([1., 2.], [1.])


def test_cuda_defaults_bf16_and_one_model_at_a_time():
    args = benchmark.parse_args(['--device', 'cuda'])
    assert (args.amp, args.schedule) == ('bf16', 'sequential')
    args = benchmark.parse_args([])
    assert (args.amp, args.schedule) == ('none', 'interleaved')


@pytest.mark.parametrize('name, tflops', [
    ('NVIDIA H200', 989.4), ('NVIDIA H200 NVL', 835.5),
    ('NVIDIA H100 80GB HBM3', 989.4), ('NVIDIA H100 PCIe', 756.5),
    ('NVIDIA H100 NVL', 835.5), ('NVIDIA GH200 480GB', 989.4),
])
def test_peak_is_the_device_s_own(name, tflops):
    from noisemim.benchmark import peak_bf16_flops
    assert peak_bf16_flops(name) == pytest.approx(tflops * 1e12)
    assert peak_bf16_flops('Some Other GPU') is None


def test_render_reports_mfu_with_and_without_disruption_flops():
    """The CUDA columns, from a results dict shaped as run() makes it."""
    def model(seconds, flops, without):
        return dict(step_times=[seconds], warmup_times=[seconds],
                    median=seconds, vs_simmim=benchmark.paired_ratio(
                        [seconds], [1.]),
                    memory=dict(peak=100., model=100., reserved=150.),
                    flops=dict(total=flops, without_disruption=without))
    results = dict(batch_size=8, device_name='NVIDIA H200', models={
        'NoiseMIM': model(1., 2e14, 1.5e14),
        'SimMIM-style ViT': model(1., 1.5e14, 1.5e14)},
        noisemim_shares={'noisemim.disruption_loss': 0.01})
    printed = benchmark.render(results)
    row = _row(printed, 'NoiseMIM')
    assert row['MFU (bf16 peak)'] == f'{2e14 / 989.4e12:.1%}'
    assert row['MFU without disruption FLOPs'] == f'{1.5e14 / 989.4e12:.1%}'
    assert row['reserved MiB'] == '150'


def test_amp_needs_cuda(capsys):
    import pytest
    with pytest.raises(SystemExit):
        benchmark.parse_args(['--amp', 'bf16'])
    assert '--amp needs --device cuda' in capsys.readouterr().err


def test_range_shares_count_forward_and_backward():
    from torch.profiler import profile, record_function

    from noisemim.benchmark import range_shares
    from noisemim.benchmark.profiling import step_total
    x = torch.randn(256, 256, requires_grad=True)
    with profile() as prof:
        with record_function('inside'):
            y = (x @ x).softmax(-1)
        (y.sum() + (x @ x).sum()).backward()
    events = prof.events()
    total = step_total(events)
    share = range_shares(events, ['inside', 'absent'])
    forward = sum(e.cpu_time_total for e in events if e.name == 'inside')
    assert share['absent'] == 0
    assert forward / total < share['inside'] < 1  # + its backward nodes


def test_a_whole_step_range_is_at_most_the_whole_step():
    """Numerator and denominator on the profiler's one clock."""
    from torch.profiler import profile, record_function

    from noisemim.benchmark import range_shares
    x = torch.randn(128, 128, requires_grad=True)
    with profile() as prof:
        with record_function('all'):
            y = (x @ x).softmax(-1).sum()
        y.backward()
    share = range_shares(prof.events(), ['all'])['all']
    assert 0.5 < share <= 1.0


def test_a_node_is_counted_for_the_op_that_created_it():
    """An op without a backward node records the NEXT node's number; that
    node (created outside the range) must not be billed to the range."""
    from torch.profiler import profile, record_function

    from noisemim.benchmark.profiling import (BACKWARD_PREFIX,
                                              node_creators, range_shares)
    x = torch.randn(192, 192, requires_grad=True)
    with profile() as prof:
        with record_function('inside'):
            y = x.softmax(-1)
            y.detach().sum()  # no node: records the next node's number
        big = (x @ x @ x @ x @ x).sum()  # nodes created outside the range
        (y.sum() + big).backward()
    events = prof.events()
    by_id = {id(e): e for e in events}
    creators = node_creators(events)
    nodes = [e for e in events if e.name.startswith(BACKWARD_PREFIX)
             and e.sequence_nr >= 0]
    names = {'MmBackward0': ('aten::matmul', 'aten::mm'),
             'SoftmaxBackward0': ('aten::softmax', ),
             'SumBackward0': ('aten::sum', ), 'AddBackward0': ('aten::add', )}
    for node in nodes:
        kind = node.name.split(': ')[-1]
        creator = by_id[creators[(node.fwd_thread, node.sequence_nr)]]
        assert creator.name in names[kind], (node.name, creator.name)
    # The range holds a softmax alone: its share is far below the matmuls'.
    inside = range_shares(events, ['inside'])['inside']
    mm_nodes = sum(e.cpu_time_total for e in nodes if 'Mm' in e.name)
    from noisemim.benchmark.profiling import step_total
    assert inside < mm_nodes / step_total(events)


def test_cuda_annotation_copies_of_a_range_are_not_counted_twice():
    """With CUDA activity a range also appears as a GPU user annotation."""
    from torch.autograd import DeviceType
    from torch.autograd.profiler_util import FunctionEvent
    from torch.profiler import profile, record_function

    from noisemim.benchmark import range_shares
    x = torch.randn(128, 128, requires_grad=True)
    with profile() as prof:
        with record_function('inside'):
            y = (x @ x).sum()
        y.backward()
    events = list(prof.events())
    once = range_shares(events, ['inside'])['inside']
    original = next(e for e in events if e.name == 'inside')
    copy = FunctionEvent(
        id=10**9, name='inside', thread=original.thread,
        start_us=original.time_range.start, end_us=original.time_range.end,
        device_type=DeviceType.CUDA, is_user_annotation=True)
    assert range_shares(events + [copy], ['inside'])['inside'] == once


def test_flops_with_and_without_the_disruption_loss():
    from mmengine.config import Config

    from noisemim.benchmark import benchmark_models
    from noisemim.benchmark.worker import StepRunner, WorkerSpec
    cfg = Config.fromfile(TINY[1])
    cfg.model.backbone.img_size = 32
    spec = benchmark_models(cfg)['NoiseMIM']
    runner = StepRunner(
        WorkerSpec('NoiseMIM', spec.model,
                   benchmark.optim_wrapper_cfg(cfg, 'none'), 2, 32))
    flops = runner.flops()
    assert flops['total'] > flops['without_disruption'] > 0
    assert runner.model.disruption is not None  # switched back on


# Blocks of 1-6 MiB freed and allocated again, in a changing order, as the
# activations of a training step are; the page faults of rounds 2-10.
REALLOCATE = """
import resource, sys, torch
from noisemim.benchmark.worker import pin_malloc_thresholds
if sys.argv[1] == 'pinned':
    assert pin_malloc_thresholds()
def round_():
    blocks = [torch.ones(n * 2**18) for n in (8, 16, 24, 4, 12)]
    del blocks
    torch.ones(20 * 2**18)
round_()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(9):
    round_()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def test_pinned_malloc_reuses_freed_memory_without_page_faults():
    """What --malloc pinned does in each model process: memory freed in one
    step is reused in the next, not faulted in (and zeroed) again."""
    def faults(mode: str) -> int:
        run = subprocess.run([sys.executable, '-c', REALLOCATE, mode],
                             cwd=ROOT, capture_output=True, text=True,
                             timeout=120)
        assert run.returncode == 0, run.stderr[-2000:]
        return int(run.stdout.split()[-1])

    pinned, dynamic = faults('pinned'), faults('dynamic')
    round_pages = 84 * 2**20 // 4096  # one round's 84 MiB
    assert pinned < round_pages // 10
    assert dynamic > pinned


def test_amp_is_as_training_bf16_without_a_loss_scaler():
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(
        ROOT, 'configs/pretrain/noisemim_vit-base-p16_8xb512-amp-coslr-400e_'
        'in1k.py'))
    bf16 = benchmark.optim_wrapper_cfg(cfg, 'bf16')
    assert (bf16['type'], bf16['dtype']) == ('AmpOptimWrapper', 'bfloat16')
    assert bf16['loss_scale'] == dict(enabled=False)
    assert cfg.optim_wrapper.loss_scale == bf16['loss_scale']  # training's
    assert benchmark.optim_wrapper_cfg(cfg, 'fp16')['loss_scale'] == 'dynamic'
    assert benchmark.optim_wrapper_cfg(cfg, 'none')['type'] == 'OptimWrapper'
    assert 'paramwise_cfg' in bf16


def test_block_mask_draw_is_simmim_s_distribution():
    import numpy as np
    from mmpretrain.datasets.transforms import SimMIMMaskGenerator

    from noisemim.benchmark.models import BlockMaskDraw, block_mask_draw
    settings = dict(input_size=224, mask_patch_size=32, model_patch_size=16,
                    mask_ratio=0.6)
    reference = SimMIMMaskGenerator(**settings)(dict())['mask']
    masks = block_mask_draw(dict(type='SimMIMMaskGenerator', **settings))(
        64, torch.device('cpu'))
    assert masks.shape == (64, ) + reference.shape
    # Each sample masks exactly the generator's count of 2x2-patch units.
    units = masks[:, ::2, ::2]
    assert (units.flatten(1).sum(1) == reference[::2, ::2].sum()).all()
    assert torch.equal(masks, units.repeat_interleave(2, 1)
                       .repeat_interleave(2, 2))
    # Uniform over the units: every unit is masked in ~60 % of the samples.
    share = units.float().mean(0)
    assert share.min() > 0.3 and share.max() < 0.9
    assert len({tuple(m.flatten().tolist()) for m in units}) > 60
    assert np.isclose(reference.mean(), masks.float().mean().item(),
                      atol=0.02)
    with pytest.raises(ValueError, match="got type 'Other'"):
        block_mask_draw(dict(type='Other'))
    with pytest.raises(ValueError, match='must be a multiple'):
        BlockMaskDraw(input_size=200, mask_patch_size=32)


def test_the_simmim_mask_is_drawn_inside_the_timed_step(monkeypatch):
    """As NoiseMIM's and MAE's masks are: a draw that takes 0.3 s makes the
    timed step take at least 0.3 s."""
    import time

    from mmengine.config import Config

    from noisemim.benchmark import benchmark_models
    from noisemim.benchmark.worker import StepRunner, WorkerSpec
    cfg = Config.fromfile(TINY[1])
    cfg.model.backbone.img_size = 32
    spec = benchmark_models(cfg)['SimMIM-style ViT']
    runner = StepRunner(WorkerSpec(
        'SimMIM-style ViT', spec.model, benchmark.optim_wrapper_cfg(
            cfg, 'none'), 2, 32, mask_generator=spec.mask_generator))
    draw = runner.mask_draw

    def slow_draw(*args):
        time.sleep(0.3)
        return draw(*args)

    runner.mask_draw = slow_draw
    assert runner.step() >= 0.3


def test_a_failing_model_is_reported_and_skipped(capsys):
    """A model that fails to build is a FAILED row; the others are measured
    and compared (the CPU schedule; the CUDA one runs each model through
    ``guarded``, tested after)."""
    from mmengine.config import Config

    from noisemim.benchmark import benchmark_models
    cfg = Config.fromfile(TINY[1])
    cfg.model.backbone.img_size = 32
    spec = benchmark_models(cfg)['SimMIM-style ViT']
    wrapper = benchmark.optim_wrapper_cfg(cfg, 'none')
    good = benchmark.WorkerSpec('SimMIM-style ViT', spec.model, wrapper, 2,
                                32, threads=1,
                                mask_generator=spec.mask_generator)
    broken = benchmark.WorkerSpec('NoiseMIM', dict(type='NoSuchModel'),
                                  wrapper, 2, 32, threads=1)
    args = benchmark.parse_args(['--warmup', '0', '--repeats', '1'])
    results = benchmark.run_interleaved([broken, good], args)
    assert list(results) == ['NoiseMIM', 'SimMIM-style ViT']
    assert 'NoSuchModel' in results['NoiseMIM']['error']
    assert len(results['SimMIM-style ViT']['step_times']) == 1
    simmim = results['SimMIM-style ViT']
    simmim['vs_simmim'] = benchmark.paired_ratio(simmim['step_times'],
                                                 simmim['step_times'])
    printed = benchmark.render(dict(batch_size=2, device='cpu',
                                    models=results, noisemim_shares={}))
    assert _row(printed, 'NoiseMIM')['step s (median)'].startswith('FAILED')
    assert _row(printed, 'SimMIM-style ViT')[RATIO] == '1.000'


def test_guarded_turns_a_model_s_failure_into_its_row():
    def out_of_memory():
        raise RuntimeError('MAE failed:\nTraceback ...\n'
                           'torch.OutOfMemoryError: CUDA out of memory.')
    assert benchmark.guarded('MAE', out_of_memory) == dict(
        error='torch.OutOfMemoryError: CUDA out of memory.')
    assert benchmark.guarded('MAE', lambda x: dict(median=x), 2.) == dict(
        median=2.)
