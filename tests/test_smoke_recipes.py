"""The smoke recipes of docs/smoke.md: every task's real config, shrunk by
its ``configs/smoke/`` file, trains and evaluates on the tiny data of
``tools/misc/make_tiny_data.py`` with the real metric, run as the page
writes the commands (in a fresh folder holding only ``configs/`` and
``tools/``); and the rules for the fields a config derived from others
(``noisemim/utils/derived_fields.py``)."""
import copy
import functools
import glob
import os
import os.path as osp
import re
import shlex
import subprocess
import sys
from typing import Dict, List

import numpy as np
import pytest
import torch
from mmengine.config import Config

from noisemim.utils.derived_fields import (follow_data_root,
                                           stale_schedule_fields)

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DOC = osp.join(ROOT, 'docs', 'smoke.md')
SMOKE_CONFIGS = sorted(
    osp.splitext(osp.basename(p))[0]
    for p in glob.glob(osp.join(ROOT, 'configs', 'smoke', '*.py')))
DETECTION = osp.join(
    ROOT, 'configs/detection/mask-rcnn_noisemim-vit-b_simplefpn_lsj-25e_coco.py')


def page_commands() -> List[str]:
    """The commands of the page's first ``bash`` block (## The commands)."""
    with open(DOC) as f:
        text = f.read()
    section = text[text.index('## The commands'):]
    block = re.search(r'```bash\n(.*?)```', section, re.S).group(1)
    return [line.strip() for line in block.splitlines() if line.strip()]


def command_for(config: str) -> str:
    [command] = [c for c in page_commands()
                 if c.endswith(f'configs/smoke/{config}.py')]
    return command


def run(command: str, cwd: str) -> str:
    """Run a command of the page in ``cwd``, ``python`` being this
    interpreter; one thread (tests run side by side)."""
    argv = shlex.split(command)
    assert argv[0] == 'python', command
    env = dict(os.environ, OMP_NUM_THREADS='1')
    result = subprocess.run([sys.executable, *argv[1:]], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=600)
    log = result.stdout + result.stderr
    assert result.returncode == 0, f'{command}\n{log[-5000:]}'
    return log


@pytest.fixture(scope='module')
def smoke_dir(tmp_path_factory) -> Dict[str, str]:
    """A fresh folder with the repository's configs/ and tools/, where the
    page's data command and pre-training recipe have run."""
    cwd = tmp_path_factory.mktemp('smoke')
    for name in ('configs', 'tools'):
        os.symlink(osp.join(ROOT, name), cwd / name)
    commands = page_commands()
    assert commands[0].startswith('python tools/misc/make_tiny_data.py ')
    run(commands[0], str(cwd))
    log = run(command_for('pretrain_in1k'), str(cwd))
    return dict(cwd=str(cwd), pretrain_log=log)


def test_the_page_runs_every_smoke_config():
    commands = page_commands()
    assert SMOKE_CONFIGS == sorted([
        'finetune_cub', 'finetune_in1k', 'linear_in1k', 'mask-rcnn_coco',
        'pretrain_in1k', 'upernet_ade20k'
    ])
    ran = [c.split('configs/smoke/')[1][:-3] for c in commands[1:]]
    assert ran[0] == 'pretrain_in1k'  # the others start from its checkpoint
    assert sorted(ran) == SMOKE_CONFIGS
    # each inherits exactly one real config
    for name in SMOKE_CONFIGS:
        base = Config._get_base_files(
            osp.join(ROOT, 'configs', 'smoke', f'{name}.py'))
        assert len(base) == 1 and not base[0].startswith('../smoke'), name


def metrics(log: str, keys) -> Dict[str, float]:
    """The last logged value of each metric of a validation."""
    lines = [line for line in log.splitlines() if '(val)' in line]
    found = {}
    for key in keys:
        values = [re.search(rf'{re.escape(key)}: (-?[\d.]+)', line)
                  for line in lines]
        values = [float(v.group(1)) for v in values if v]
        assert values, f'{key} was not logged:\n' + '\n'.join(lines[-5:])
        found[key] = values[-1]
    return found


