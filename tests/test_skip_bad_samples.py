"""SkipBadSamples on real corrupt files (a JPEG and a PNG cut short, garbage
bytes named .png): skipped, logged, counted in the main process with several
dataloader workers, limited by max_bad, and kept across --resume."""
import glob
import importlib.util
import os
import os.path as osp
import shutil
import subprocess
import sys
import time

import pytest
import torch
from mmengine.config import Config
from mmpretrain.registry import DATASETS

import noisemim  # noqa: F401
from noisemim.datasets import (BadSampleError, EmbeddedPhotos, SkipBadSamples,
                               TooManyBadSamplesError)
from noisemim.datasets.skip_bad_samples import SKIPPED_KEY
from noisemim.engine.hooks.bad_samples import guard_bad_samples

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEMO = osp.join(ROOT, 'configs/pretrain/noisemim_vit-tiny_demo.py')
BAD = ('b.jpg', 'c.png', 'e.png')


@pytest.fixture
def folder(tmp_path) -> str:
    """a, d, f, g: photographs; b.jpg: a JPEG cut in half; c.png: garbage
    bytes; e.png: a PNG cut in half."""
    photos = EmbeddedPhotos.data_dir()
    root = tmp_path / 'photos'
    root.mkdir()
    for name, photo in (('a.png', 'astronaut.png'), ('d.png', 'camera.png'),
                        ('f.png', 'coins.png'), ('g.jpg', 'rocket.jpg')):
        shutil.copy(osp.join(photos, photo), root / name)
    jpeg = open(osp.join(photos, 'rocket.jpg'), 'rb').read()
    (root / 'b.jpg').write_bytes(jpeg[:len(jpeg) // 2])
    (root / 'c.png').write_bytes(os.urandom(3000))
    png = open(osp.join(photos, 'moon.png'), 'rb').read()
    (root / 'e.png').write_bytes(png[:len(png) // 2])
    return str(root)


def photo_dataset(root: str) -> dict:
    """The demo's training pipeline over a folder of images (a config)."""
    pipeline = Config.fromfile(DEMO).train_dataloader.to_dict()
    pipeline = pipeline['dataset']['pipeline']
    return dict(type='CustomDataset', data_root=root, with_label=False,
                pipeline=pipeline)


def test_bad_samples_are_skipped_logged_and_carried(folder):
    dataset = DATASETS.build(
        dict(type='SkipBadSamples', dataset=photo_dataset(folder), max_bad=2))
    assert len(dataset) == 7 and dataset.metainfo == dataset.dataset.metainfo
    assert SKIPPED_KEY not in dataset[0]['data_samples'].metainfo
    served = dataset[1]  # b.jpg and c.png are bad: d.png comes instead
    assert served['data_samples'].img_path == osp.join(folder, 'd.png')
    assert served['inputs'].shape == (3, 64, 64)
    records = served['data_samples'].metainfo[SKIPPED_KEY]
    assert [r.split(':')[0] for r in records] == [
        osp.join(folder, 'b.jpg'), osp.join(folder, 'c.png')]
    assert 'failed to load image' in records[0]  # the loader's own error
    assert dataset.bad == records

    with pytest.raises(TooManyBadSamplesError) as error:
        dataset[4]  # e.png: the third bad sample, max_bad=2
    for name in ('b.jpg', 'c.png', 'e.png'):
        assert osp.join(folder, name) in str(error.value)
    assert '3 bad samples, more than max_bad=2' in str(error.value)


def test_flat_form_and_bad_arguments(folder):
    flat = photo_dataset(folder)
    flat['dataset_type'] = flat.pop('type')
    dataset = SkipBadSamples(max_bad=5, **flat)
    assert dataset[2]['data_samples'].img_path == osp.join(folder, 'd.png')
    with pytest.raises(ValueError, match="max_bad must be an int >= 0, got -1"):
        SkipBadSamples(photo_dataset(folder), max_bad=-1)
    with pytest.raises(ValueError, match='either dataset='):
        SkipBadSamples()
    with pytest.raises(TypeError, match=r"unexpected arguments \['split'\]"):
        SkipBadSamples(photo_dataset(folder), split='train')


def test_off_the_first_bad_file_stops_the_run_naming_it(folder):
    cfg = Config(dict(train_dataloader=dict(dataset=photo_dataset(folder))))
    guard_bad_samples(cfg)  # what tools/train.py does to any config
    assert cfg.train_dataloader.dataset.max_bad == 0
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    dataset[0]
    with pytest.raises(BadSampleError) as error:
        dataset[1]
    assert f'Cannot load sample 1 ({osp.join(folder, "b.jpg")})' in str(
        error.value)
    assert dataset.bad == []  # nothing skipped


def test_off_names_the_file_under_python_O_too(folder):
    # Under -O mmcv's ``assert img is not None, 'failed to load image: ...'``
    # is gone and the error is an AttributeError on None.
    script = (
        'import sys, noisemim; from mmengine.config import Config; '
        'from mmpretrain.registry import DATASETS; '
        'from noisemim.engine.hooks.bad_samples import guard_bad_samples; '
        f'cfg = Config(dict(train_dataloader=dict(dataset={photo_dataset(folder)!r}))); '
        'guard_bad_samples(cfg); '
        'DATASETS.build(cfg.train_dataloader.dataset)[4]')
    run = subprocess.run([sys.executable, '-O', '-c', script], cwd=ROOT,
                         capture_output=True, text=True,
                         env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert run.returncode != 0
    assert 'AssertionError' not in run.stderr  # asserts are off
    assert (f'BadSampleError: Cannot load sample 4 '
            f'({osp.join(folder, "e.png")})') in run.stderr, run.stderr[-2000:]


def train_in_process(config: str, work_dir: str, *args: str) -> None:
    """tools/train.py's ``main()`` in this process."""
    spec = importlib.util.spec_from_file_location(
        'noisemim_train_tool', osp.join(ROOT, 'tools/train.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    old, sys.argv = sys.argv, [
        'train.py', config, '--work-dir', work_dir, *args, '--cfg-options',
        f'experiment_name=t{time.time_ns()}'
    ]
    try:
        tool.main()
    finally:
        sys.argv = old


def config_over(tmp_path, folder: str, workers: int, max_bad=50) -> str:
    """The demo (4 iterations, batch 4) over ``folder``."""
    path = tmp_path / f'skip_{workers}_{max_bad}.py'
    pipeline = photo_dataset(folder)['pipeline']
    path.write_text(
        f'_base_ = [{DEMO!r}]\n'
        'train_cfg = dict(max_iters=4)\n'
        'default_hooks = dict(checkpoint=dict(interval=2, max_keep_ckpts=-1))\n'
        f'train_dataloader = dict(batch_size=4, num_workers={workers}, '
        'persistent_workers=False, dataset=dict(_delete_=True, '
        f'type="SkipBadSamples", max_bad={max_bad}, dataset=dict('
        f'type="CustomDataset", data_root={folder!r}, with_label=False, '
        f'pipeline={pipeline!r})))\n')
    return str(path)


def records(checkpoint: str) -> list:
    hub = torch.load(checkpoint)['message_hub']
    return hub['runtime_info'].get('bad_samples', [])


def test_counts_come_back_from_workers_reach_the_log_and_survive_resume(
        tmp_path, folder):
    one, two, resumed = (str(tmp_path / n) for n in ('one', 'two', 'resumed'))
    train_in_process(config_over(tmp_path, folder, 0), one)
    train_in_process(config_over(tmp_path, folder, 2), two)
    at_2, at_4 = (records(osp.join(two, f'iter_{n}.pth')) for n in (2, 4))
    # The same batches, so the same bad samples, whether loaded here or in
    # two worker processes; some before the checkpoint at 2, some after.
    assert at_4 == records(osp.join(one, 'iter_4.pth'))
    assert 0 < len(at_2) < len(at_4)
    assert all(r.split(':')[0] in [osp.join(folder, b) for b in BAD]
               for r in at_4)
    log = open(glob.glob(osp.join(two, '*', '*.log'))[0]).read()
    assert f'(run total {len(at_4)}, max_bad=50)' in log
    assert f'Bad samples skipped in this run: {len(at_4)}' in log

    train_in_process(
        config_over(tmp_path, folder, 2), resumed, '--resume',
        osp.join(two, 'iter_2.pth'))
    assert records(osp.join(resumed, 'iter_4.pth')) == at_4
    log = open(glob.glob(osp.join(resumed, '*', '*.log'))[0]).read()
    assert f'{len(at_2)} bad sample(s) were skipped before this resume' in log


def test_past_max_bad_the_run_stops_with_the_files(tmp_path, folder):
    config = config_over(tmp_path, folder, 0, max_bad=1)
    with pytest.raises(TooManyBadSamplesError) as error:
        train_in_process(config, str(tmp_path / 'wd'))
    assert 'more than max_bad=1' in str(error.value)
    assert any(osp.join(folder, b) in str(error.value) for b in BAD)


def test_counts_are_gathered_over_two_processes(tmp_path, folder):
    from test_dist_train import free_port
    # Unshuffled: rank 0 reads indices 0, 2, 4, 6 (a, c, e, g), rank 1 reads
    # 1, 3, 5, 0 (b, d, f, a). Per pass rank 0 skips c.png and e.png; rank 1
    # skips b.jpg and c.png (served d.png in b's place). Batch 2 x 4
    # iterations is two passes each: 8 records, b.jpg's only from rank 1.
    config = tmp_path / 'two_ranks.py'
    config.write_text(
        f'_base_ = [{config_over(tmp_path, folder, 0)!r}]\n'
        'train_dataloader = dict(batch_size=2, sampler=dict('
        "_delete_=True, type='DefaultSampler', shuffle=False))\n")
    work_dir = str(tmp_path / 'two')
    env = dict(os.environ, OMP_NUM_THREADS='1', PORT=str(free_port()),
               PATH=osp.dirname(sys.executable) + os.pathsep +
               os.environ['PATH'])
    run = subprocess.run(
        ['bash', osp.join(ROOT, 'tools/dist_train.sh'), str(config), '2',
         '--work-dir', work_dir], cwd=ROOT, env=env, capture_output=True,
        text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-4000:]
    found = [r.split(':')[0] for r in records(osp.join(work_dir, 'iter_4.pth'))]
    assert sorted(found) == sorted(
        [osp.join(folder, n) for n in ('b.jpg', 'c.png', 'c.png', 'e.png')] * 2)
