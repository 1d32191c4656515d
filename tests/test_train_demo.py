"""NoiseMIM pre-training through tools/train.py and a real mmengine Runner."""
import json
import os.path as osp
import subprocess
import sys

import torch
from mmengine.config import Config
from mmpretrain.registry import MODELS

import noisemim  # noqa: F401

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEMO = osp.join(ROOT, 'configs/pretrain/noisemim_vit-tiny_demo.py')
VIT_B_CONFIG = 'configs/pretrain/noisemim_vit-base-p16_8xb512-amp-coslr-400e_in1k.py'


def read_scalars(work_dir: str) -> list:
    """The logged training records of a run (mmengine's scalars.json)."""
    import glob
    path = glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))[0]
    with open(path) as f:
        return [json.loads(line) for line in f if '"loss"' in line]


def test_demo_pretraining_loss_falls(tmp_path):
    iters = 60
    cmd = [
        sys.executable, osp.join(ROOT, 'tools/train.py'), DEMO, '--work-dir',
        str(tmp_path), '--cfg-options', f'train_cfg.max_iters={iters}',
        'default_hooks.logger.interval=5',
        f'default_hooks.checkpoint.interval={iters}',
        'param_scheduler.1.end=60', 'param_scheduler.1.T_max=40'
    ]
    subprocess.run(cmd, check=True, cwd=ROOT, timeout=600)
    records = read_scalars(str(tmp_path))
    assert {'loss_mim', 'loss_denoise', 'loss_disruption'} <= set(records[0])
    first = sum(r['loss'] for r in records[:2]) / 2
    last = sum(r['loss'] for r in records[-2:]) / 2
    assert last < 0.9 * first, (first, last)
    assert osp.exists(osp.join(tmp_path, f'iter_{iters}.pth'))


def test_vit_b_config_builds_and_steps():
    cfg = Config.fromfile(osp.join(ROOT, VIT_B_CONFIG))
    model = MODELS.build(cfg.model)
    model.init_weights()
    assert model.backbone.embed_dims == 768 and len(model.backbone.layers) == 12
    assert model.disruption_layers == tuple(range(2, 12))
    losses = model.loss(torch.randn(1, 3, 224, 224), [])
    sum(losses.values()).backward()
    assert all(torch.isfinite(v) for v in losses.values())
    assert model.backbone.layers[0].attn.qkv.weight.grad is not None
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    assert cfg.auto_scale_lr.base_batch_size == 4096
    assert cfg.optim_wrapper.optimizer.lr == 1e-4 * 4096 / 256


def test_missing_data_root_names_the_path_and_both_forms(tmp_path):
    missing = tmp_path / 'no_imagenet'
    cmd = [
        sys.executable, osp.join(ROOT, 'tools/train.py'),
        osp.join(ROOT, VIT_B_CONFIG), '--work-dir',
        str(tmp_path / 'wd'), '--cfg-options',
        f'train_dataloader.dataset.data_root={missing}'
    ]
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert run.returncode != 0
    assert str(missing) in run.stderr
    # both forms: ImageNet layout (meta/ optional) and any folder of images
    assert 'ImageNet-layout folder' in run.stderr and 'meta/' in run.stderr
    assert 'any folder of images' in run.stderr and '--data-root' in run.stderr
    assert not (tmp_path / 'wd').exists()  # nothing written before the checks
