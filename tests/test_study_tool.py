"""tools/study.py end to end on minimal budgets, its probe data and report."""
import importlib.util
import json
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmpretrain.registry import DATASETS

from noisemim.study import (PhotoCrops, ProbeSet, analyze_cell, beats,
                            probe_features, set_budget)
from noisemim.study.photo_crops import split_columns
from noisemim.study.probe import normalize

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
PROTOCOLS = osp.join(ROOT, 'configs', 'pretrain', 'study', 'protocols')
PIPELINE = [dict(type='Resize', scale=(64, 64)), dict(type='PackInputs')]


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def load_tool():
    spec = importlib.util.spec_from_file_location(
        'study_tool', osp.join(ROOT, 'tools', 'study.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_default_protocol_runs_end_to_end(tmp_path):
    runs = load_tool().main([
        '--cells', 'maskonly_encoder', 'conjunctive_decoder_pixel',
        '--iters', '2', '--seeds', '0', '--probe-blocks', '1',
        '--probe-every', '1', '--work-dir',
        str(tmp_path), '--cfg-options', 'train_dataloader.batch_size=4',
        '--protocol-options', 'probe.train.num_per_class=3',
        'probe.val.num_per_class=2', 'analysis_images=4'
    ])
    assert [r['cell'] for r in runs] == [
        'random_init', 'maskonly_encoder', 'conjunctive_decoder_pixel'
    ]
    assert runs[2]['method'] == 'MaskDiT-style'
    for run in runs:
        assert 0 <= run['knn'] <= 100 and 0 <= run['linear'] <= 100
        assert set(run['blocks']) == {'block1'}
        # Paper A's analyses, per block of the 4-block ViT.
        assert sorted(run['analyses']['head_kl']) == ['0', '1', '2', '3']
        assert all(len(v) == 4 for v in run['analyses']['head_kl'].values())
        assert run['analyses']['spectrum']['3'][0] == 0.
        scale = run['analyses']['stream_rms']
        assert sorted(scale) == ['0', '1', '2', '3']
        assert all(np.isfinite(v) and v > 0 for v in scale.values())
        grads = run['analyses']['loss_grad']
        assert all(row['block0'] > 0 for row in grads.values())
    assert set(runs[2]['analyses']['loss_grad']) == {
        'loss_mim', 'loss_denoise', 'total'
    }  # MaskDiT-style's two terms
    assert np.isnan(runs[0]['loss']) and np.isfinite(runs[1]['loss'])
    # The learning curve: a probe after each of the 2 iterations.
    assert 'curve' not in runs[0]
    assert [p['iter'] for p in runs[1]['curve']] == [1, 2]
    assert runs[1]['curve'][-1]['knn'] == runs[1]['knn']
    # The trained cells went through the Runner (their configs are saved),
    # pre-trained on the protocol's data (the photographs' kept regions).
    for cell in ('maskonly_encoder', 'conjunctive_decoder_pixel'):
        saved = Config.fromfile(
            tmp_path / 'runs' / cell / 'seed0' / f'{cell}.py')
        dataset = saved.train_dataloader.dataset
        assert dataset.type == 'PhotoCrops' and dataset.split == 'pretrain'
    md = (tmp_path / 'study.md').read_text()
    assert '| `conjunctive_decoder_pixel` | MaskDiT-style |' in md
    assert 'Command: `python tools/study.py --cells' in md
    assert 'KL block 3' in md and 'block1' in md
    assert 'Scale of the residual stream' in md
    assert '| `conjunctive_decoder_pixel` | loss_denoise |' in md
    for png in ('study.png', 'study_analyses.png', 'study_curves.png'):
        with open(tmp_path / png, 'rb') as f:
            assert f.read(8) == b'\x89PNG\r\n\x1a\n'
    saved = json.loads((tmp_path / 'study.json').read_text())
    assert len(saved['runs']) == 3 and saved['protocol'] == 'photo_crops'
    assert saved['cpu_s'] > 0

    # The report again from the JSON alone (as for studies run in parallel).
    merged = load_tool().main([
        '--from-json',
        str(tmp_path / 'study.json'), '--work-dir',
        str(tmp_path / 'merged')
    ])
    assert merged == saved['runs']
    text = (tmp_path / 'merged' / 'study.md').read_text()
    assert 'Merged from 1 studies' in text
    assert text.split('| cell |', 1)[1] == md.split('| cell |', 1)[1]
    # A merged report can be merged again (its sources are read).
    again = load_tool().main([
        '--from-json',
        str(tmp_path / 'merged' / 'study.json'), '--work-dir',
        str(tmp_path / 'again')
    ])
    assert again == saved['runs']
    assert (tmp_path / 'again' / 'study.md').read_text() == text
    with pytest.raises(ValueError, match='seed 0 is in both'):
        load_tool().main([
            '--from-json',
            str(tmp_path / 'study.json'),
            str(tmp_path / 'study.json'), '--work-dir',
            str(tmp_path / 'twice')
        ])


def write_folder(root, split: str, num: int, seed: int) -> None:
    """Two classes of 24 px images: reddish and bluish noise."""
    import mmcv
    rng = np.random.default_rng(seed)
    for label, channel in (('red', 2), ('blue', 0)):  # BGR files
        for i in range(num):
            image = rng.integers(0, 90, (24, 24, 3), dtype=np.uint8)
            image[..., channel] += 150
            mmcv.imwrite(image, str(root / split / label / f'{i}.png'))


def test_stream_scale_is_the_rms_of_each_blocks_output():
    tool = load_tool()
    cfg = Config.fromfile(tool.cell_config('maskonly_encoder'))
    model = tool.random_init(cfg, seed=0)['model']
    images = torch.randint(0, 256, (5, 3, 64, 64), dtype=torch.uint8)
    scale = analyze_cell(model, images, batch_size=2)['stream_rms']

    vit = model.backbone
    with torch.no_grad():
        x, _ = vit.patch_embed(normalize(model, images))
        x = torch.cat((vit.cls_token.expand(5, -1, -1), x), 1) + vit.pos_embed
        x = vit.pre_norm(x)
        for b, layer in enumerate(vit.layers):
            x = layer(x)
            expected = x[:, 1:].pow(2).mean().sqrt().item()
            assert scale[str(b)] == pytest.approx(expected, rel=1e-5)


def test_probe_and_pretrain_on_a_custom_dataset_folder(tmp_path):
    data = tmp_path / 'data'
    write_folder(data, 'train', 6, seed=0)
    write_folder(data, 'val', 4, seed=1)
    pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='Resize', scale=(64, 64)),
        dict(type='PackInputs')
    ]
    protocol = tmp_path / 'folder_protocol.py'
    protocol.write_text(
        f'description = "a CustomDataset folder"\n'
        f'cells = ["maskonly_decoder"]\n'
        f'iters = 2\nseeds = [0, 1]\n'
        f'pretrain_dataset = dict(type="CustomDataset", '
        f'data_root="{data}", data_prefix="train", with_label=False)\n'
        f'pipeline = {pipeline!r}\n'
        f'probe = dict(train=dict(type="CustomDataset", data_root="{data}", '
        f'data_prefix="train", pipeline=pipeline), '
        f'val=dict(type="CustomDataset", data_root="{data}", '
        f'data_prefix="val", pipeline=pipeline), knn_k=3)\n'
        f'analysis_images = 0\n')
    work = tmp_path / 'work'
    runs = load_tool().main([
        '--protocol', str(protocol), '--work-dir',
        str(work), '--cfg-options', 'train_dataloader.batch_size=4'
    ])
    assert [(r['cell'], r['seed']) for r in runs] == [
        ('random_init', 0), ('random_init', 1), ('maskonly_decoder', 0),
        ('maskonly_decoder', 1)
    ]
    # Colour separates the two classes: even untrained features find it.
    assert all(r['knn'] == 100. for r in runs[:2])
    assert all('analyses' not in r for r in runs)
    saved = Config.fromfile(
        work / 'runs' / 'maskonly_decoder' / 'seed0' / 'maskonly_decoder.py')
    assert saved.train_dataloader.dataset.data_root == str(data)
    # The cell kept its own pre-training pipeline (random resized crops).
    assert [t['type'] for t in saved.train_dataloader.dataset.pipeline
            ][:2] == ['LoadImageFromFile', 'RandomResizedCrop']
    md = (work / 'study.md').read_text()
    assert 'a CustomDataset folder' in md and '| `maskonly_decoder` |' in md


