"""Compile the encoder blocks and heads of a pre-training model (not the step).

mmengine's own ``compile=True`` compiles the whole ``train_step``, and dynamo
fails on the optimizer step with torch 2.13. This compiles only what is worth
compiling, each module's code once (one graph shared by every block of the
same kind):

* the encoder blocks of a :class:`~noisemim.models.NoiseMIMViT` (its
  ``block_functions``: the plain block, the block that also returns the
  cross-corruption mass, the block that returns its queries and keys);
  the blocks of any other ``layers`` backbone in place (``Module.compile``);
* the heads' ``loss`` (prediction and loss).

The corruption is drawn outside the compiled regions (``sample_corruption``
and the noise injection stay eager), and the drop-path rates, which
mmpretrain stores as numpy floats (a graph break per block), become Python
floats. The optimizer step stays eager.

Switch it on with a config key, ``compile_blocks = True`` (or a dict of
``torch.compile`` options, e.g. ``dict(backend='inductor', mode=None)``), or
``tools/train.py --compile``; both add :class:`CompileBlocksHook`.
"""
import numbers
from typing import Any, Dict, Optional, Union

import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS
from torch import nn

COMPILE_KEY = 'compile_blocks'
HEADS = ('mim_head', 'denoise_head', 'head')


def python_float_rates(model: nn.Module) -> int:
    """Turn numpy drop rates (``drop_prob``, ``attn_drop``) into Python floats.

    ``VisionTransformer`` takes its drop-path rates from ``np.linspace``;
    mmcv's ``DropPath`` compares that numpy float in every call, which dynamo
    cannot trace into a graph.

    Args:
        model (nn.Module): Changed in place.

    Returns:
        int: How many attributes were changed.
    """
    changed = 0
    for module in model.modules():
        for name in ('drop_prob', 'attn_drop'):
            value = getattr(module, name, None)
            # numpy.float64 is a subclass of float: test the exact type.
            if isinstance(value, numbers.Real) and type(value) is not float:
                setattr(module, name, float(value))
                changed += 1
    return changed


def compile_model(model: nn.Module, **options) -> nn.Module:
    """Compile the encoder blocks and heads of a model, in place.

    Args:
        model (nn.Module): A pre-training model (``NoiseMIM`` and its
            relatives, ``MAE``...), or a wrapper of one.
        **options: ``torch.compile`` options (``backend``, ``mode``,
            ``dynamic``...). ``dynamic`` defaults to False (every step has
            the same shapes; see ``drop_last`` in :func:`apply_compile_config`).

    Returns:
        nn.Module: ``model`` (its blocks and heads now compiled).
    """
    from noisemim.models.backbones.noisemim_vit import (BlockFunctions,
                                                        NoiseMIMViT)
    if is_model_wrapper(model):
        model = model.module
    options.setdefault('dynamic', False)
    python_float_rates(model)
    backbone = getattr(model, 'backbone', model)
    if isinstance(backbone, NoiseMIMViT):
        backbone.block_functions = BlockFunctions(*(
            torch.compile(fn, **options)
            for fn in backbone.block_functions))
    elif isinstance(getattr(backbone, 'layers', None), nn.ModuleList):
        for layer in backbone.layers:
            layer.compile(**options)
    else:
        raise TypeError(f'compile_blocks needs a backbone with a `layers` '
                        f'ModuleList of blocks, got '
                        f'{type(backbone).__name__}')
    for name in HEADS:
        head = getattr(model, name, None)
        if head is not None and hasattr(head, 'loss'):
            head.loss = torch.compile(head.loss, **options)
    return model


def compile_options(value: Union[bool, dict, None]) -> Optional[dict]:
    """The ``torch.compile`` options of a ``compile_blocks`` config value.

    Args:
        value (bool | dict | None): False/None (off), True (defaults) or a
            dict of ``torch.compile`` options.

    Returns:
        dict | None: The options, or None when off.
    """
    if value is None or value is False:
        return None
    if value is True:
        return {}
    if isinstance(value, dict):
        return dict(value)
    raise ValueError(f'{COMPILE_KEY} must be True, False or a dict of '
                     f'torch.compile options, got {value!r}')


def apply_compile_config(cfg: Config, switch: bool = False) -> bool:
    """Turn the config's ``compile_blocks`` (or ``--compile``) into the hook.

    Also sets ``drop_last=True`` on the train dataloader, so that no partial
    last batch changes the shapes (a recompilation).

    Args:
        cfg (Config): The run's config (changed in place).
        switch (bool): ``--compile`` was given.

    Returns:
        bool: Whether compilation is on.
    """
    if cfg.get('compile', False):
        raise ValueError(
            "mmengine's compile=True compiles the optimizer step, which "
            'dynamo cannot trace with torch 2.13; use compile_blocks=True '
            '(or tools/train.py --compile) instead')
    value = cfg.get(COMPILE_KEY, None)
    options = compile_options(True if switch and not value else value)
    if options is None:
        return False
    hooks = list(cfg.get('custom_hooks', None) or [])
    if not any(h.get('type') in ('CompileBlocksHook', CompileBlocksHook)
               for h in hooks):
        hooks.append(dict(type='CompileBlocksHook', options=options))
    cfg.custom_hooks = hooks
    if cfg.get('train_dataloader'):
        cfg.train_dataloader.drop_last = True
    return True


@HOOKS.register_module()
class CompileBlocksHook(Hook):
    """Compile the model's encoder blocks and heads before training.

    Args:
        options (dict, optional): ``torch.compile`` options.
    """

    priority = 'VERY_LOW'

    def __init__(self, options: Optional[Dict[str, Any]] = None) -> None:
        self.options = dict(options or {})

    def before_train(self, runner) -> None:
        """Compile ``runner.model`` (after any checkpoint is loaded)."""
        compile_model(runner.model, **self.options)
        runner.logger.info(f'compile_blocks: compiled the encoder blocks and '
                           f'heads with {self.options or "defaults"}')
