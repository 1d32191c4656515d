"""Precision that fits the device: the pre-training configs ask for bf16
without a loss scaler; ``--precision auto`` keeps that on GPUs with bf16,
uses fp16 + a loss scaler on older GPUs and fp32 on a CPU without native bf16;
any config switches either way without ``_delete_=True``; a training step
runs under bf16 autocast on the CPU when bf16 is forced."""
import copy
import os.path as osp

import pytest
import torch
from conftest import tiny_noisemim
from mmengine.config import Config
from mmengine.optim import AmpOptimWrapper, OptimWrapper, build_optim_wrapper
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

import noisemim  # noqa: F401  (registers the modules)
from noisemim.engine.optimizers import (CPUAutocastOptimWrapper,
                                        configure_mixed_precision,
                                        configure_test_precision,
                                        set_wrapper_precision,
                                        wrapper_precision)
from noisemim.utils import precision as precision_module
from noisemim.utils.precision import (_cpuinfo_flags, choose_precision,
                                      cpu_bf16_flags)

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
VIT_B = 'noisemim_vit-base-p16_8xb512-amp-coslr-400e_in1k.py'
PRETRAIN = [VIT_B, 'noisemim_vit-large-p16_8xb128-accu4-amp-coslr-400e_in1k.py',
            'dtm_vit-base-p16_8xb256-amp-coslr-300e_in1k.py',
            'noisemim-dtm_vit-base-p16_8xb512-amp-coslr-400e_in1k.py']
GPU = torch.cuda.is_available()


def config(name: str) -> Config:
    return Config.fromfile(osp.join(ROOT, 'configs/pretrain', name))


def this_cpu_has_native_bf16() -> bool:
    """Read from /proc/cpuinfo here, independently of the code under test."""
    flags = set()
    with open('/proc/cpuinfo') as f:
        for line in f:
            if line.startswith('flags'):
                flags.update(line.split(':', 1)[1].split())
    return bool(flags & {'amx_bf16', 'avx512_bf16'})


@pytest.mark.parametrize('name', PRETRAIN)
def test_pretraining_configs_ask_for_bf16_and_auto_fits_the_device(name):
    cfg = config(name)
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    assert cfg.optim_wrapper.dtype == 'bfloat16'
    assert cfg.optim_wrapper.loss_scale == dict(enabled=False)
    resolved = copy.deepcopy(cfg)
    choice = configure_mixed_precision(resolved)
    kept = {k: v for k, v in cfg.optim_wrapper.items()
            if k not in ('type', 'dtype', 'loss_scale')}
    if GPU and torch.cuda.is_bf16_supported():
        assert choice.precision == 'bf16'
        assert resolved.optim_wrapper == cfg.optim_wrapper  # as configured
    elif GPU:
        assert choice.precision == 'fp16'
        assert resolved.optim_wrapper.loss_scale == 'dynamic'
    elif this_cpu_has_native_bf16():
        assert choice.precision == 'bf16'
        assert resolved.optim_wrapper.type == 'CPUAutocastOptimWrapper'
    else:  # e.g. this project's AVX2 machine: bf16 would be emulated
        assert choice.precision == 'fp32'
        assert resolved.optim_wrapper.type == 'OptimWrapper'
        assert 'no native bf16' in choice.message()
        assert {'dtype', 'loss_scale'}.isdisjoint(resolved.optim_wrapper)
    # the optimizer, its parameter groups and accumulation are untouched
    assert {k: v for k, v in resolved.optim_wrapper.items()
            if k not in ('type', 'dtype', 'loss_scale')} == kept