def test_probe_images_must_fit_the_cells(tmp_path):
    with pytest.raises(ValueError, match='val images are 32x32.*64x64'):
        load_tool().main([
            '--cells', 'maskonly_decoder', '--work-dir',
            str(tmp_path), '--protocol-options',
            'probe.val.pipeline.0.scale=(32, 32)',
            'probe.train.num_per_class=1', 'probe.val.num_per_class=1'
        ])


def test_unknown_cell_and_protocol_names_the_known_ones(tmp_path):
    with pytest.raises(FileNotFoundError, match='maskonly_decoder'):
        load_tool().main([
            '--cells', 'conjunctive_decoder_feature_l2', '--work-dir',
            str(tmp_path), '--protocol-options',
            'probe.train.num_per_class=1', 'probe.val.num_per_class=1'
        ])
    with pytest.raises(FileNotFoundError, match='photo_crops'):
        load_tool().main(['--protocol', 'imagenet', '--work-dir',
                          str(tmp_path)])


def test_photo_crops_keep_train_and_val_regions_apart():
    init_default_scope('mmpretrain')
    splits = {
        s: DATASETS.build(
            dict(type='PhotoCrops', split=s, num_per_class=4,
                 pipeline=PIPELINE))
        for s in ('train', 'val')
    }
    train, val = splits['train'], splits['val']
    classes = train.metainfo['classes']
    assert 'motorcycle_right' not in classes and len(classes) >= 10
    assert len(train) == len(val) == 4 * len(classes)
    for dataset, held_out in ((train, False), (val, True)):
        for i in range(len(dataset)):
            info = dataset.get_data_info(i)
            name = dataset.names[info['gt_label']]
            width = dataset._read(name).shape[1]
            kept, rest = split_columns(width, dataset.holdout)
            x0, _, x1, _ = info['crop_box']
            columns = rest if held_out else kept
            assert columns.start <= x0 < x1 <= columns.stop
    # The analyses' images cover every photograph, not the first one only.
    probe_set = ProbeSet(dict(type='PhotoCrops', split='val', num_per_class=4,
                              pipeline=PIPELINE))
    images = probe_set.spread(len(classes))
    assert images.shape == (len(classes), 3, 64, 64)
    index = np.linspace(0, len(val) - 1, len(classes)).round().astype(int)
    assert torch.equal(images, torch.stack([val[i]['inputs'] for i in index]))
    assert {val.get_data_info(i)['gt_label']
            for i in index} == set(range(len(classes)))
    assert len(probe_set.spread(1000)) == len(val)
    item = val[0]
    assert item['inputs'].shape == (3, 64, 64)
    assert item['inputs'].dtype == torch.uint8
    # Crops are drawn with a fixed seed: the same set every time.
    again = PhotoCrops(split='val', num_per_class=4)
    assert again.get_data_info(5)['crop_box'] == val.get_data_info(
        5)['crop_box']
    pretrain = PhotoCrops(split='pretrain', repeat=2)
    assert len(pretrain) == 2 * len(classes)
    assert 'gt_label' not in pretrain.get_data_info(0)
    with pytest.raises(ValueError, match="split.*'test'"):
        PhotoCrops(split='test')
    with pytest.raises(ValueError, match='holdout.*1.5'):
        PhotoCrops(holdout=1.5)


