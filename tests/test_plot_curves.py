"""tools/analysis/plot_curves.py on real work dirs of the demo, and the
``--tensorboard`` switch of tools/train.py."""
import glob
import importlib.util
import json
import os.path as osp
import sys
import time

import pytest
from matplotlib.image import imread
from mmengine.config import Config

from noisemim.analysis.curves import (default_keys, find_scalar_logs,
                                      load_runs, plot_curves, read_scalars,
                                      training_curves)
from noisemim.utils import tensorboard as tb

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEMO = osp.join(ROOT, 'configs/pretrain/noisemim_vit-tiny_demo.py')
ITERS = 6


def _tool(name: str, path: str):
    spec = importlib.util.spec_from_file_location(name, osp.join(ROOT, path))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def train_demo(work_dir, *flags: str, options: tuple = ()) -> None:
    """tools/train.py's ``main()``, here, on the demo config for 6 iterations
    of batch 4, logging every iteration; ``options`` go to --cfg-options."""
    argv = [
        'train.py', DEMO, '--work-dir',
        str(work_dir), *flags, '--cfg-options', f'train_cfg.max_iters={ITERS}',
        'train_dataloader.batch_size=4', 'default_hooks.logger.interval=1',
        'default_hooks.checkpoint.interval=1000', *options,
        # A Runner's MessageHub and Visualizer are found by experiment name.
        f'experiment_name=curves{time.time_ns()}'
    ]
    old, sys.argv = sys.argv, argv
    try:
        _tool('noisemim_train_tool', 'tools/train.py').main()
    finally:
        sys.argv = old


@pytest.fixture(scope='module')
def demo_runs(tmp_path_factory):
    """Two real demo runs: the config's lr, and a 10x lower one."""
    base = tmp_path_factory.mktemp('curves')
    train_demo(base / 'demo')
    train_demo(
        base / 'demo_low_lr', options=('optim_wrapper.optimizer.lr=1.5e-4', ))
    return str(base / 'demo'), str(base / 'demo_low_lr')


def test_curves_are_the_logged_scalars(demo_runs):
    work_dir = demo_runs[0]
    logs = find_scalar_logs(work_dir)
    assert len(logs) == 1 and logs[0].endswith('vis_data/scalars.json')
    records = [r for r in read_scalars(logs[0]) if 'loss' in r]
    assert [r['step'] for r in records] == list(range(1, ITERS + 1))
    curves = training_curves(logs)
    for key in ('loss', 'loss_mim', 'loss_denoise', 'loss_disruption', 'lr'):
        steps, values = curves[key]
        assert steps.tolist() == list(range(1, ITERS + 1)), key
        assert values.tolist() == [r[key] for r in records], key
    # The demo warms the lr up linearly over its first 20 iterations.
    assert (curves['lr'][1][1:] > curves['lr'][1][:-1]).all()
    # The total is the sum of the three terms, as logged.
    total = curves['loss_mim'][1] + curves['loss_denoise'][1] + curves[
        'loss_disruption'][1]
    assert abs(total - curves['loss'][1]).max() < 1e-3
    # The same from a timestamp folder and from the file itself.
    assert training_curves(find_scalar_logs(osp.dirname(osp.dirname(
        logs[0]))))['loss'][1].tolist() == curves['loss'][1].tolist()


def test_cli_overlays_runs_one_subplot_per_key(demo_runs, tmp_path, capsys):
    out = tmp_path / 'figs' / 'curves.png'
    _tool('noisemim_plot_curves', 'tools/analysis/plot_curves.py').main(
        [*demo_runs, '--names', 'lr 1.5e-3', 'lr 1.5e-4', '--out', str(out)])
    printed = capsys.readouterr().out
    assert 'loss, loss_denoise, loss_disruption, loss_mim, lr' in printed
    assert f'up to iteration {ITERS}' in printed
    image = imread(str(out))
    # 5 keys in 3 columns: 2 rows of 4.2 x 3.0 inches at 100 dpi.
    assert image.shape[:2] == (600, 1260)
    # Two runs differ from one: the second run's lines are drawn.
    one = tmp_path / 'one.png'
    plot_curves(load_runs(demo_runs[:1]), str(one))
    assert imread(str(one)).shape == image.shape
    assert (imread(str(one)) != image).any()


def test_runs_differ_and_are_named_by_folder(demo_runs):
    runs = load_runs(demo_runs)
    assert [r.name for r in runs] == ['demo', 'demo_low_lr']
    assert default_keys(runs) == [
        'loss', 'loss_denoise', 'loss_disruption', 'loss_mim', 'lr'
    ]
    lr_a, lr_b = (r.curves['lr'][1] for r in runs)
    assert abs(lr_a / lr_b - 10).max() < 1e-6


def test_a_resumed_launch_replaces_the_iterations_it_logs_again(tmp_path):
    # Two launches of one work dir: the second resumed from iteration 2.
    for stamp, steps, loss in (('20260101_000000', [1, 2, 3], 1.0),
                               ('20260101_010000', [3, 4], 2.0)):
        path = tmp_path / stamp / 'vis_data'
        path.mkdir(parents=True)
        with open(path / 'scalars.json', 'w') as f:
            for s in steps:
                f.write(json.dumps(dict(lr=0.1, loss=loss + s, step=s)) + '\n')
            f.write(json.dumps({'accuracy/top1': 50.0, 'step': 1}) + '\n')
    curves = training_curves(find_scalar_logs(str(tmp_path)))
    assert curves['loss'][0].tolist() == [1, 2, 3, 4]
    assert curves['loss'][1].tolist() == [2.0, 3.0, 5.0, 6.0]
    assert 'accuracy/top1' not in curves  # validation records are left out


def test_bad_inputs_are_named(tmp_path, demo_runs):
    with pytest.raises(FileNotFoundError, match='No logged scalars under'):
        find_scalar_logs(str(tmp_path))
    bad = tmp_path / 'scalars.json'
    bad.write_text('{"loss": 1.0, "step": 1}\nnot json\n')
    with pytest.raises(ValueError, match=r'scalars.json, line 2: not JSON'):
        read_scalars(str(bad))
    with pytest.raises(ValueError, match=r"No run logged \['loss_typo'\]"):
        plot_curves(load_runs(demo_runs), str(tmp_path / 'x.png'),
                    keys=['loss_typo'])
    with pytest.raises(ValueError, match='1 names for 2 runs'):
        load_runs(demo_runs, names=['one'])


def test_tensorboard_flag(tmp_path):
    """With the package, the run writes TensorBoard events; without it,
    the run stops before training and says how to install it."""
    if tb.tensorboard_available():
        train_demo(tmp_path, '--tensorboard')
        assert glob.glob(str(tmp_path / '*' / 'vis_data' / 'events.out.*'))
    else:
        with pytest.raises(ImportError, match='pip install tensorboard'):
            train_demo(tmp_path, '--tensorboard')
        assert not glob.glob(str(tmp_path / '*' / 'vis_data'))


def test_tensorboard_backend_is_added_once(monkeypatch):
    monkeypatch.setattr(tb, 'tensorboard_available', lambda: True)
    cfg = Config.fromfile(DEMO)
    tb.add_tensorboard_backend(cfg)
    tb.add_tensorboard_backend(cfg)
    types = [b['type'] for b in cfg.visualizer.vis_backends]
    assert types == ['LocalVisBackend', 'TensorboardVisBackend']
    bare = Config(dict(model=dict()))
    tb.add_tensorboard_backend(bare)
    assert [b['type'] for b in bare.visualizer.vis_backends
            ] == ['LocalVisBackend', 'TensorboardVisBackend']