@pytest.mark.parametrize('requested,configured,device,native,expected', [
    ('auto', 'bf16', 'cpu', (), 'fp32'),
    ('auto', 'bf16', 'cpu', ('amx_bf16', ), 'bf16'),
    ('auto', 'fp16', 'cpu', ('avx512_bf16', ), 'bf16'),
    ('auto', 'fp32', 'cpu', ('amx_bf16', ), 'fp32'),
    ('auto', 'bf16', 'cuda', True, 'bf16'),
    ('auto', 'bf16', 'cuda', False, 'fp16'),
    ('auto', 'fp16', 'cuda', True, 'fp16'),
    ('auto', 'fp32', 'cuda', True, 'fp32'),
    ('auto', 'bf16', 'other', (), 'bf16'),
    ('fp32', 'bf16', 'cuda', True, 'fp32'),
    ('bf16', 'fp32', 'cpu', (), 'bf16'),
    ('fp16', 'bf16', 'cuda', False, 'fp16'),
])
def test_the_precision_rules(monkeypatch, requested, configured, device,
                             native, expected):
    if device == 'cuda':
        monkeypatch.setattr(precision_module, 'cuda_bf16', lambda: native)
        monkeypatch.setattr(precision_module, '_device_name',
                            lambda device: 'the GPU T')
    else:
        monkeypatch.setattr(precision_module, 'cpu_bf16_flags',
                            lambda: native)
    choice = choose_precision(requested, configured, device)
    assert choice.precision == expected
    assert choice.message().startswith(f'Precision: {expected} (')


def test_forced_precisions_the_device_cannot_run_are_refused(monkeypatch):
    with pytest.raises(ValueError, match='--precision fp16 needs a GPU'):
        choose_precision('fp16', 'bf16', 'cpu')
    monkeypatch.setattr(precision_module, 'cuda_bf16', lambda: False)
    monkeypatch.setattr(precision_module, '_device_name', lambda d: 'T4')
    with pytest.raises(ValueError, match='T4 has no native bf16'):
        choose_precision('bf16', 'bf16', 'cuda')
    with pytest.raises(ValueError, match="'fp8'"):
        choose_precision('fp8', 'bf16', 'cpu')


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    info = tmp_path / 'cpuinfo'
    info.write_text('processor : 0\nflags : fpu avx2 avx512_bf16 amx_tile\n'
                    'processor : 1\nflags : fpu avx2 avx512_bf16 amx_tile\n')
    assert {'avx2', 'avx512_bf16', 'amx_tile'} <= _cpuinfo_flags(str(info))
    assert _cpuinfo_flags(str(tmp_path / 'none')) == frozenset()
    assert bool(cpu_bf16_flags()) == this_cpu_has_native_bf16()


def test_switching_either_way_keeps_the_optimizer_settings():
    cfg = config(VIT_B)
    cfg.optim_wrapper.update(clip_grad=dict(max_norm=3.0),
                             accumulative_counts=2)
    kept = {k: copy.deepcopy(cfg.optim_wrapper[k]) for k in (
        'optimizer', 'paramwise_cfg', 'clip_grad', 'accumulative_counts')}
    model = MODELS.build(tiny_noisemim())

    fp32 = copy.deepcopy(cfg)
    assert configure_mixed_precision(fp32, 'fp32').precision == 'fp32'
    assert wrapper_precision(fp32.optim_wrapper) == 'fp32'
    wrapper = build_optim_wrapper(model, fp32.optim_wrapper)
    assert type(wrapper) is OptimWrapper and wrapper._accumulative_counts == 2
    assert wrapper.clip_grad_kwargs == dict(max_norm=3.0)

    back = copy.deepcopy(fp32)  # and back to bf16 on a CPU
    configure_mixed_precision(back, 'bf16', device='cpu')
    assert isinstance(build_optim_wrapper(model, back.optim_wrapper),
                      CPUAutocastOptimWrapper)
    gpu = copy.deepcopy(fp32)  # an fp32 config asked for bf16 on a GPU
    set_wrapper_precision(gpu.optim_wrapper, 'bf16', device='cuda')
    assert gpu.optim_wrapper.dtype == 'bfloat16'
    assert gpu.optim_wrapper.loss_scale == dict(enabled=False)
    set_wrapper_precision(gpu.optim_wrapper, 'fp16', device='cuda')
    assert gpu.optim_wrapper.type == 'AmpOptimWrapper'
    assert (gpu.optim_wrapper.dtype, gpu.optim_wrapper.loss_scale) == (
        'float16', 'dynamic')
    for done in (fp32, back, gpu):
        assert {k: done.optim_wrapper[k] for k in kept} == kept
    if GPU:  # the GPU configs build for real where there is one
        assert isinstance(build_optim_wrapper(model, gpu.optim_wrapper),
                          AmpOptimWrapper)


