"""The pre-training optimizer: one parameter group per distinct setting.

mmengine's ``paramwise_cfg`` gives one group per tensor; the optimizer then
loops (and launches its multi-tensor kernels) once per group.
``NoiseMIMOptimWrapperConstructor`` merges the groups of identical settings:
every parameter gets the same setting and the same update, in a few groups,
and a per-tensor optimizer state (an older checkpoint) still loads.
"""
import copy
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmpretrain.registry import MODELS

from conftest import tiny_noisemim

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
PRETRAIN = {
    'vit-b': 'configs/pretrain/noisemim_vit-base-p16_8xb512-amp-coslr-400e_in1k.py',
    'vit-l': 'configs/pretrain/'
    'noisemim_vit-large-p16_8xb128-accu4-amp-coslr-400e_in1k.py',
}
SCHEDULE = 'configs/_base_/schedules/adamw_coslr_400e_bs4096.py'


def settings_by_param(wrapper) -> dict:
    """id(param) -> the optimizer settings it is updated with."""
    optimizer = wrapper.optimizer
    names = sorted(optimizer.defaults)
    return {
        id(p): tuple(group[n] for n in names)
        for group in optimizer.param_groups for p in group['params']
    }


def per_tensor(optim_wrapper: dict) -> dict:
    """The same optimizer config with mmengine's own constructor."""
    cfg = copy.deepcopy(optim_wrapper)
    cfg['constructor'] = 'DefaultOptimWrapperConstructor'
    return cfg


@pytest.mark.parametrize('arch', sorted(PRETRAIN))
def test_pretrain_configs_build_a_handful_of_groups(arch):
    cfg = Config.fromfile(osp.join(ROOT, PRETRAIN[arch]))
    optim = cfg.optim_wrapper.to_dict()
    assert optim['constructor'] == 'NoiseMIMOptimWrapperConstructor'
    for key in ('dtype', 'loss_scale'):  # AMP wants a GPU
        optim.pop(key)
    optim['type'] = 'OptimWrapper'
    with torch.device('meta'):  # the parameters without their memory
        model = MODELS.build(cfg.model)
    merged = build_optim_wrapper(model, optim)
    mmengine = build_optim_wrapper(model, per_tensor(optim))
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert len(mmengine.optimizer.param_groups) == len(trainable) > 150
    groups = merged.optimizer.param_groups
    assert len(groups) == 2, [g['weight_decay'] for g in groups]
    assert sorted(g['weight_decay'] for g in groups) == [0., 0.05]
    # every parameter once, with the setting mmengine gives it
    assert sorted(id(p) for g in groups
                  for p in g['params']) == sorted(map(id, trainable))
    assert settings_by_param(merged) == settings_by_param(mmengine)
    # the logged learning rates keep their names (lr, and base_lr)
    assert merged.get_lr().keys() == mmengine.get_lr().keys()


def tiny_pair():
    """The tiny model twice (same weights) with the schedule's optimizer:
    mmengine's per-tensor groups and the merged ones."""
    optim = Config.fromfile(osp.join(ROOT, SCHEDULE)).optim_wrapper.to_dict()
    model = MODELS.build(tiny_noisemim())
    model.init_weights()
    twin = copy.deepcopy(model)
    return ((model, build_optim_wrapper(model, per_tensor(optim))),
            (twin, build_optim_wrapper(twin, optim)))


def train_steps(model, wrapper, steps: int, seed: int = 0) -> None:
    """``steps`` training steps on fixed images, the corruption drawn from
    the seeded global RNG (as in training)."""
    images = torch.rand(steps, 2, 3, 32, 32, generator=torch.Generator()
                        .manual_seed(seed)) * 255
    for i in range(steps):
        torch.manual_seed(seed + i)
        model.train_step(dict(inputs=images[i], data_samples=None), wrapper)


def assert_same_weights(a, b) -> None:
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(p, q), name


def test_merged_groups_train_exactly_as_per_tensor_groups():
    (model, per_tensor_wrapper), (twin, merged) = tiny_pair()
    assert len(merged.optimizer.param_groups) == 2
    assert len(per_tensor_wrapper.optimizer.param_groups) > 40
    before = copy.deepcopy(model.state_dict())
    train_steps(model, per_tensor_wrapper, 3)
    train_steps(twin, merged, 3)
    assert_same_weights(model, twin)
    assert all(not torch.equal(p, before[n])
               for n, p in model.named_parameters())  # all were trained


def test_a_per_tensor_optimizer_state_resumes_into_merged_groups():
    """A checkpoint's optimizer state from before the merge (one group per
    tensor) is regrouped on load; the next steps are exactly those of the
    run that kept per-tensor groups."""
    (model, per_tensor_wrapper), (twin, merged) = tiny_pair()
    train_steps(model, per_tensor_wrapper, 2)
    saved = copy.deepcopy(per_tensor_wrapper.state_dict())
    twin.load_state_dict(model.state_dict())
    merged.load_state_dict(saved)
    assert len(merged.optimizer.param_groups) == 2
    assert merged.optimizer.state  # moments and step counts came along
    train_steps(model, per_tensor_wrapper, 2, seed=7)
    train_steps(twin, merged, 2, seed=7)
    assert_same_weights(model, twin)
    # and the merged state saves and loads as it is
    again = tiny_pair()[1][1]
    again.load_state_dict(copy.deepcopy(merged.state_dict()))
    assert len(again.optimizer.param_groups) == 2


def test_a_state_that_does_not_fit_is_still_refused():
    (_, per_tensor_wrapper), (_, merged) = tiny_pair()
    state = per_tensor_wrapper.state_dict()
    state['param_groups'] = state['param_groups'][:-1]  # one tensor short
    with pytest.raises(ValueError, match='parameter group'):
        merged.load_state_dict(state)
