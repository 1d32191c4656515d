"""No host-device synchronisation in a training iteration, except at the
iterations whose logged values are read (the logger's, a checkpoint's).

On a GPU these block the host until the device has caught up, leaving it
idle between iterations: reading a device tensor's value on the host
(``.item()``, ``float()``, ``bool()``, ``.tolist()``, ``.cpu()``,
``.numpy()``, printing), the operators whose output size depends on the
data (``nonzero``, ``masked_select``, ``unique``, boolean indexing, ...),
and a host tensor copied into device work (a blocking host-to-device copy).
On CPU nothing blocks, so the test follows where each tensor would live and
counts those calls, during the iterations of a real Runner on the tiny demo
configs through tools/train.py.

Where a tensor lives, as on a GPU machine: a tensor made without naming a
device or naming ``'cpu'`` (``torch.zeros(3)``, ``torch.tensor(...)``, a
draw from a host generator) is on the host, and so is what is computed
from host tensors alone; a tensor moved with ``.to(device)``, made with
``device=``, or computed with a parameter or buffer is on the device. A
torch function mode follows this and sees the Python-level reads; a dispatch
mode sees the operators. Reading a host tensor is no sync (AdamW's step
counters, the sampler's indices, DTM's morphing draws); neither are
``F.one_hot``'s range checks, which read values on CPU only.
"""
import collections
import importlib.util
import os.path as osp
import sys
import time
import traceback

import pytest
import torch
import torch.nn.functional as F
from mmengine.logging import MessageHub
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

import noisemim  # noqa: F401

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEMO = osp.join(ROOT, 'configs/pretrain/noisemim_vit-tiny_demo.py')

#: Tensor methods that copy a value to the host.
READS = {'item', 'tolist', 'cpu', 'numpy', '__bool__', '__float__',
         '__int__', '__index__', '__repr__', '__format__'}
#: Operators that read a value, or whose output size depends on the data.
SYNC_OPS = {'_local_scalar_dense', 'nonzero', 'nonzero_static',
            'masked_select', '_unique2', 'unique_dim', 'unique_consecutive',
            'equal', 'is_nonzero'}
HOST = '_made_on_host'  # the attribute that marks a host tensor


def on_host(tensor) -> bool:
    return getattr(tensor, HOST, False)


def names_a_device(args, kwargs) -> bool:
    """Whether a call puts its result on the device: it names a device taken
    from a tensor or the model (``.to(x.device)``, ``device=x.device``), not
    the host by its name (``device='cpu'``)."""
    named = [kwargs.get('device')] + [
        a for a in args if isinstance(a, (torch.device, str))]
    return any(isinstance(d, torch.device) or d == 'cuda' for d in named)


