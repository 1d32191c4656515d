"""tools/study.py end to end on a minimal budget, and its probe and budget."""
import importlib.util
import json
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config

from noisemim.study import load_digit_images, probe_features, set_budget

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def load_tool():
    spec = importlib.util.spec_from_file_location(
        'study_tool', osp.join(ROOT, 'tools', 'study.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_study_runs_end_to_end(tmp_path):
    threads = torch.get_num_threads()
    try:
        runs = load_tool().main([
            '--cells', 'maskonly_encoder', 'conjunctive_decoder_pixel',
            '--iters', '2', '--seeds', '0', '--random-init', '--num-digits',
            '40', '--work-dir',
            str(tmp_path), '--cfg-options', 'train_dataloader.batch_size=4'
        ])
    finally:
        torch.set_num_threads(threads)
    assert [r['cell'] for r in runs] == [
        'random_init', 'maskonly_encoder', 'conjunctive_decoder_pixel'
    ]
    assert runs[2]['method'] == 'MaskDiT-style'
    for run in runs:
        assert 0 <= run['knn'] <= 100 and 0 <= run['linear'] <= 100
    assert np.isnan(runs[0]['loss']) and np.isfinite(runs[1]['loss'])
    # Both trained cells went through the Runner (their configs are saved).
    for cell in ('maskonly_encoder', 'conjunctive_decoder_pixel'):
        assert osp.isfile(
            tmp_path / 'runs' / cell / 'seed0' / f'{cell}.py')
    md = (tmp_path / 'study.md').read_text()
    assert '| `conjunctive_decoder_pixel` | MaskDiT-style |' in md
    assert 'Command: `python tools/study.py --cells' in md
    with open(tmp_path / 'study.png', 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'
    saved = json.loads((tmp_path / 'study.json').read_text())
    assert len(saved['runs']) == 3


def test_unknown_cell_names_the_known_ones(tmp_path):
    with pytest.raises(FileNotFoundError, match='maskonly_decoder'):
        load_tool().main(
            ['--cells', 'conjunctive_decoder_feature_l2', '--work-dir',
             str(tmp_path)])


def test_probe_separates_informative_from_random_features():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), 20)
    informative = np.eye(10)[labels] * 5 + rng.normal(size=(200, 10))
    good = probe_features(informative, labels, seed=0)
    chance = probe_features(rng.normal(size=(200, 10)), labels, seed=0)
    assert good.knn > 90 and good.linear > 90
    assert chance.knn < 30 and chance.linear < 30


def test_digits_are_rgb_images_at_the_model_size():
    images, labels = load_digit_images(32, num=50)
    assert images.shape == (50, 3, 32, 32) and labels.shape == (50, )
    assert images.min() >= 0 and 200 < images.max() <= 255
    assert torch.equal(images[:, 0], images[:, 2])
    assert set(labels) == set(range(10))


def test_budget_sets_iterations_and_schedule():
    cfg = Config.fromfile(
        osp.join(ROOT, 'configs/pretrain/study/maskonly_encoder.py'))
    set_budget(cfg, 50)
    assert cfg.train_cfg.max_iters == 50
    warmup, cosine = cfg.param_scheduler
    assert warmup['end'] == cosine['begin'] == 5 and cosine['end'] == 50
    assert cfg.default_hooks.checkpoint is None
    with pytest.raises(ValueError, match='iters.*0'):
        set_budget(cfg, 0)