def test_pretraining_recipe(smoke_dir):
    log = smoke_dir['pretrain_log']
    losses = re.findall(r'Epoch\(train\) +\[(\d)\]\[(\d)/3\].* loss: ([\d.]+)'
                        r'  loss_mim: ([\d.]+)  loss_denoise: ([\d.]+)'
                        r'  loss_disruption: ([\d.]+)', log)
    # 24 images, batch 8: 3 iterations per epoch, 2 epochs
    assert [(int(e), int(i)) for e, i, *_ in losses] == [
        (e, i) for e in (1, 2) for i in (1, 2, 3)]
    assert all(np.isfinite(float(x)) for row in losses for x in row[2:])
    work_dir = osp.join(smoke_dir['cwd'], 'work_dirs', 'pretrain_in1k')
    state = torch.load(osp.join(work_dir, 'epoch_2.pth'))['state_dict']
    assert state['backbone.patch_embed.projection.weight'].shape == (
        64, 3, 16, 16)


@pytest.mark.parametrize('config,keys,top', [
    ('finetune_in1k', ('accuracy/top1', 'accuracy/top5'), 100),
    ('linear_in1k', ('accuracy/top1', 'accuracy/top5'), 100),
    ('finetune_cub', ('accuracy/top1', ), 100),
    ('mask-rcnn_coco', ('coco/bbox_mAP', 'coco/segm_mAP'), 1),
    ('upernet_ade20k', ('aAcc', 'mIoU', 'mAcc'), 100),
])
def test_downstream_recipe(smoke_dir, config, keys, top):
    log = run(command_for(config), smoke_dir['cwd'])
    # the backbone came from the smoke pre-training, every key checked
    loaded = re.search(r'StrictPretrained: loaded (\d+) keys of (\w+) from '
                       r'\S*work_dirs/pretrain_in1k/epoch_2\.pth', log)
    assert loaded, log[-3000:]
    if loaded.group(2) == 'VisionTransformer':  # all 54 of the tiny ViT
        assert loaded.group(1) == '54'
        assert 'dropped pre-training-only keys: mask_token' in log
    found = metrics(log, keys)
    assert all(0 <= v <= top for v in found.values()), found
    if config == 'finetune_cub':
        check_cub_metric_again(smoke_dir['cwd'], found['accuracy/top1'])


def check_cub_metric_again(cwd: str, top1: float) -> None:
    """tools/test.py (the page's command) gives the same top-1 from the
    checkpoint, and so does a direct computation from its weights."""
    with open(DOC) as f:
        [command] = re.findall(r'python tools/test\.py [^\n]+', f.read())
    log = run(command, cwd)
    again = float(re.search(r'accuracy/top1: ([\d.]+)', log).group(1))
    assert again == pytest.approx(top1, abs=1e-3)

    from mmengine.runner import load_checkpoint
    from mmpretrain.registry import DATASETS, MODELS
    cfg = Config.fromfile(osp.join(cwd, 'configs/smoke/finetune_cub.py'))
    cfg.model.backbone.init_cfg = None
    cfg.model.setdefault('data_preprocessor', cfg.get('data_preprocessor'))
    model = MODELS.build(cfg.model)
    load_checkpoint(model, osp.join(cwd, 'work_dirs/finetune_cub/epoch_2.pth'),
                    map_location='cpu', strict=True)
    model.eval()
    cfg.test_dataloader.dataset.data_root = osp.join(
        cwd, cfg.test_dataloader.dataset.data_root)
    dataset = DATASETS.build(cfg.test_dataloader.dataset)
    batch = [dataset[i] for i in range(len(dataset))]
    data = model.data_preprocessor(
        dict(inputs=[b['inputs'] for b in batch],
             data_samples=[b['data_samples'] for b in batch]))
    with torch.no_grad():
        scores = model(**data, mode='tensor')
    truth = torch.tensor([int(b['data_samples'].gt_label) for b in batch])
    expected = 100 * (scores.argmax(1) == truth).float().mean().item()
    assert len(batch) == 4
    assert top1 == pytest.approx(expected, abs=1e-3)


@functools.lru_cache()
def read(config: str) -> Config:
    return Config.fromfile(config)


def merged(config: str, options: dict):
    """(the config with ``options`` merged, the config as read)."""
    original = copy.deepcopy(read(config))
    cfg = copy.deepcopy(original)
    cfg.merge_from_dict(options)
    return cfg, original