class SyncLog:
    """Counts the synchronising calls per training iteration (0-based, as
    ``runner.iter``), with where each came from."""

    def __init__(self) -> None:
        self.calls = collections.defaultdict(list)
        self.paused = 0
        log = self

        class Functions(TorchFunctionMode):
            def __torch_function__(self, func, types, args=(), kwargs=None):
                kwargs = kwargs or {}
                name = getattr(func, '__name__', '')
                inputs = [t for t in tree_leaves((args, kwargs))
                          if isinstance(t, torch.Tensor)]
                if name in READS and inputs and not on_host(args[0]):
                    log.record(f'Tensor.{name}')
                device = names_a_device(args, kwargs)
                if name in ('to', 'cuda') and device and inputs and on_host(
                        args[0]) and args[0].dim() and not kwargs.get(
                            'non_blocking', False):
                    log.record(f'blocking host-to-device Tensor.{name}')
                if any(on_host(t) and t.dim() for t in inputs) and not all(
                        on_host(t) for t in inputs):
                    log.record(f'host tensor into device work: {name}')
                log.paused += func is F.one_hot  # CPU-only range checks
                try:
                    out = func(*args, **kwargs)
                finally:
                    log.paused -= func is F.one_hot
                if not device and all(on_host(t) for t in inputs):
                    for t in tree_leaves(out):
                        if isinstance(t, torch.Tensor):
                            setattr(t, HOST, True)
                return out

        class Operators(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                name = func._schema.name.split('::')[-1]
                bool_index = name in ('index', 'index_put_') and any(
                    isinstance(i, torch.Tensor) and i.dtype == torch.bool
                    for i in (args[1] or ()))
                if (name in SYNC_OPS or bool_index) and not on_host(args[0]):
                    log.record(f'aten.{name}')
                return func(*args, **(kwargs or {}))

        self.modes = [Functions(), Operators()]

    def record(self, what: str) -> None:
        hub = MessageHub.get_current_instance()
        if self.paused or hub.get_info('loop_stage') != 'train':
            return
        where = ' <- '.join(f'{osp.basename(f.filename)}:{f.lineno}'
                            for f in traceback.extract_stack()[-3:-6:-1])
        self.calls[hub.get_info('iter')].append(f'{what} at {where}')

    def __enter__(self):
        for mode in self.modes:
            mode.__enter__()
        return self

    def __exit__(self, *exc):
        for mode in reversed(self.modes):
            mode.__exit__(*exc)


def train_demo(work_dir: str, *options: str, config: str = DEMO):
    """tools/train.py's config and Runner on a demo config (6 iterations,
    batch 2), trained under :class:`SyncLog`; returns the log and the run's
    last checkpoint."""
    from mmengine.runner import Runner
    spec = importlib.util.spec_from_file_location(
        'noisemim_train_tool', osp.join(ROOT, 'tools/train.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    old, sys.argv = sys.argv, [
        'train.py', config, '--work-dir', str(work_dir), '--cfg-options',
        'train_cfg.max_iters=6', 'train_dataloader.batch_size=2',
        'default_hooks.checkpoint.interval=6', *options,
        f'experiment_name=t{time.time_ns()}'
    ]
    try:
        cfg = tool.build_config(tool.parse_args())
    finally:
        sys.argv = old
    if isinstance(cfg, tuple):  # (config, log notes)
        cfg = cfg[0]
    runner = Runner.from_cfg(cfg)
    with SyncLog() as log:
        runner.train()
    return log, torch.load(osp.join(work_dir, 'iter_6.pth'))


@pytest.mark.parametrize('config', ['noisemim_vit-tiny_demo.py',
                                    'noisemim-dtm_vit-tiny_demo.py'])
def test_no_host_sync_outside_the_logging_iterations(tmp_path, config):
    options = ['default_hooks.logger.interval=3']
    if 'dtm' in config:  # a random teacher of the demo's size
        from mmengine.config import Config

        from noisemim.models.teachers import save_random_teacher
        cfg = Config.fromfile(osp.join(ROOT, 'configs/pretrain', config))
        teacher = save_random_teacher(cfg.model.teacher.to_dict(),
                                      str(tmp_path / 'teacher.pth'))
        options.append(f'model.teacher.checkpoint={teacher}')
    log, _ = train_demo(tmp_path / 'run', *options,
                        config=osp.join(ROOT, 'configs/pretrain', config))
    reading = {2, 5}  # iterations 3 and 6: the logger's; 6: the checkpoint
    for i in range(6):
        if i not in reading:
            assert log.calls[i] == [], (i, log.calls[i])
    # the counter sees the reads that are there: the logged values, once
    for i in reading:
        assert any(c.startswith('Tensor.cpu') for c in log.calls[i]), \
            log.calls[i]


def test_logged_values_are_those_of_a_read_in_every_iteration(tmp_path):
    """The message hub (the logger's windows, the checkpoint) holds every
    iteration's values, the same ones as when each iteration is read."""
    _, deferred = train_demo(tmp_path / 'every3',
                             'default_hooks.logger.interval=3')
    _, every = train_demo(tmp_path / 'every1',
                          'default_hooks.logger.interval=1')
    deferred = deferred['message_hub']['log_scalars']
    eager = every['message_hub']['log_scalars']
    for key in ('train/loss', 'train/loss_mim', 'train/loss_denoise',
                'train/loss_disruption'):
        assert len(deferred[key].data[0]) == 6, key
        assert (deferred[key].data[0] == eager[key].data[0]).all(), key


def test_pretraining_preprocessor_moves_only_the_images():
    """The stock preprocessor moves every data sample to the device, one by
    one; pre-training reads none of them. The images come out the same."""
    from mmengine.config import Config
    from mmpretrain.registry import MODELS
    from mmpretrain.structures import DataSample
    settings = dict(mean=[1., 2., 3.], std=[2., 3., 4.], to_rgb=True)
    ours = MODELS.build(dict(type='NoiseMIMDataPreprocessor', **settings))
    stock = MODELS.build(dict(type='SelfSupDataPreprocessor', **settings))
    images = torch.randint(0, 256, (3, 3, 8, 8), dtype=torch.uint8)
    samples = [DataSample(metainfo=dict(img_path=f'{i}.jpg')) for i in range(3)]
    out = ours(dict(inputs=images, data_samples=samples), True)
    ref = stock(dict(inputs=images, data_samples=samples), True)
    assert torch.equal(out['inputs'], ref['inputs'])
    assert out['data_samples'] is samples  # untouched, not copied
    assert all(a is not b for a, b in zip(ref['data_samples'], samples))
    assert ours._non_blocking  # with the loader's pinned memory: async
    for config in ('noisemim_vit-tiny_demo.py',
                   'noisemim_vit-base-p16_8xb512-amp-coslr-400e_in1k.py',
                   'dtm_vit-base-p16_8xb256-amp-coslr-300e_in1k.py'):
        cfg = Config.fromfile(osp.join(ROOT, 'configs/pretrain', config))
        assert cfg.data_preprocessor.type == 'NoiseMIMDataPreprocessor'
