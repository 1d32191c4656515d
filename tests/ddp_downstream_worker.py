"""Run by ``tests/test_ddp_downstream.py`` in each of 2 CPU processes
(``torch.distributed.run``): for each config file given, build the model,
optimizer and training data as mmengine's Runner does, wrap the model in
DDP and fit mixed precision to the machine as ``tools/train.py`` does
(``setup_distributed``: gloo; ``configure_mixed_precision``), take a few
training steps, and record which trainable parameters got no gradient in
each step.

Usage::

    python -m torch.distributed.run --nproc_per_node 2 \\
        tests/ddp_downstream_worker.py OUT_DIR STEPS CONFIG [CONFIG ...]

Each process writes ``OUT_DIR/rank<r>.json``: per config, the DDP wrapper's
``find_unused_parameters``, the trainable parameters, those that got no
gradient in each step, the losses, and the error if one was raised.
"""
import importlib
import json
import os.path as osp
import sys
import traceback
from typing import Dict, Iterator, List

import torch.distributed as dist
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import MODEL_WRAPPERS, DefaultScope
from mmengine.runner import Runner
from torch import nn

import noisemim  # noqa: F401  (registers the modules)
from noisemim.engine.optimizers import configure_mixed_precision
from noisemim.utils.launch import default_scope, setup_distributed


class GradientRecorder:
    """Record which trainable parameters of a model get a gradient.

    A hook on each parameter fires when backward accumulates its gradient
    (before DDP's all-reduce and before the optimizer zeroes it).

    Args:
        model (nn.Module): The unwrapped model.
    """

    def __init__(self, model: nn.Module) -> None:
        self.trainable = [
            n for n, p in model.named_parameters() if p.requires_grad
        ]
        self.seen: set = set()
        self.handles = [
            p.register_post_accumulate_grad_hook(self._hook(n))
            for n, p in model.named_parameters() if p.requires_grad
        ]

    def _hook(self, name: str):

        def hook(param):
            if param.grad is not None:
                self.seen.add(name)

        return hook

    def missing(self) -> List[str]:
        """The trainable parameters without a gradient since the last call."""
        missing = [n for n in self.trainable if n not in self.seen]
        self.seen = set()
        return missing

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def cycle(loader) -> Iterator:
    """The loader's batches, epoch after epoch (a tiny set may hold fewer
    batches per process than the steps)."""
    epoch = 0
    while True:
        if hasattr(loader.sampler, 'set_epoch'):
            loader.sampler.set_epoch(epoch)
        yield from loader
        epoch += 1


def train_steps(config: str, steps: int, result: Dict) -> None:
    """Take ``steps`` DDP training steps with a config.

    Args:
        config (str): The config file.
        steps (int): Training steps.
        result (dict): Filled as the steps go (kept if one raises):
            ``find_unused_parameters``, ``trainable``, ``missing`` (one list
            per step), ``losses``.
    """
    cfg = Config.fromfile(config)
    # a few images: skip mmengine's serialisation of the data list (a
    # gc.collect per dataset, the most time of a tiny config)
    cfg.train_dataloader.dataset.serialize_data = False
    scope = default_scope(cfg)
    setup_distributed(cfg, 'pytorch')  # as tools/train.py does
    configure_mixed_precision(cfg)  # (fp16 AMP becomes fp32 on a CPU)
    registry = importlib.import_module(f'{scope}.registry')
    with DefaultScope.overwrite_default_scope(scope):
        model_cfg = cfg.model
        if cfg.get('data_preprocessor') is not None:  # as the Runner does
            model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor)
        model = registry.MODELS.build(model_cfg)
        model.init_weights()
        ddp = MODEL_WRAPPERS.build(
            cfg.model_wrapper_cfg, default_args=dict(module=model))
        optim_wrapper = build_optim_wrapper(ddp, cfg.optim_wrapper)
        loader = Runner.build_dataloader(cfg.train_dataloader, seed=0)
        recorder = GradientRecorder(model)
        result.update(
            find_unused_parameters=ddp.find_unused_parameters,
            trainable=recorder.trainable,
            missing=[],
            losses=[])
        batches = cycle(loader)
        try:
            for _ in range(steps):
                log_vars = ddp.train_step(next(batches), optim_wrapper)
                result['missing'].append(recorder.missing())
                result['losses'].append(float(log_vars['loss'].detach()))
        finally:
            recorder.remove()


def main(out_dir: str, steps: str, *configs: str) -> None:
    results = {}
    for config in configs:
        result = results[osp.basename(config)] = {}
        try:
            train_steps(config, int(steps), result)
        except Exception:  # recorded; the test names it
            result['error'] = traceback.format_exc()[-3000:]
        dist.barrier()
    rank = dist.get_rank()
    with open(osp.join(out_dir, f'rank{rank}.json'), 'w') as f:
        json.dump(results, f, indent=1)
    dist.destroy_process_group()


if __name__ == '__main__':
    main(*sys.argv[1:])
