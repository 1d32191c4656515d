"""The benchmark's verdict on whether the data loader keeps the GPU fed."""
import pytest
import torch

from noisemim.benchmark.pipeline import cpus_per_device, feed_estimate


def test_workers_without_a_core_do_not_count():
    fed = feed_estimate(160., num_workers=12, needed=1650., cpus=14)
    assert (fed.usable_workers, fed.supply, fed.input_bound) == (12, 1920.,
                                                                 False)
    assert fed.verdict() == ('fed: 12 workers x 160 = 1920 images/s >= 1650 '
                             'needed')
    starved = feed_estimate(160., num_workers=12, needed=1650., cpus=6)
    assert starved.usable_workers == 5 and starved.input_bound
    assert starved.workers_needed == 11
    assert starved.verdict().startswith('INPUT-BOUND: 5 workers x 160 = 800')
    # num_workers=0: the training process loads the data itself.
    assert feed_estimate(50., 0, 40.).usable_workers == 1


def test_bad_rates_are_named():
    with pytest.raises(ValueError, match='per_worker must be > 0'):
        feed_estimate(0., 4, 10.)
    assert cpus_per_device(10**6) == 1 and cpus_per_device(1) >= 1


# The device-decode data path (noisemim/datasets/device_decode.py), run on
# CPU: its augmentation is the CPU pipeline's, and each path's rate is
# measured per worker.
def _photos(tmp_path, count=2):
    from noisemim.benchmark.pipeline import write_jpeg_photos
    return write_jpeg_photos(str(tmp_path / 'jpeg'), count=count)


def _both_paths(path: str, seed: int):
    """One image through the CPU path and the device-decode path (decoded
    on the CPU here), the numpy state reset to ``seed`` before each."""
    import numpy as np
    from mmengine.config import Config
    from mmengine.dataset import Compose, default_collate
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS

    import noisemim  # noqa: F401
    from noisemim.benchmark.pipeline import DEVICE_DECODE_DATASET, ROOT
    from noisemim.datasets.device_decode import encoded_collate
    cpu_cfg = Config.fromfile(
        f'{ROOT}/configs/_base_/datasets/imagenet_bs512_noisemim.py')
    dev_cfg = Config.fromfile(DEVICE_DECODE_DATASET)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        np.random.seed(seed)
        cpu = Compose(cpu_cfg.train_pipeline)(dict(img_path=path))
        cpu_pre = MODELS.build(cpu_cfg.data_preprocessor)
        np.random.seed(seed)
        packed = Compose(dev_cfg.train_pipeline)(dict(img_path=path))
        dev_pre = MODELS.build(dev_cfg.data_preprocessor)
    expected = cpu_pre(default_collate([cpu]), True)
    got = dev_pre(encoded_collate([packed]), True)
    return cpu, packed, expected['inputs'], got['inputs'], cpu_pre


def test_device_decode_is_the_cpu_pipeline_s_augmentation(tmp_path):
    """Same numpy state: the same crop box and flip as the CPU pipeline
    (mmpretrain's and mmcv's own draws); pixels within JPEG decoders' and
    resize implementations' rounding (Pillow vs torch antialiased bicubic)."""
    path = _photos(tmp_path)[0]
    flips = set()
    for seed in range(4):
        cpu, packed, expected, got, pre = _both_paths(path, seed)
        assert 'bytes' in packed['inputs']  # a plain JPEG: decoded later
        flips.add(packed['inputs']['flip'])
        assert got.shape == expected.shape == (1, 3, 224, 224)
        # In 0-255 levels (measured: mean 0.15, at most 4; the image
        # flipped the wrong way is ~80 levels off).
        levels = (got - expected).abs() * pre.std.view(1, 3, 1, 1)
        assert levels.mean() < 0.5 and levels.max() <= 8, (seed, levels)
    # Both flip decisions were drawn (a wrong flip would fail the pixels).
    assert flips == {True, False}


def test_files_the_device_may_not_decode_travel_as_pixels(tmp_path):
    from PIL import Image
    png = str(tmp_path / 'photo.png')
    Image.open(_photos(tmp_path)[0]).save(png)
    cpu, packed, expected, got, pre = _both_paths(png, 0)
    assert 'img' in packed['inputs'] and 'bytes' not in packed['inputs']
    levels = (got - expected).abs() * pre.std.view(1, 3, 1, 1)
    assert levels.mean() < 1.0


def test_device_decode_names_bad_settings():
    from noisemim.datasets.device_decode import (DeviceDecodeDataPreprocessor,
                                                 RandomFlipFlag,
                                                 RandomResizedCropParams)
    with pytest.raises(ValueError, match="got interpolation='nearest'"):
        RandomResizedCropParams(scale=224, interpolation='nearest')
    with pytest.raises(ValueError, match="got direction='vertical'"):
        RandomFlipFlag(prob=0.5, direction='vertical')
    pre = DeviceDecodeDataPreprocessor(mean=[0, 0, 0], std=[1, 1, 1])
    with pytest.raises(TypeError, match='encoded_collate'):
        pre(dict(inputs=torch.zeros(1, 3, 8, 8), data_samples=[]))


def test_each_data_path_is_measured_per_worker(tmp_path):
    from mmengine.config import Config

    from noisemim.benchmark.pipeline import ROOT, data_paths
    cfg = Config.fromfile(
        f'{ROOT}/configs/pretrain/noisemim_vit-base-p16_8xb512-amp-coslr-'
        '400e_in1k.py')
    paths = data_paths(cfg, 2, 'cpu', str(tmp_path))
    assert [p['path'].split(' (')[0] for p in paths] == [
        'cpu decode', 'cpu decode', 'device decode']
    assert all(p['per_worker'] > 0 for p in paths)
    assert paths[2]['device_side'] > 0 and paths[0]['device_side'] is None
    assert paths[2]['num_workers'] == 6 and paths[0]['num_workers'] == 12


def test_a_training_step_runs_on_device_decoded_batches(tmp_path):
    """The switch end to end (CPU, tiny NoiseMIM): a config whose data path
    is the device-decode base trains on its batches."""
    from mmengine.config import Config
    from mmengine.dataset import Compose
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS

    import noisemim  # noqa: F401
    from noisemim.benchmark.pipeline import DEVICE_DECODE_DATASET, ROOT
    from noisemim.datasets.device_decode import encoded_collate
    cfg = Config.fromfile(
        f'{ROOT}/configs/pretrain/noisemim_vit-tiny_demo.py')
    device = Config.fromfile(DEVICE_DECODE_DATASET)
    pipeline = device.train_pipeline
    pipeline[1]['scale'] = cfg.model.backbone.img_size
    model_cfg = cfg.model.to_dict()
    model_cfg['data_preprocessor'] = device.data_preprocessor.to_dict()
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(model_cfg)
        transforms = Compose(pipeline)
        batch = encoded_collate([transforms(dict(img_path=p))
                                 for p in _photos(tmp_path, 2)])
    model.init_weights()
    wrapper = build_optim_wrapper(model, dict(
        type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-3)))
    losses = model.train_step(batch, wrapper)
    assert torch.isfinite(sum(losses.values()))
    inputs = model.data_preprocessor(batch, True)['inputs']
    assert inputs.shape == (2, 3, 64, 64)
