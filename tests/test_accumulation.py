"""Gradient accumulation: one step of batch 2B equals two accumulated steps of
batch B (each sample's corruption unchanged by the split), and
``--auto-scale-lr`` counts ``optim_wrapper.accumulative_counts``."""
import copy
import importlib.util
import os.path as osp
import sys

import pytest
import torch
from conftest import tiny_noisemim
from mmengine.logging import MessageHub
from mmengine.optim import build_optim_wrapper
from mmengine.runner import Runner
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

import noisemim  # noqa: F401  (registers the modules)
from noisemim.models.corruption import SAMPLES_PER_ITER_KEY, SHARED_SEED_KEY

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEMO = osp.join(ROOT, 'configs/pretrain/noisemim_vit-tiny_demo.py')


def train_step(model, wrapper, hub, images, iteration, samples_per_iter):
    """One ``train_step`` as a Runner would run iteration ``iteration``."""
    hub.update_info('iter', iteration)
    hub.update_info(SAMPLES_PER_ITER_KEY, samples_per_iter)
    data = dict(inputs=images, data_samples=[DataSample() for _ in images])
    return model.train_step(data, wrapper)


def sgd(model, **kwargs):
    return build_optim_wrapper(
        model, dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=1.),
                    **kwargs))


def change(model, start):
    """Each parameter's change from the state dict ``start``."""
    return {k: v.detach() - start[k] for k, v in model.named_parameters()}


def test_one_step_of_2b_equals_two_accumulated_steps_of_b():
    hub = MessageHub.get_instance('test_accumulation')
    hub.update_info(SHARED_SEED_KEY, 5)
    try:
        torch.manual_seed(0)
        model = MODELS.build(tiny_noisemim())
        model.init_weights()
        start = {k: v.detach().clone() for k, v in model.named_parameters()}
        split, mis_keyed = copy.deepcopy(model), copy.deepcopy(model)
        images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)

        # Iteration 3 at batch 8 = iterations 6 and 7 at batch 4, two
        # batches accumulated per update.
        train_step(model, sgd(model), hub, images, 3, 8)
        wrapper = sgd(split, accumulative_counts=2)
        wrapper.initialize_count_status(split, 6, 8)
        train_step(split, wrapper, hub, images[:4], 6, 4)
        train_step(split, wrapper, hub, images[4:], 7, 4)
        # The same split keyed as if both halves were the first four samples.
        wrong = sgd(mis_keyed, accumulative_counts=2)
        wrong.initialize_count_status(mis_keyed, 6, 8)
        train_step(mis_keyed, wrong, hub, images[:4], 6, 4)
        train_step(mis_keyed, wrong, hub, images[4:], 6, 4)

        one, two = change(model, start), change(split, start)
        assert max(v.abs().max() for v in one.values()) > 1e-3
        for name in one:
            torch.testing.assert_close(two[name], one[name], rtol=1e-4,
                                       atol=1e-6, msg=name)
        # Not a tolerance that anything passes: other corruption differs.
        off = change(mis_keyed, start)
        assert any(not torch.allclose(off[k], one[k], rtol=1e-2, atol=1e-4)
                   for k in one)

        # Each sample's corruption is the same in both splits.
        def corruption(rows, iteration, per_iter):
            hub.update_info('iter', iteration)
            hub.update_info(SAMPLES_PER_ITER_KEY, per_iter)
            return model.backbone.sample_corruption(
                torch.zeros(rows, 3, 32, 32))

        whole = corruption(8, 3, 8)
        halves = corruption(4, 6, 4), corruption(4, 7, 4)
        for field in ('mask', 'noised', 't', 'eps'):
            assert torch.equal(
                torch.cat([getattr(h, field) for h in halves]),
                getattr(whole, field)), field
    finally:  # later tests in this process see no Runner's iteration
        MessageHub.get_instance('test_accumulation_done')


