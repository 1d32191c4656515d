"""Loud failures and safe checkpoints, through tools/train.py's main() on the
tiny demo config (in this process: a real mmengine Runner, no start-up cost).

Covered: a non-finite loss, a checkpoint that carries code, a checkpoint that
does not fit the model (--resume and load_from), a missing or unreadable
image, a missing dataset root; and that real Runner checkpoints load with
torch's weights_only=True default on every loading path.
"""
import importlib.util
import os
import os.path as osp
import pickle
import shutil
import sys
import time

import pytest
import torch
from mmengine.config import Config
from mmengine.runner.checkpoint import _load_checkpoint, load_checkpoint
from mmpretrain.registry import DATASETS, MODELS

import noisemim  # noqa: F401
from noisemim.engine.hooks import CheckpointMismatchError, NonFiniteLossError
from noisemim.utils.checkpoint import UnsafeCheckpointError, unsafe_globals
from noisemim.utils.launch import check_data_roots

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEMO = osp.join(ROOT, 'configs/pretrain/noisemim_vit-tiny_demo.py')


def train_main(work_dir, *args: str, iters: int = 2, every: int = 1) -> None:
    """Run tools/train.py's ``main()`` here on the demo config (``iters``
    iterations, batch 4, a checkpoint and a log every ``every``)."""
    spec = importlib.util.spec_from_file_location(
        'noisemim_train_tool', osp.join(ROOT, 'tools/train.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    argv = [
        'train.py', DEMO, '--work-dir',
        str(work_dir), *args, '--cfg-options', f'train_cfg.max_iters={iters}',
        'train_dataloader.batch_size=4',
        f'default_hooks.checkpoint.interval={every}',
        f'default_hooks.logger.interval={every}',
        # A Runner's MessageHub is found by experiment name: keep them apart.
        f'experiment_name=t{time.time_ns()}'
    ]
    old, sys.argv = sys.argv, argv
    try:
        tool.main()
    finally:
        sys.argv = old


@pytest.fixture(scope='module')
def diverged(tmp_path_factory):
    """A run whose lr (1e30) makes the loss NaN at iteration 2, and its error."""
    work_dir = tmp_path_factory.mktemp('diverged')
    with pytest.raises(NonFiniteLossError) as error:
        train_main(work_dir, '--cfg-options', 'param_scheduler=None',
                   'optim_wrapper.optimizer.lr=1e30')
    return work_dir, str(error.value)


def test_non_finite_loss_stops_with_iteration_terms_and_checkpoint(diverged):
    work_dir, message = diverged
    last_good = osp.join(work_dir, 'iter_1.pth')
    assert 'Non-finite loss at iteration 2' in message
    for term in ('loss=nan', 'loss_mim=', 'loss_denoise=', 'loss_disruption='):
        assert term in message
    assert f'The last good checkpoint is {last_good}' in message
    assert osp.exists(last_good)
    assert not osp.exists(osp.join(work_dir, 'iter_2.pth'))  # nothing broken


def test_non_finite_loss_between_logging_iterations_is_found_at_its_own(
        tmp_path):
    """The loss terms reach the host every 3 iterations only (logger and
    checkpoint interval 3); the NaN of iteration 2 is named there, before a
    checkpoint of the broken weights is written."""
    with pytest.raises(NonFiniteLossError) as error:
        train_main(tmp_path, '--cfg-options', 'param_scheduler=None',
                   'optim_wrapper.optimizer.lr=1e30', iters=4, every=3)
    assert 'Non-finite loss at iteration 2: loss=nan' in str(error.value)
    assert 'No checkpoint was saved before it' in str(error.value)
    assert not osp.exists(osp.join(tmp_path, 'iter_3.pth'))


def test_runner_checkpoints_load_with_weights_only(diverged):
    path = osp.join(diverged[0], 'iter_1.pth')
    assert unsafe_globals(path) == []
    checkpoint = torch.load(path)  # torch 2.13: weights_only=True
    assert len(checkpoint['message_hub']['log_scalars']['train/loss'].data[0]) == 1
    assert checkpoint['meta']['iter'] == 1 and 'rng_states' in checkpoint
    assert _load_checkpoint(path)['meta']['iter'] == 1  # resume / load_from
    model = MODELS.build(Config.fromfile(DEMO).model)
    load_checkpoint(model, path, strict=True)  # Pretrained init, converters
    assert torch.equal(model.state_dict()['backbone.pos_embed'],
                       checkpoint['state_dict']['backbone.pos_embed'])


class RunsCode:
    """Pickles as a call; unpickling it would run ``command`` in a shell."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return os.system, (self.command, )


class GetsAttribute:
    """Pickles as ``getattr(HistoryBuffer, '__init__')``."""

    def __reduce__(self):
        from mmengine.logging import HistoryBuffer
        return getattr, (HistoryBuffer, '__init__')


def test_checkpoint_that_runs_code_is_refused_and_nothing_runs(
        tmp_path, diverged):
    marker = tmp_path / 'pwned'
    evil = str(tmp_path / 'evil.pth')
    state = torch.load(osp.join(diverged[0], 'iter_1.pth'))
    state['meta']['note'] = RunsCode(f'touch {marker}')
    torch.save(state, evil)
    assert unsafe_globals(evil) == ['posix.system']

    with pytest.raises(UnsafeCheckpointError, match='posix.system'):
        train_main(tmp_path / 'wd', '--resume', evil)
    with pytest.raises(UnsafeCheckpointError, match='evil.pth'):
        train_main(tmp_path / 'wd', '--cfg-options', f'load_from={evil}')
    for load in (torch.load, _load_checkpoint):  # every other path
        with pytest.raises(pickle.UnpicklingError, match='posix.system'):
            load(evil)
    assert not marker.exists()

    getter = str(tmp_path / 'getattr.pth')
    torch.save(dict(meta=dict(x=GetsAttribute())), getter)
    with pytest.raises(pickle.UnpicklingError, match='__init__'):
        torch.load(getter)  # getattr is bound to HistoryBuffer's statistics


@pytest.mark.parametrize('how', ['--resume', 'load_from'])
def test_checkpoint_that_does_not_fit_lists_the_keys(tmp_path, diverged, how):
    state = torch.load(osp.join(diverged[0], 'iter_1.pth'))
    weights = state['state_dict']
    del weights['backbone.ln1.weight']
    weights['backbone.extra.weight'] = torch.zeros(1)
    weights['mim_head.predictor.bias'] = torch.zeros(7)
    path = str(tmp_path / 'other.pth')
    torch.save(state, path)
    args = (['--resume', path] if how == '--resume' else
            ['--cfg-options', f'load_from={path}'])
    with pytest.raises(CheckpointMismatchError) as error:
        train_main(tmp_path / 'wd', *args)
    message = str(error.value)
    assert "missing keys (1): ['backbone.ln1.weight']" in message
    assert "unexpected keys (1): ['backbone.extra.weight']" in message
    assert 'mim_head.predictor.bias: checkpoint (7,) vs model (192,)' in message


def photo_dataset(root: str):
    """The demo's training pipeline over a folder of images."""
    cfg = Config.fromfile(DEMO).train_dataloader.dataset
    return DATASETS.build(
        dict(type='CustomDataset', data_root=root, with_label=False,
             pipeline=cfg.pipeline))


def test_missing_or_unreadable_image_names_the_file(tmp_path):
    photos = noisemim.datasets.EmbeddedPhotos.data_dir()
    shutil.copy(osp.join(photos, 'astronaut.png'), tmp_path / 'a.png')
    (tmp_path / 'b.png').write_bytes(b'\x89PNG\r\n\x1a\n not an image')
    shutil.copy(osp.join(photos, 'camera.png'), tmp_path / 'c.png')
    dataset = photo_dataset(str(tmp_path))
    assert dataset[0]['inputs'].shape == (3, 64, 64)
    with pytest.raises(Exception, match='b.png'):
        dataset[1]
    os.remove(tmp_path / 'c.png')
    with pytest.raises(FileNotFoundError, match='c.png'):
        dataset[2]


def test_missing_dataset_root_names_the_path_and_how_to_prepare(tmp_path):
    cfg = Config.fromfile(DEMO)
    missing = str(tmp_path / 'photos')
    cfg.train_dataloader.dataset = dict(type='CustomDataset', data_root=missing)
    with pytest.raises(FileNotFoundError) as error:
        check_data_roots(cfg)
    assert missing in str(error.value)
    assert 'a folder of images' in str(error.value)
    assert 'train_dataloader.dataset.data_root=' in str(error.value)
