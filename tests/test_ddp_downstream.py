"""Every downstream config (classification, segmentation, detection) trains
under DDP with ``find_unused_parameters=False``: each, shrunk to a tiny ViT
loaded from the tiny pre-training checkpoint and to tiny real data on disk,
takes 2 steps in 2 CPU processes (gloo, one launch for all configs,
``tests/ddp_downstream_worker.py``), and every trainable parameter gets a
gradient in every step on both processes.

DDP itself raises in the second step when a parameter got no gradient in
the first; the worker also records the gradients explicitly. A negative
control (a fine-tuning config on ``NoiseMIMViT`` built for pre-training, its
mask token unused) shows that both catch an unused parameter.
"""
import glob
import json
import math
import os
import os.path as osp
import subprocess
import sys

from mmengine.config import Config

import noisemim  # noqa: F401  (registers the modules)
from noisemim.utils.tiny_data import (write_ade20k, write_class_folders,
                                      write_coco_set)
from test_transfer_cls import DEMO_ARCH
from test_transfer_det_train import tiny_detection_config
from test_transfer_seg import tiny_config as tiny_segmentation_config

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
WORKER = osp.join(ROOT, 'tests', 'ddp_downstream_worker.py')
TASKS = ('classification', 'segmentation', 'detection')
CONFIGS = {
    task: sorted(glob.glob(osp.join(ROOT, 'configs', task, '*.py')))
    for task in TASKS
}
STEPS = 2
NEGATIVE_CONTROL = 'negative_control_noisemim-vit-with-mask-token.py'


def tiny_classification_config(config: str, out_dir: str, checkpoint: str,
                               data_root: str) -> str:
    """A classification config with the tiny ViT at 32 px and its own
    training pipeline at 32 px on an image-folder dataset, dumped to a
    file."""
    cfg = Config.fromfile(config)
    backbone = cfg.model.backbone
    backbone.arch = dict(DEMO_ARCH)
    backbone.update(img_size=32, patch_size=8)
    backbone.init_cfg.checkpoint = checkpoint
    if backbone.get('frozen_stages', -1) > 0:  # the linear probe: all frozen
        backbone.frozen_stages = DEMO_ARCH['num_layers']
    neck = cfg.model.get('neck')
    if neck and 'input_features' in neck:
        neck.input_features = DEMO_ARCH['embed_dims']
    cfg.model.head.in_channels = DEMO_ARCH['embed_dims']
    pipeline = cfg.train_dataloader.dataset.pipeline
    for step in pipeline:
        if step.type == 'RandomResizedCrop':
            step.scale = 32
    cfg.train_dataloader = dict(
        batch_size=2,
        num_workers=0,
        persistent_workers=False,
        sampler=dict(type='DefaultSampler', shuffle=True),
        dataset=dict(
            type='CustomDataset', data_root=data_root, pipeline=pipeline))
    path = osp.join(out_dir, f'tiny_{osp.basename(config)}')
    cfg.dump(path)
    return path


def negative_control(tiny_config: str) -> str:
    """A tiny classification config on ``NoiseMIMViT`` with its pre-training
    parameters (the mask token, unused by a classifier)."""
    cfg = Config.fromfile(tiny_config)
    cfg.model.backbone.update(type='NoiseMIMViT', mask_unit=16, pretrain=True)
    path = osp.join(osp.dirname(tiny_config), NEGATIVE_CONTROL)
    cfg.dump(path)
    return path


def tiny_configs(tmp_path, checkpoint: str) -> list:
    """Every downstream config, shrunk, as files."""
    out = tmp_path / 'configs'
    out.mkdir()
    images = write_class_folders(str(tmp_path / 'images'))
    ade20k = write_ade20k(str(tmp_path / 'ADEChallengeData2016'))
    coco = str(tmp_path / 'coco')
    write_coco_set(coco, 'train', seed=0)
    write_coco_set(coco, 'val', seed=1)
    paths = [
        tiny_classification_config(c, str(out), checkpoint, images)
        for c in CONFIGS['classification']
    ]
    for config in CONFIGS['segmentation']:
        path = out / f'tiny_{osp.basename(config)}'
        path.write_text(tiny_segmentation_config(ade20k, checkpoint, config))
        paths.append(str(path))
    paths += [
        tiny_detection_config(out, checkpoint, coco, STEPS, config)
        for config in CONFIGS['detection']
    ]
    return paths


def test_no_config_asks_for_unused_parameters():
    """``grep -r find_unused_parameters=True configs`` finds nothing (the DDP
    test below checks the wrapper each downstream config builds)."""
    files = glob.glob(osp.join(ROOT, 'configs', '**', '*.py'), recursive=True)
    assert len(files) > sum(len(c) for c in CONFIGS.values())
    for path in files:
        with open(path) as f:
            assert 'find_unused_parameters=True' not in f.read(), path


def test_every_downstream_config_trains_under_ddp_with_all_gradients(
        tmp_path, tiny_pretrain_checkpoint):
    configs = tiny_configs(tmp_path, tiny_pretrain_checkpoint)
    control = negative_control(configs[0])
    out = tmp_path / 'results'
    out.mkdir()
    env = dict(
        os.environ,
        OMP_NUM_THREADS='1',
        PYTHONPATH=os.pathsep.join(
            [ROOT, os.environ.get('PYTHONPATH', '')]))
    run = subprocess.run(
        [sys.executable, '-m', 'torch.distributed.run', '--standalone',
         '--nproc_per_node', '2', WORKER, str(out), str(STEPS), control,
         *configs],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-5000:]

    names = [osp.basename(c) for c in configs]
    assert len(names) == sum(len(c) for c in CONFIGS.values())
    for rank in (0, 1):
        with open(out / f'rank{rank}.json') as f:
            results = json.load(f)
        assert sorted(results) == sorted(names + [NEGATIVE_CONTROL])
        # an unused parameter is caught: recorded in step 1, then DDP raises
        control = results[NEGATIVE_CONTROL]
        assert control['missing'] == [['backbone.mask_token']], control
        assert 'Expected to have finished reduction' in control['error']
        for name in names:
            result = results[name]
            assert 'error' not in result, (rank, name, result.get('error'))
            assert result['find_unused_parameters'] is False, name
            assert result['trainable'], name
            # every trainable parameter got a gradient in every step
            assert result['missing'] == [[]] * STEPS, (rank, name)
            assert len(result['losses']) == STEPS
            assert all(math.isfinite(x) for x in result['losses']), name
        # the linear probe trains only its neck and head
        linear = [n for n in names if 'linear' in n]
        assert linear and all(
            not p.startswith('backbone.')
            for n in linear for p in results[n]['trainable'])
