"""bf16 by default: the pre-training configs ask for bf16 autocast without a
loss scaler; tools/train.py fits that to the machine (fp16 + scaler on GPUs
without bf16, bf16 CPU autocast without a GPU); a full training step runs
under bf16 autocast on the CPU."""
import copy
import os.path as osp

import pytest
import torch
from conftest import tiny_noisemim
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

import noisemim  # noqa: F401  (registers the modules)
from noisemim.engine.optimizers import (CPUAutocastOptimWrapper,
                                        configure_mixed_precision)

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
PRETRAIN = ['noisemim_vit-base-p16_8xb512-amp-coslr-400e_in1k.py', 'noisemim_vit-large-p16_8xb128-accu4-amp-coslr-400e_in1k.py', 'dtm_vit-base-p16_8xb256-amp-coslr-300e_in1k.py',
            'noisemim-dtm_vit-base-p16_8xb512-amp-coslr-400e_in1k.py']
GPU = torch.cuda.is_available()


def config(name: str) -> Config:
    return Config.fromfile(osp.join(ROOT, 'configs/pretrain', name))


@pytest.mark.parametrize('name', PRETRAIN)
def test_pretraining_configs_ask_for_bf16_without_a_loss_scaler(name):
    cfg = config(name)
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    assert cfg.optim_wrapper.dtype == 'bfloat16'
    assert cfg.optim_wrapper.loss_scale == dict(enabled=False)
    resolved = copy.deepcopy(cfg)
    used = configure_mixed_precision(resolved)
    if not GPU:  # mmengine's AmpOptimWrapper would assert here
        assert used == 'bf16'
        assert resolved.optim_wrapper.type == 'CPUAutocastOptimWrapper'
        assert 'loss_scale' not in resolved.optim_wrapper
    elif torch.cuda.is_bf16_supported():
        assert used == 'bf16' and resolved.optim_wrapper == cfg.optim_wrapper
    else:
        assert used == 'fp16' and resolved.optim_wrapper.loss_scale == 'dynamic'


def test_amp_flag_picks_the_best_dtype_and_fp16_falls_back_on_cpu():
    demo = config('noisemim_vit-tiny_demo.py')
    assert demo.optim_wrapper.type == 'OptimWrapper'
    assert configure_mixed_precision(copy.deepcopy(demo)) == 'fp32'
    amp = copy.deepcopy(demo)
    used = configure_mixed_precision(amp, amp=True)
    if not GPU or torch.cuda.is_bf16_supported():
        assert used == 'bf16'
    fp16 = copy.deepcopy(demo)
    fp16.optim_wrapper.update(type='AmpOptimWrapper', dtype='float16',
                              loss_scale='dynamic')
    used = configure_mixed_precision(fp16)
    if not GPU:  # CPU autocast has no fp16
        assert used == 'fp32' and fp16.optim_wrapper.type == 'OptimWrapper'
        assert 'dtype' not in fp16.optim_wrapper
    bad = copy.deepcopy(demo)
    bad.optim_wrapper.update(type='AmpOptimWrapper', dtype='bf16')
    with pytest.raises(ValueError, match="'bf16'"):
        configure_mixed_precision(bad)
    with pytest.raises(ValueError, match='float16'):
        CPUAutocastOptimWrapper(optimizer=None, dtype='float16')


def test_a_training_step_runs_under_bf16_autocast_on_the_cpu():
    torch.manual_seed(0)
    model = MODELS.build(tiny_noisemim())
    model.init_weights()
    fp32_model = copy.deepcopy(model)
    cfg = config('noisemim_vit-base-p16_8xb512-amp-coslr-400e_in1k.py')
    configure_mixed_precision(cfg)
    if GPU:  # this test is about the CPU path
        cfg.optim_wrapper.update(type='CPUAutocastOptimWrapper')
        cfg.optim_wrapper.pop('loss_scale')
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