def test_amp_flag_is_an_alias_and_several_wrappers_are_left_alone():
    demo = config('noisemim_vit-tiny_demo.py')
    assert demo.optim_wrapper.type == 'OptimWrapper'
    assert configure_mixed_precision(copy.deepcopy(demo)).precision == 'fp32'
    amp = copy.deepcopy(demo)
    used = configure_mixed_precision(amp, amp=True, device='cpu')
    assert used.precision == 'bf16'
    assert amp.optim_wrapper.type == 'CPUAutocastOptimWrapper'
    with pytest.raises(ValueError, match='--amp is the same as'):
        configure_mixed_precision(copy.deepcopy(demo), 'fp32', amp=True)
    bad = copy.deepcopy(demo)
    bad.optim_wrapper.update(type='AmpOptimWrapper', dtype='bf16')
    with pytest.raises(ValueError, match="'bf16'"):
        configure_mixed_precision(bad)
    with pytest.raises(ValueError, match='float16'):
        CPUAutocastOptimWrapper(optimizer=None, dtype='float16')
    several = Config(dict(optim_wrapper=dict(
        generator=dict(type='AmpOptimWrapper'),
        discriminator=dict(type='OptimWrapper'))))
    assert configure_mixed_precision(several).precision == 'as configured'
    with pytest.raises(ValueError, match='several optimizer wrappers'):
        configure_mixed_precision(several, 'fp32')


def test_test_loop_precision():
    cfg = Config(dict(test_cfg=dict(type='TestLoop', fp16=True)))
    choice = configure_test_precision(cfg, 'auto', device='cpu')
    assert cfg.test_cfg.fp16 == (choice.precision == 'bf16')
    configure_test_precision(cfg, 'bf16', device='cpu')
    assert cfg.test_cfg.fp16 is True
    configure_test_precision(cfg, 'fp32', device='cpu')
    assert cfg.test_cfg.fp16 is False
    with pytest.raises(ValueError, match='needs a GPU'):
        configure_test_precision(cfg, 'fp16', device='cpu')


def test_a_training_step_runs_under_bf16_autocast_on_the_cpu():
    torch.manual_seed(0)
    model = MODELS.build(tiny_noisemim())
    model.init_weights()
    fp32_model = copy.deepcopy(model)
    cfg = config(VIT_B)
    configure_mixed_precision(cfg, 'bf16', device='cpu')
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    assert isinstance(wrapper, CPUAutocastOptimWrapper)
    seen = []
    model.backbone.layers[0].attn.qkv.register_forward_hook(
        lambda module, args, out: seen.append(out.dtype))
    data = dict(inputs=torch.randint(0, 256, (4, 3, 32, 32),
                                     dtype=torch.uint8),
                data_samples=[DataSample() for _ in range(4)])
    before = model.backbone.layers[0].attn.qkv.weight.detach().clone()
    generator_state = torch.get_rng_state()

    log_vars = model.train_step(data, wrapper)

    assert seen == [torch.bfloat16]  # the encoder ran in bf16
    assert {'loss_mim', 'loss_denoise', 'loss_disruption'} <= set(log_vars)
    assert all(torch.isfinite(v) for v in log_vars.values())
    weight = model.backbone.layers[0].attn.qkv.weight
    assert weight.dtype == torch.float32 and not torch.equal(weight, before)
    # The same step in fp32 (same corruption: same seed) gives close losses.
    torch.set_rng_state(generator_state)
    fp32 = fp32_model.train_step(data, build_optim_wrapper(
        fp32_model, dict(type='OptimWrapper',
                         optimizer=dict(type='AdamW', lr=1e-4))))
    for key in ('loss_mim', 'loss_denoise'):
        assert float(log_vars[key]) == pytest.approx(float(fp32[key]),
                                                     rel=0.05), key


def test_benchmark_takes_precision_or_amp_not_both():
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        'noisemim_benchmark_tool', osp.join(ROOT, 'tools/benchmark.py'))
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    assert benchmark.parse_args(['--precision', 'bf16']).precision == 'bf16'
    with pytest.raises(SystemExit):
        benchmark.parse_args(['--precision', 'bf16', '--amp', 'none'])
