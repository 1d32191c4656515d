"""``make gpu-check`` (tools/gpu_check.py) without a GPU: it refuses clearly
and its plan (derived config, commands) is valid. Its train and resume steps
run for real on CPU (``--device cpu``) in tests/test_install_light.py, in an
environment without mmcv's compiled ops, mmdet and mmseg."""
import importlib.util
import os.path as osp

import pytest
import torch
from mmengine.config import Config

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def load_tool(name: str, path: str):
    spec = importlib.util.spec_from_file_location(name, osp.join(ROOT, path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gpu_check = load_tool('gpu_check', 'tools/gpu_check.py')


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


def test_plan_is_valid(tmp_path, capsys):
    args = ['--device', 'cpu', '--work-dir', str(tmp_path)]
    assert gpu_check.main(args + ['--dry-run']) == 0
    assert 'benchmark: ' in capsys.readouterr().out
    check = gpu_check.Check(gpu_check.parse_args(args), 'cpu')
    path = tmp_path / 'derived.py'
    path.write_text(check.derived_config())
    cfg = Config.fromfile(str(path))
    loader = cfg.train_dataloader
    assert loader.dataset.type == 'EmbeddedPhotos'
    assert loader.dataset.pipeline[1].type == 'RandomResizedCrop'
    assert loader.batch_size == 4 and cfg.train_cfg.max_iters == 2
    assert cfg.model.type == 'NoiseMIM' and cfg.resume is False
    # The config's own hooks stay (e.g. its atomic checkpoint writes).
    assert (cfg.default_hooks.checkpoint.type ==
            Config.fromfile(osp.join(ROOT, check.config)).default_hooks
            .checkpoint.type)
    assert cfg.default_hooks.checkpoint.interval == 2
    # The GPU plan: the ViT-B config at 224 px, bf16 or fp16 autocast.
    gpu = gpu_check.Check(gpu_check.parse_args(['--amp', 'bf16']), 'cuda')
    path.write_text(gpu.derived_config())
    cfg = Config.fromfile(str(path))
    assert cfg.model.backbone.img_size == 224
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    assert cfg.optim_wrapper.dtype == 'bfloat16'
    assert cfg.train_dataloader.pin_memory is True
    fp16 = gpu_check.Check(gpu_check.parse_args(['--amp', 'fp16']), 'cuda')
    path.write_text(fp16.derived_config())
    wrapper = Config.fromfile(str(path)).optim_wrapper
    assert (wrapper.dtype, wrapper.loss_scale) == ('float16', 'dynamic')
    # The other tools accept the commands' arguments.
    commands = gpu.commands()
    benchmark = load_tool('benchmark_tool', 'tools/benchmark.py')
    bench = commands['benchmark']
    assert bench[1].endswith('tools/benchmark.py')
    parsed = benchmark.parse_args(bench[2:])
    assert (parsed.device, parsed.amp, parsed.batch_size) == ('cuda', 'bf16',
                                                              64)
    parsed = benchmark.parse_args(check.commands()['benchmark'][2:])
    assert parsed.device == 'cpu' and parsed.batch_size == 4
    from noisemim.benchmark import batch_sweep
    sweep = batch_sweep.parse_args(commands['sweep'][3:])
    assert (sweep.device, sweep.amp, sweep.start) == ('cuda', 'bf16', 64)
