"""The compile switch: encoder blocks and heads compiled, the step is not.

The training comparison uses ``backend='aot_eager'``: dynamo and AOT autograd
trace the blocks' forward and backward graphs exactly as for inductor, but
run them with eager kernels. Inductor's C++ code generation for the same
graphs took about 6 minutes on this 2-core machine, too long for the suite;
``tools/benchmark.py`` runs the inductor row.
"""
import copy
import os.path as osp

import pytest
import torch
import torch._dynamo as dynamo
from mmengine.config import Config
from mmengine.runner import Runner

from conftest import tiny_backbone, tiny_noisemim
from noisemim.models.backbones.noisemim_vit import (MassProbe,
                                                    block_forward,
                                                    cross_corruption_bias,
                                                    mass_block_forward,
                                                    plain_block_forward)
from noisemim.utils.compile import (COMPILE_KEY, apply_compile_config,
                                    python_float_rates)

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEMO = osp.join(ROOT, 'configs/pretrain/noisemim_vit-tiny_demo.py')


def _block_inputs(model):
    x = torch.randn(2, 3, 32, 32)
    corruption = model.backbone.sample_corruption(
        x, generator=torch.Generator().manual_seed(0))
    tokens = torch.randn(2, 17, 64)
    probe = MassProbe(corruption, 1, 16, torch.float32)
    return tokens, probe, corruption


def test_no_graph_break_inside_a_block(build_model):
    """With drop path on in training: mmpretrain's numpy drop rates break
    every block's graph until they are Python floats."""
    model = build_model(
        tiny_noisemim(backbone=tiny_backbone(drop_path_rate=0.1))).train()
    layer = model.backbone.layers[2]
    tokens, probe, corruption = _block_inputs(model)
    dynamo.reset()
    before = dynamo.explain(mass_block_forward)(layer, tokens, probe)
    assert before.graph_break_count > 0  # mmcv DropPath vs numpy.float64
    assert python_float_rates(model) > 0
    assert type(layer.ffn.dropout_layer.drop_prob) is float
    bias = cross_corruption_bias(corruption, 1, torch.float32)
    for fn, args in ((mass_block_forward, (layer, tokens, probe)),
                     (plain_block_forward, (layer, tokens)),
                     (block_forward, (layer, tokens, bias))):
        dynamo.reset()
        explained = dynamo.explain(fn)(*args)
        assert explained.graph_break_count == 0, explained.break_reasons
        assert explained.graph_count == 1


def _train(cfg: Config, work_dir: str, name: str):
    cfg = copy.deepcopy(cfg)
    cfg.work_dir = osp.join(work_dir, name)
    cfg.experiment_name = name
    compiled = apply_compile_config(cfg)
    runner = Runner.from_cfg(cfg)
    runner.train()
    hub = runner.message_hub
    losses = {
        key: [float(v) for v in hub.get_scalar(f'train/{key}').data[0]]
        for key in ('loss_mim', 'loss_denoise', 'loss_disruption')
    }
    return compiled, runner, losses


def test_compiled_training_has_the_eager_losses(tmp_path):
    """The config key, through its hook and a real Runner: three steps of
    the tiny demo, compiled and eager, give the same losses, and no graph
    break happens anywhere in the compiled regions."""
    cfg = Config.fromfile(DEMO)
    cfg.train_cfg.max_iters = 3
    cfg.train_dataloader.batch_size = 4
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.checkpoint.interval = 100
    cfg.log_level = 'WARNING'
    _, eager_runner, eager = _train(cfg, str(tmp_path), 'eager')

    cfg[COMPILE_KEY] = dict(backend='aot_eager')
    dynamo.reset()
    dynamo.utils.counters.clear()
    compiled, runner, got = _train(cfg, str(tmp_path), 'compiled')
    assert compiled and runner.train_dataloader.drop_last
    backbone = runner.model.backbone
    assert backbone.block_functions.mass is not mass_block_forward
    assert not dynamo.utils.counters['graph_break']
    assert dynamo.utils.counters['stats']['unique_graphs'] >= 3
    for key in eager:
        assert len(got[key]) == len(eager[key]) == 3
        torch.testing.assert_close(
            torch.tensor(got[key]), torch.tensor(eager[key]),
            rtol=1e-4, atol=1e-6)


def test_compile_switch_config_handling():
    cfg = Config(dict(train_dataloader=dict(batch_size=2)))
    assert not apply_compile_config(cfg)
    assert 'custom_hooks' not in cfg
    assert apply_compile_config(cfg, switch=True)  # tools/train.py --compile
    assert cfg.custom_hooks == [dict(type='CompileBlocksHook', options={})]
    assert cfg.train_dataloader.drop_last is True
    assert apply_compile_config(cfg, switch=True)
    assert len(cfg.custom_hooks) == 1  # not added twice
    with pytest.raises(ValueError, match='compile_blocks must be'):
        apply_compile_config(Config(dict(compile_blocks='yes')))
    with pytest.raises(ValueError, match="mmengine's compile=True"):
        apply_compile_config(Config(dict(compile=True)))
