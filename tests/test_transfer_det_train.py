"""Mask R-CNN on a tiny COCO-format set through tools/train.py, tools/test.py
(mmdet's CocoMetric, bbox and segm) and tools/dist_train.sh (2 CPU processes).

The model is the ViTDet-style detection config of ``configs/detection``, with
only its sizes shrunk: a tiny NoiseMIM ViT (4 blocks, 64-d, 8 px patches)
loaded from a pre-training checkpoint, 96 px large-scale jitter, thin heads.
"""
import glob
import json
import os
import os.path as osp
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmpretrain.models.utils import resize_pos_embed
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

import noisemim  # noqa: F401  (allow-lists the Runner checkpoint globals)
from noisemim.utils.tiny_data import COCO_CLASSES as CLASSES
from noisemim.utils.tiny_data import COCO_SIZE, PHOTOS, write_coco_set

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG = osp.join(
    ROOT, 'configs/detection/mask-rcnn_noisemim-vit-b_simplefpn_lsj-25e_coco.py')
SIZE = COCO_SIZE


def _shrink(cfg: Config, size: int) -> None:
    """Replace the 1024 px sizes of the LSJ pipelines and the batch padding."""
    big = (1024, 1024)
    pipelines = [cfg.train_dataloader.dataset.pipeline,
                 cfg.test_dataloader.dataset.pipeline,
                 cfg.val_dataloader.dataset.pipeline,
                 cfg.model.data_preprocessor.batch_augments]
    for pipeline in pipelines:
        for step in pipeline:
            for key in ('scale', 'crop_size', 'size'):
                if tuple(step.get(key, ())) == big:
                    step[key] = (size, size)


def tiny_detection_config(tmp_path, checkpoint: str, data_root: str,
                          iters: int, config: str = CONFIG) -> str:
    """A detection config (the 25-epoch one by default) with its sizes
    shrunk, dumped to a file.

    Args:
        tmp_path: Where to write it.
        checkpoint (str): The tiny NoiseMIM pre-training checkpoint.
        data_root (str): A set written by :func:`write_coco_set`.
        iters (int): Training iterations.
        config (str): The detection config file.

    Returns:
        str: The config file.
    """
    cfg = Config.fromfile(config)
    _shrink(cfg, SIZE)
    ch = 32  # neck and head channels
    cfg.merge_from_dict(dict(
        model=dict(
            backbone=dict(
                arch=dict(_delete_=True, embed_dims=64, num_layers=4,
                          num_heads=4, feedforward_channels=256),
                img_size=SIZE, patch_size=8, window_size=5,
                global_attn_indexes=(1, 3),
                init_cfg=dict(checkpoint=checkpoint)),
            neck=dict(backbone_channel=64, in_channels=[16, 32, 64, 64],
                      out_channels=ch),
            rpn_head=dict(in_channels=ch, feat_channels=ch,
                          anchor_generator=dict(strides=[2, 4, 8, 16, 32])),
            roi_head=dict(
                bbox_roi_extractor=dict(out_channels=ch,
                                        featmap_strides=[2, 4, 8, 16]),
                bbox_head=dict(in_channels=ch, conv_out_channels=ch,
                               fc_out_channels=64, num_classes=2),
                mask_roi_extractor=dict(out_channels=ch,
                                        featmap_strides=[2, 4, 8, 16]),
                mask_head=dict(in_channels=ch, conv_out_channels=ch,
                               num_classes=2)),
            train_cfg=dict(rpn=dict(sampler=dict(num=64)),
                           rpn_proposal=dict(nms_pre=200, max_per_img=100),
                           rcnn=dict(sampler=dict(num=64))),
            test_cfg=dict(rpn=dict(nms_pre=200, max_per_img=100),
                          rcnn=dict(score_thr=0., max_per_img=20))),
        optim_wrapper=dict(type='OptimWrapper'),  # AMP needs a GPU
        train_cfg=dict(_delete_=True, type='IterBasedTrainLoop',
                       max_iters=iters),
        default_hooks=dict(logger=dict(interval=1),
                           checkpoint=dict(interval=iters))))
    meta = dict(classes=CLASSES)
    for name, split in (('train_dataloader', 'train'),
                        ('test_dataloader', 'val')):
        loader = cfg[name]
        loader.update(batch_size=2, num_workers=0, persistent_workers=False)
        loader.dataset.update(
            data_root=data_root, metainfo=meta,
            ann_file=f'annotations/instances_{split}.json',
            data_prefix=dict(img=f'{split}/'))
    cfg.test_evaluator.ann_file = osp.join(data_root,
                                           'annotations/instances_val.json')
    # evaluation is tools/test.py's job here
    cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None
    path = str(tmp_path / f'tiny_{osp.basename(config)}')
    cfg.dump(path)
    return path