def load_train_tool():
    spec = importlib.util.spec_from_file_location(
        'noisemim_train_tool', osp.join(ROOT, 'tools/train.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_auto_scale_lr_counts_accumulative_counts(tmp_path, monkeypatch):
    tool = load_train_tool()
    monkeypatch.setattr(sys, 'argv', [
        'train.py', DEMO, '--work-dir', str(tmp_path), '--auto-scale-lr',
        '--cfg-options', 'train_dataloader.batch_size=4',
        'optim_wrapper.accumulative_counts=2',
        'auto_scale_lr.base_batch_size=16'
    ])
    cfg, _ = tool.build_config(tool.parse_args())
    base_lr = cfg.optim_wrapper.optimizer.lr
    runner = Runner.from_cfg(cfg)
    wrapper = runner.build_optim_wrapper(runner.optim_wrapper)
    runner.scale_lr(wrapper, runner.auto_scale_lr)
    # 1 process x 4 images x 2 accumulated batches = 8 per update, half of
    # the base 16 (mmengine alone would scale by 4 / 16).
    lrs = [group['lr'] for group in wrapper.optimizer.param_groups]
    assert lrs and all(lr == pytest.approx(base_lr * 8 / 16) for lr in lrs)
    # The config dumped in the work dir scales alike when it is reused.
    again = copy.deepcopy(cfg)
    tool.count_accumulation_in_lr_scaling(again)
    assert again.auto_scale_lr == cfg.auto_scale_lr


def test_runner_with_accumulation_logs_the_losses_of_the_double_batch(
        tmp_path, monkeypatch):
    """Through tools/train.py and a real Runner: batch 4 with two batches
    accumulated per update logs, averaged over each pair of iterations, the
    losses of batch 8 (same samples, same corruption, same update)."""
    from test_dist_train import SAME_PIXELS
    from test_resume import logged_losses
    tool = load_train_tool()

    def run(name: str, batch: int, k: int, iters: int) -> dict:
        work_dir = str(tmp_path / name)
        monkeypatch.setattr(sys, 'argv', [
            'train.py', DEMO, '--work-dir', work_dir, '--cfg-options',
            f'experiment_name={name}', f'train_cfg.max_iters={iters}',
            f'train_dataloader.batch_size={batch}',
            f'optim_wrapper.accumulative_counts={k}',
            'param_scheduler.0.start_factor=1.0',  # a constant lr here
            'default_hooks.logger.interval=1', 'log_processor.window_size=1',
            f'default_hooks.checkpoint.interval={iters}', *SAME_PIXELS
        ])
        cfg, _ = tool.build_config(tool.parse_args())
        Runner.from_cfg(cfg).train()
        return logged_losses(work_dir)

    double, split = run('double', 8, 1, 2), run('split', 4, 2, 4)
    assert sorted(double) == [1, 2] and sorted(split) == [1, 2, 3, 4]
    for step in (1, 2):  # before and after the first update
        for key, value in double[step].items():
            mean = (split[2 * step - 1][key] + split[2 * step][key]) / 2
            assert mean == pytest.approx(value, rel=1e-5), (step, key)
    assert split[1]['loss'] != split[2]['loss']


@pytest.mark.parametrize('value', [0, 1.5, '2'])
def test_bad_accumulative_counts_is_named(value):
    from mmengine.config import Config
    from noisemim.engine.optimizers import count_accumulation_in_lr_scaling
    cfg = Config(dict(optim_wrapper=dict(accumulative_counts=value),
                      auto_scale_lr=dict(enable=True, base_batch_size=256)))
    with pytest.raises(ValueError, match='accumulative_counts'):
        count_accumulation_in_lr_scaling(cfg)


# Per-sample activation memory in bf16 (docs/gpu.md): ViT-B measured, ViT-L
# estimated from it; an 80 GB GPU keeps at least 10 GB free for weights,
# AdamW states, the allocator and the data.
MB_PER_SAMPLE = {
    'noisemim_vit-base-p16_8xb512-amp-coslr-400e_in1k.py': 92,
    'noisemim_vit-large-p16_8xb128-accu4-amp-coslr-400e_in1k.py': 245,
}


@pytest.mark.parametrize('name', sorted(MB_PER_SAMPLE))
def test_pretraining_configs_give_4096_on_8_gpus_and_fit_80gb(name):
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(ROOT, 'configs/pretrain', name))
    batch = cfg.train_dataloader.batch_size
    k = cfg.optim_wrapper.get('accumulative_counts', 1)
    assert 8 * batch * k == 4096 == cfg.auto_scale_lr.base_batch_size
    assert batch * MB_PER_SAMPLE[name] / 1000 < 80 - 10