def test_digits_preset_splits_the_digits():
    init_default_scope('mmpretrain')
    protocol = Config.fromfile(osp.join(PROTOCOLS, 'digits.py'))
    train = ProbeSet(dict(protocol.probe.train, num=60))
    val = ProbeSet(dict(protocol.probe.val, num=60))
    assert len(train) == len(val) == 30
    (images, labels), = list(train.batches())
    assert images.shape == (30, 3, 64, 64) and images.dtype == torch.uint8
    assert torch.equal(images[:, 0], images[:, 2])
    assert set(labels) == set(range(10))
    index = [{s.dataset.get_data_info(i)['digit_index']
              for i in range(len(s))} for s in (train, val)]
    assert not index[0] & index[1] and index[0] | index[1] == set(range(60))


def test_probe_separates_informative_from_random_features():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), 20)
    informative = np.eye(10)[labels] * 5 + rng.normal(size=(200, 10))
    noise = rng.normal(size=(200, 10))
    good = probe_features(informative[::2], labels[::2], informative[1::2],
                          labels[1::2])
    chance = probe_features(noise[::2], labels[::2], noise[1::2],
                            labels[1::2])
    assert good.knn > 90 and good.linear > 90
    assert chance.knn < 30 and chance.linear < 30
    with pytest.raises(ValueError, match='k must be >= 1, got 0'):
        probe_features(noise, labels, noise, labels, k=0)


def test_margin_is_two_standard_deviations_on_each_side():
    assert beats(np.array([60., 61., 62.]), np.array([50., 51., 52.]))
    # Means 10 apart, but the spreads overlap within 2 std.
    assert not beats(np.array([55., 60., 65.]), np.array([50., 51., 52.]))
    assert beats(np.array([60.]), np.array([50., 51.])) is None


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