@pytest.fixture
def coco_root(tmp_path) -> str:
    root = str(tmp_path / 'coco')
    write_coco_set(root, 'train', seed=0)
    write_coco_set(root, 'val', PHOTOS[:4], seed=1)
    return root


def _run(cmd, env=None) -> subprocess.CompletedProcess:
    # one thread per process: OpenMP threads spin on a busy 2-core machine
    env = dict(env or os.environ, OMP_NUM_THREADS='1')
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                         timeout=300, env=env)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-5000:]
    return run


def _losses(work_dir: str) -> list:
    path = glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))[0]
    with open(path) as f:
        return [json.loads(line) for line in f if '"loss"' in line]


def test_train_then_coco_metric(tmp_path, coco_root, tiny_pretrain_checkpoint):
    iters = 3
    config = tiny_detection_config(tmp_path, tiny_pretrain_checkpoint,
                                   coco_root, iters)
    work_dir = str(tmp_path / 'train')
    _run([sys.executable, 'tools/train.py', config, '--work-dir',
          work_dir])
    records = _losses(work_dir)
    assert len(records) == iters
    for key in ('loss_rpn_cls', 'loss_rpn_bbox', 'loss_cls', 'loss_bbox',
                'loss_mask'):
        assert all(np.isfinite(r[key]) for r in records), key
    checkpoint = osp.join(work_dir, f'iter_{iters}.pth')
    # the backbone started from the pre-training weights (the warm-up lr is
    # 1e-7: they barely moved), the position embedding resized to 12x12
    trained = torch.load(checkpoint)['state_dict']
    pretrained = torch.load(tiny_pretrain_checkpoint)['state_dict']
    key = 'backbone.layers.0.attn.qkv.weight'
    torch.testing.assert_close(trained[key], pretrained[key], atol=1e-4,
                               rtol=0)
    torch.testing.assert_close(
        trained['backbone.pos_embed'],
        resize_pos_embed(pretrained['backbone.pos_embed'][:, 1:], (8, 8),
                         (12, 12), 'bicubic', 0), atol=1e-4, rtol=0)

    prefix = str(tmp_path / 'results')
    _run([sys.executable, 'tools/test.py', config, checkpoint, '--work-dir',
          str(tmp_path / 'test'), '--cfg-options',
          f'test_evaluator.outfile_prefix={prefix}'])
    [metrics_file] = glob.glob(str(tmp_path / 'test' / '*' / '*.json'))
    with open(metrics_file) as f:
        metrics = json.load(f)
    gt = COCO(osp.join(coco_root, 'annotations/instances_val.json'))
    for iou_type in ('bbox', 'segm'):
        for key in ('mAP', 'mAP_50', 'mAP_75', 'mAP_s'):
            value = metrics[f'coco/{iou_type}_{key}']
            assert 0. <= value <= 1., (iou_type, key, value)
        # the reported value is pycocotools' on the dumped detections
        evaluation = COCOeval(gt, gt.loadRes(f'{prefix}.{iou_type}.json'),
                              iou_type)
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
        assert metrics[f'coco/{iou_type}_mAP'] == pytest.approx(
            evaluation.stats[0], abs=1e-3)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_dist_train_two_cpu_processes(tmp_path, coco_root,
                                      tiny_pretrain_checkpoint):
    iters = 2
    config = tiny_detection_config(tmp_path, tiny_pretrain_checkpoint,
                                   coco_root, iters)
    work_dir = str(tmp_path / 'dist')
    env = dict(os.environ, PORT=str(_free_port()),
               PATH=osp.dirname(sys.executable) + os.pathsep +
               os.environ['PATH'])
    run = _run(['bash', 'tools/dist_train.sh', config, '2', '--work-dir',
                work_dir], env=env)
    log = run.stdout + run.stderr
    assert 'Distributed training: True' in log and 'GPU number: 2' in log
    records = _losses(work_dir)
    assert len(records) == iters and all(
        np.isfinite(r['loss']) for r in records)
    assert osp.isfile(osp.join(work_dir, f'iter_{iters}.pth'))
