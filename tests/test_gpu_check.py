"""``make gpu-check`` (tools/gpu_check.py) without a GPU: it refuses clearly,
its plan is valid, and each of its measuring parts runs on CPU at tiny size
(attention backends, the profiled training loop's summary, the loader) and
fills the table; a part over its budget is reported and skipped. Its train
and resume steps run for real on CPU in tests/test_install_light.py."""
import importlib.util
import json
import os.path as osp

import pytest
import torch
from mmengine.config import Config

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEMO = osp.join(ROOT, 'configs/pretrain/noisemim_vit-tiny_demo.py')


def load_tool(name: str, path: str):
    spec = importlib.util.spec_from_file_location(name, osp.join(ROOT, path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gpu_check = load_tool('gpu_check', 'tools/gpu_check.py')


def _table(printed: str) -> dict:
    """The last table's rows, by check, as dicts of the columns."""
    lines = [line for line in printed.splitlines() if line.startswith('| ')]
    header = [c.strip() for c in lines[0].strip('|').split('|')]
    rows = {}
    for line in lines[1:]:
        cells = [c.strip() for c in line.strip('|').split('|')]
        if cells == header:  # a part's own table printed before
            rows = {}
            continue
        rows[cells[0]] = dict(zip(header, cells))
    return rows


def cpu_check(tmp_path, *extra: str):
    args = gpu_check.parse_args(['--device', 'cpu', '--work-dir',
                                 str(tmp_path), *extra])
    return gpu_check.Check(args, 'cpu')


def test_refuses_without_cuda_in_one_line(capsys, monkeypatch):
    # As on a machine without a GPU (this one has none; a GPU machine too).
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    assert gpu_check.main([]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('gpu-check: no CUDA device')


def test_bad_flags_are_named(capsys):
    with pytest.raises(SystemExit):
        gpu_check.parse_args(['--only', 'train,bench'])
    assert "got 'train,bench'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        gpu_check.parse_args(['--only', 'resume'])
    assert 'resume needs train' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        gpu_check.parse_args(['--budget', 'models=-3'])
    assert "got 'models=-3'" in capsys.readouterr().err
    args = gpu_check.parse_args(['--budget', 'models=300'])
    assert args.budgets['models'] == 300 and args.budgets['train'] == 120
    assert gpu_check.parse_args([]).parts == (
        'attention', 'models', 'train', 'resume', 'loader')
    # The default parts fit in 8 minutes.
    assert sum(gpu_check.BUDGETS[p] for p in gpu_check.DEFAULT_PARTS) <= 480


@pytest.mark.parametrize('cuda, driver, fits', [
    ('13.0', '580.159.04', True), ('13.0', '570.86.15', False),
    ('12.6', '535.104.05', True), ('12.6', None, None), (None, None, False)])
def test_driver_requirement(cuda, driver, fits):
    ok, sentence = gpu_check.driver_requirement(cuda, driver)
    assert ok is fits
    if cuda == '13.0':
        assert '580' in sentence
    if fits is False and cuda:
        assert 'update the driver' in sentence


def test_plan_is_valid(tmp_path, capsys):
    args = ['--device', 'cpu', '--work-dir', str(tmp_path)]
    assert gpu_check.main(args + ['--dry-run']) == 0
    printed = capsys.readouterr().out
    assert 'models (budget 900 s): ' in printed and '--part loader' in printed
    # The GPU plan prints without a GPU too.
    assert gpu_check.main(['--work-dir', str(tmp_path), '--dry-run']) == 0
    printed = capsys.readouterr().out
    assert 'models (budget 180 s): ' in printed
    assert '--batch-size 512' in printed and '--amp bf16' in printed
    check = cpu_check(tmp_path)
    path = tmp_path / 'derived.py'
    path.write_text(check.derived_config())
    cfg = Config.fromfile(str(path))
    loader = cfg.train_dataloader
    assert loader.dataset.type == 'CustomDataset'
    assert loader.dataset.data_root == check.photos
    assert loader.dataset.pipeline[1].type == 'RandomResizedCrop'
    assert loader.batch_size == 2 and cfg.train_cfg.max_iters == check.iters
    assert cfg.model.type == 'NoiseMIM' and cfg.resume is False
    # The config's own hooks stay (e.g. its atomic checkpoint writes, the
    # loss sync), and the profiler is added.
    own = Config.fromfile(DEMO)
    assert cfg.default_hooks.checkpoint.type == \
        own.default_hooks.checkpoint.type
    assert [h['type'] for h in cfg.custom_hooks] == [
        h['type'] for h in own.custom_hooks] + ['IterationProfileHook']
    assert cfg.custom_hooks[-1]['start'] + cfg.custom_hooks[-1]['iters'] \
        <= check.iters
    # The GPU plan: the ViT-B config at 224 px, bf16 without a loss scaler.
    gpu = gpu_check.Check(gpu_check.parse_args(['--amp', 'bf16']), 'cuda')
    path.write_text(gpu.derived_config())
    cfg = Config.fromfile(str(path))
    assert cfg.model.backbone.img_size == 224
    assert (cfg.optim_wrapper.type, cfg.optim_wrapper.dtype) == (
        'AmpOptimWrapper', 'bfloat16')
    assert cfg.optim_wrapper.loss_scale == dict(enabled=False)
    assert cfg.train_dataloader.pin_memory is True
    # Losses are read (a host sync) at iterations 6 and 12 only; the four
    # profiled iterations (0-based 6-9: 7-10) lie between them.
    assert cfg.default_hooks.logger.interval == 6
    profiler = cfg.custom_hooks[-1]
    assert (profiler['start'], profiler['iters']) == (6, 4)
    assert gpu.logged(True) == [6, 12] and gpu.logged(False) == [18, 24]
    odd = gpu_check.Check(gpu_check.parse_args(['--amp', 'bf16', '--iters',
                                                '5']), 'cuda')
    assert odd.logged(False) == [6, 8, 10] and odd.profile_window() == (2, 1)
    fp16 = gpu_check.Check(gpu_check.parse_args(['--amp', 'fp16']), 'cuda')
    path.write_text(fp16.derived_config())
    wrapper = Config.fromfile(str(path)).optim_wrapper
    assert (wrapper.dtype, wrapper.loss_scale) == ('float16', 'dynamic')
    # The other tools accept the commands' arguments.
    commands = gpu.commands()
    benchmark = load_tool('benchmark_tool', 'tools/benchmark.py')
    models = commands['models']
    assert models[1].endswith('tools/benchmark.py')
    parsed = benchmark.parse_args(models[2:])
    assert (parsed.device, parsed.amp, parsed.batch_size) == ('cuda', 'bf16',
                                                              512)
    parsed = benchmark.parse_args(check.commands()['models'][2:])
    assert parsed.device == 'cpu' and parsed.batch_size == 2
    from noisemim.benchmark import batch_sweep
    sweep = batch_sweep.parse_args(commands['sweep'][3:])
    assert (sweep.device, sweep.amp, sweep.start) == ('cuda', 'bf16', 64)
    part = gpu_check.parse_args(commands['attention'][2:])
    assert (part.part, part.device, part.batch_size) == ('attention', 'cuda',
                                                         512)


def test_attention_part_names_each_call_s_backend(tmp_path):
    rows = gpu_check.part_attention(cpu_check(tmp_path))
    assert [r['check'] for r in rows] == [
        'attention: plain', 'attention: mass', 'attention: hard-bias']
    for row in rows:
        # On CPU: the CPU flash kernel (or math); every block's call found.
        assert row['result'] == 'ok'
        assert ' x4;' in row['measured'], row['measured']
        assert 'encoder forward+backward' in row['measured']
    assert 'x plain' in rows[1]['measured']


def test_sdpa_calls_are_found_in_a_profile():
    from torch.profiler import profile

    from noisemim.benchmark.attention import BACKENDS, sdpa_calls
    q = torch.randn(2, 2, 16, 8, requires_grad=True)
    bias = torch.zeros(2, 1, 16, 16)
    with profile() as prof:
        out = torch.nn.functional.scaled_dot_product_attention(q, q, q)
        out = out + torch.nn.functional.scaled_dot_product_attention(
            q, q, q, attn_mask=bias)
        out.sum().backward()
    calls = sdpa_calls(prof.events(), cuda=False)
    assert calls['calls'] == 2
    assert set(calls['backends']) <= set(BACKENDS.values())
    assert calls['forward_us'] > 0 and calls['backward_us'] > 0


def test_loader_part_measures_both_data_paths(tmp_path):
    rows = gpu_check.part_loader(cpu_check(tmp_path), batches=1)
    assert [r['check'] for r in rows] == ['loader: cpu decode',
                                          'loader: device decode']
    for row in rows:
        rate = float(row['measured'].split(' images/s')[0])
        assert rate > 0
    assert 'a stand-in for the GPU' in rows[1]['measured']


def test_idle_summary_and_optimizer_summary():
    from noisemim.benchmark.step_profile import idle_summary, merge_intervals
    assert merge_intervals([(5, 7), (0, 2), (1, 3)]) == [(0, 3), (5, 7)]
    s = idle_summary([(0, 1000), (1500, 2000), (900, 1200), (4000, 5000)], 2)
    assert s['span_ms'] == 5. and s['busy_ms'] == pytest.approx(2.7)
    assert s['idle_ms_per_iter'] == pytest.approx(1.15)
    assert s['gaps'] == 2 and s['largest_gaps_ms'] == [2., 0.3]
    with pytest.raises(ValueError, match='no device activity'):
        idle_summary([], 1)
    with pytest.raises(ValueError, match='iterations must be >= 1'):
        idle_summary([(0, 1)], 0)


def test_iteration_profile_hook_in_a_real_training_loop(tmp_path):
    """The hook in an mmengine Runner (tiny demo model, CPU): the summary's
    numbers are those of the profiled iterations."""
    from mmengine.runner import Runner

    import noisemim  # noqa: F401
    from noisemim.benchmark.step_profile import IterationProfileHook
    cfg = Config.fromfile(DEMO)
    cfg.work_dir = str(tmp_path)
    cfg.train_dataloader.batch_size = 2
    cfg.train_dataloader.num_workers = 0
    cfg.train_dataloader.persistent_workers = False
    cfg.train_cfg.max_iters = 4
    cfg.param_scheduler = [dict(type='ConstantLR', factor=1.0,
                                by_epoch=False, begin=0)]
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=100)
    cfg.default_hooks.logger.interval = 100

    class Broken(IterationProfileHook):  # its summary fails, not training

        @staticmethod
        def summarise(*args):
            raise ValueError('no device activity was recorded')

    cfg.custom_hooks = [dict(type='IterationProfileHook', start=1, iters=2,
                             out_file='profile.json')]
    runner = Runner.from_cfg(cfg)
    runner.register_hook(Broken(start=0, iters=1, out_file='broken.json'))
    runner.train()
    assert runner.iter == 4
    broken = json.loads((tmp_path / 'broken.json').read_text())
    assert broken == dict(error='ValueError: no device activity was '
                          'recorded')
    assert gpu_check.profile_rows(str(tmp_path / 'broken.json'))[0][
        'result'] == 'FAILED'
    summary = json.loads((tmp_path / 'profile.json').read_text())
    assert summary['iterations'] == 2 and summary['iter_ms'] > 0
    assert summary['between_ms'] >= 0
    idle = summary['idle']
    assert 0 < idle['busy_share'] <= 1 and idle['span_ms'] > 0
    optimizer = summary['optimizer']
    # One AdamW step per iteration, a few aten ops per parameter group.
    assert optimizer['steps'] == 2 and optimizer['aten_ops'] > 0
    assert optimizer['launches'] == 0 and optimizer['host_ms'] > 0
    rows = gpu_check.profile_rows(str(tmp_path / 'profile.json'))
    assert rows[0]['check'] == 'train: idle device'
    assert 'aten ops' in rows[1]['measured']
    with pytest.raises(ValueError, match='start >= 0'):
        IterationProfileHook(start=-1)


def test_model_rows_report_failures_and_mfu(tmp_path):
    def model(seconds):
        return dict(median=seconds, vs_simmim=dict(median=seconds / 0.1),
                    memory=dict(peak=1., model=1., reserved=2048.),
                    flops=dict(total=512 * 110e9, without_disruption=1.))
    results = dict(batch_size=512, device_name='NVIDIA H100 80GB HBM3',
                   config='configs/pretrain/noisemim_vit-base-p16_8xb512.py',
                   models={'NoiseMIM': model(0.2),
                           'SimMIM-style ViT': model(0.1),
                           'MAE': dict(error='CUDA out of memory')})
    path = tmp_path / 'models.json'
    path.write_text(json.dumps(results))
    rows = {r['check']: r for r in gpu_check.model_rows(str(path))}
    noisemim = rows['models: NoiseMIM']['measured']
    assert noisemim.startswith('2560 images/s, step 200.0 ms at batch 512')
    assert '110 GFLOP/image' in noisemim
    assert f'MFU {512 * 110e9 / 0.2 / 989.4e12:.1%}' in noisemim
    nominal = 3 * 35.9e9 * 512 / 0.2 / 989.4e12
    assert f'MFU at 3 x 35.9 GFLOP/image {nominal:.1%}' in noisemim
    assert rows['models: MAE']['result'] == 'FAILED'


def test_parts_run_in_their_own_process_within_budget(tmp_path, capsys):
    """The orchestration on CPU: the environment, one measuring part in its
    own process, and one out of its budget, reported and skipped."""
    args = ['--device', 'cpu', '--work-dir', str(tmp_path), '--batch-size',
            '1', '--only', 'attention,loader', '--budget',
            'loader=0.5']
    assert gpu_check.main(args) == 1  # the loader timed out
    rows = _table(capsys.readouterr().out)
    assert rows['environment']['result'] == 'ok'
    assert 'device cpu' in rows['environment']['measured']
    assert rows['attention: plain']['result'] == 'ok'
    assert rows['attention: plain']['seconds'].endswith('of 300')  # CPU
    assert rows['attention: hard-bias']['result'] == 'ok'
    assert rows['loader']['result'] == 'TIMEOUT'


def test_pretraining_checkpoints_cost_under_one_percent_at_h100_speed():
    """The interval of the pre-training runtime: the arithmetic of its
    comment (ImageNet-1K, 8 GPUs at ~3,000 images/s each, <= 3 s per ~1 GB
    checkpoint), and the last epoch is always saved."""
    cfg = Config.fromfile(osp.join(
        ROOT, 'configs/pretrain/noisemim_vit-base-p16_8xb512-amp-coslr-400e_'
        'in1k.py'))
    hook = cfg.default_hooks.checkpoint
    assert hook.save_last is True and hook.get('by_epoch', True)
    epoch_s = 1281167 / (3000 * 8)
    assert 3. / (hook.interval * epoch_s) < 0.01
    assert cfg.train_cfg.max_epochs % hook.interval == 0
