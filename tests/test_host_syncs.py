"""No host-device synchronisation in a training iteration, except at the
iterations whose logged values are read (the logger's, a checkpoint's).

On a GPU these block the host until the device has caught up, leaving it
idle between iterations: reading a device tensor's value on the host
(``.item()``, ``float()``, ``bool()``, ``.tolist()``, ``.cpu()``,
``.numpy()``, printing) and the operators whose output size depends on the
data (``nonzero``, ``masked_select``, ``unique``, boolean indexing, ...).
On CPU nothing blocks, so the test counts those calls, with a torch function
mode (the Python-level reads) and a dispatch mode (the operators), during the
iterations of a real Runner on the tiny demo config through tools/train.py.

Not counted: AdamW's step counters, which stay on the host on a GPU too
(``capturable=False``, the default), and the loader's tensors (sampler
indices, collated batches), made on the host before the data preprocessor
moves the images: reading them is no sync.
"""
import collections
import importlib.util
import os.path as osp
import sys
import time
import traceback

import torch
from mmengine.logging import MessageHub
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

import noisemim  # noqa: F401

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEMO = osp.join(ROOT, 'configs/pretrain/noisemim_vit-tiny_demo.py')

#: Where the loader runs (in the main process with num_workers=0): what it
#: reads are host tensors on a GPU machine too.
LOADER = osp.join('torch', 'utils', 'data', '')
#: Tensor methods that copy a value to the host.
READS = {'item', 'tolist', 'cpu', 'numpy', '__bool__', '__float__',
         '__int__', '__index__', '__repr__', '__format__'}
#: Operators that read a value, or whose output size depends on the data.
SYNC_OPS = {'_local_scalar_dense', 'nonzero', 'nonzero_static',
            'masked_select', '_unique2', 'unique_dim', 'unique_consecutive',
            'equal', 'is_nonzero'}


class SyncLog:
    """Counts the synchronising calls per training iteration (0-based, as
    ``runner.iter``), with where each came from."""

    def __init__(self, optimizer_of) -> None:
        self.calls = collections.defaultdict(list)
        self.optimizer_of = optimizer_of
        log = self

        class Functions(TorchFunctionMode):
            def __torch_function__(self, func, types, args=(), kwargs=None):
                name = getattr(func, '__name__', '')
                if name in READS and args and isinstance(
                        args[0], torch.Tensor):
                    log.record(f'Tensor.{name}', args[0])
                return func(*args, **(kwargs or {}))

        class Operators(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                name = func._schema.name.split('::')[-1]
                if name in SYNC_OPS or (name in ('index', 'index_put_') and any(
                        isinstance(i, torch.Tensor) and i.dtype == torch.bool
                        for i in (args[1] or ()))):
                    log.record(f'aten.{name}', args[0])
                return func(*args, **(kwargs or {}))

        self.modes = [Functions(), Operators()]

    def record(self, what: str, tensor: torch.Tensor) -> None:
        hub = MessageHub.get_current_instance()
        if hub.get_info('loop_stage') != 'train':
            return
        optimizer = self.optimizer_of()
        if optimizer is not None and isinstance(tensor, torch.Tensor):
            steps = {s['step'].data_ptr() for s in optimizer.state.values()
                     if isinstance(s.get('step'), torch.Tensor)}
            if tensor.data_ptr() in steps:
                return
        stack = traceback.extract_stack()
        if any(LOADER in f.filename for f in stack):
            return  # the loader's own (host) tensors: sampler, collate
        where = ' <- '.join(f'{osp.basename(f.filename)}:{f.lineno}'
                            for f in stack[-3:-6:-1])  # the callers
        self.calls[hub.get_info('iter')].append(f'{what} at {where}')

    def __enter__(self):
        for mode in self.modes:
            mode.__enter__()
        return self

    def __exit__(self, *exc):
        for mode in reversed(self.modes):
            mode.__exit__(*exc)


def train_demo(work_dir: str, *options: str):
    """tools/train.py's config and Runner on the demo (6 iterations, batch
    2), trained under :class:`SyncLog`; returns the log and the run's last
    checkpoint."""
    from mmengine.runner import Runner
    spec = importlib.util.spec_from_file_location(
        'noisemim_train_tool', osp.join(ROOT, 'tools/train.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    old, sys.argv = sys.argv, [
        'train.py', DEMO, '--work-dir', str(work_dir), '--cfg-options',
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
    with SyncLog(lambda: getattr(runner.optim_wrapper, 'optimizer',
                                 None)) as log:
        runner.train()
    return log, torch.load(osp.join(work_dir, 'iter_6.pth'))


def test_no_host_sync_outside_the_logging_iterations(tmp_path):
    log, checkpoint = train_demo(tmp_path / 'every3',
                                 'default_hooks.logger.interval=3')
    reading = {2, 5}  # iterations 3 and 6: the logger's; 6: the checkpoint
    for i in range(6):
        if i not in reading:
            assert log.calls[i] == [], (i, log.calls[i])
    # the counter sees the reads that are there: the logged values, once
    for i in reading:
        assert any(c.startswith('Tensor.cpu') for c in log.calls[i]), \
            log.calls[i]

    # What is logged is what a read in every iteration logs: the message
    # hub (the logger's windows, the checkpoint) holds every iteration's
    # values, the same ones.
    _, every = train_demo(tmp_path / 'every1',
                          'default_hooks.logger.interval=1')
    deferred = checkpoint['message_hub']['log_scalars']
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