def test_annotation_files_follow_a_moved_data_root():
    # a dataloader's data_root: its evaluator's full-path ann_file follows
    options = {f'{x}_dataloader.dataset.data_root': '/d/coco/'
               for x in ('train', 'val', 'test')}
    cfg, original = merged(DETECTION, options)
    assert original.val_evaluator.ann_file == \
        'data/coco/annotations/instances_val2017.json'
    moved = follow_data_root(cfg, original, options)
    assert cfg.val_evaluator.ann_file == cfg.test_evaluator.ann_file == \
        '/d/coco/annotations/instances_val2017.json'
    assert moved == [
        'val_evaluator ann_file: data/coco/annotations/instances_val2017.json'
        ' -> /d/coco/annotations/instances_val2017.json',
        'test_evaluator ann_file: data/coco/annotations/instances_val2017.json'
        ' -> /d/coco/annotations/instances_val2017.json'
    ]
    # the top-level data_root moves the dataloaders, then the evaluators
    options = {'data_root': '/e/coco'}
    cfg, original = merged(DETECTION, options)
    follow_data_root(cfg, original, options)
    for x in ('train', 'val', 'test'):
        assert cfg[f'{x}_dataloader'].dataset.data_root == '/e/coco'
    assert cfg.val_evaluator.ann_file == \
        '/e/coco/annotations/instances_val2017.json'
    # what the user set is kept
    options = {'data_root': '/e/coco', 'val_evaluator.ann_file': '/a/v.json'}
    cfg, original = merged(DETECTION, options)
    follow_data_root(cfg, original, options)
    assert cfg.val_evaluator.ann_file == '/a/v.json'
    assert cfg.test_evaluator.ann_file == \
        '/e/coco/annotations/instances_val2017.json'
    # a path outside the old root is not touched; nothing moved, nothing done
    cfg, original = merged(DETECTION, {})
    cfg.val_evaluator.ann_file = '/elsewhere/val.json'
    options = {'val_dataloader.dataset.data_root': '/d/'}
    cfg.merge_from_dict(options)
    assert follow_data_root(cfg, original, options) == []
    assert cfg.val_evaluator.ann_file == '/elsewhere/val.json'


def test_a_shortened_schedule_names_its_stale_fields():
    options = {'train_cfg.max_iters': 6}
    cfg, original = merged(DETECTION, options)
    stale = stale_schedule_fields(cfg, original, options)
    assert stale == [
        'param_scheduler[0].end=250',
        'param_scheduler[1].end=46094',
        'param_scheduler[1].milestones=[40972, 44387]',
        'train_cfg.dynamic_intervals=[(45001, 46094)]',
    ]
    # nothing rewritten
    assert cfg.param_scheduler[1].milestones == [40972, 44387]
    # set by the user: not stale; a longer schedule: nothing to say
    options = {'train_cfg.max_iters': 6, 'train_cfg.dynamic_intervals': None,
               'param_scheduler': []}
    cfg, original = merged(DETECTION, options)
    assert stale_schedule_fields(cfg, original, options) == []
    options = {'train_cfg.max_iters': 10**6}
    cfg, original = merged(DETECTION, options)
    assert stale_schedule_fields(cfg, original, options) == []


def test_make_demo_ends_with_next_commands_that_exist():
    """``make demo`` prints the next commands (plot, export, smoke runs):
    every tool and config they name exists, and the demo's checkpoint name
    is the one its config saves last."""
    with open(osp.join(ROOT, 'Makefile')) as f:
        makefile = f.read()
    recipe = makefile[makefile.index('\ndemo:'):makefile.index('\ntest:')]
    named = re.findall(r'((?:tools|configs)/[\w/.-]+\.py)', recipe)
    for needed in ('tools/analysis/plot_curves.py',
                   'tools/model_converters/publish_checkpoint.py',
                   'tools/model_converters/noisemim_to_timm.py',
                   'tools/misc/make_tiny_data.py',
                   'configs/smoke/pretrain_in1k.py'):
        assert needed in named, needed
    assert all(osp.isfile(osp.join(ROOT, p)) for p in named), named
    demo = read(osp.join(ROOT, 'configs/pretrain/noisemim_vit-tiny_demo.py'))
    assert f'iter_{demo.train_cfg.max_iters}.pth' in recipe
    assert 'tools/setup_env_pretrain.sh' in recipe


def test_tiny_coco_lists_cocos_80_categories():
    """The tiny COCO set names its categories as COCO 2017 does (the real
    80-class configs read it unchanged)."""
    from mmdet.datasets import CocoDataset

    from noisemim.utils.tiny_data import COCO_CLASSES, COCO_IDS, COCO_NAMES
    assert COCO_NAMES == CocoDataset.METAINFO['classes']
    assert len(set(COCO_IDS)) == 80 and COCO_IDS[-1] == 90
    assert set(COCO_CLASSES) <= set(COCO_NAMES)
