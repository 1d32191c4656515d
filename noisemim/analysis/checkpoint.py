"""Build a model from its config and load a checkpoint into it, strictly.

The config is the ``--config`` file when one is given, else the config text an
mmengine ``Runner`` stores in the checkpoint (``meta['cfg']``). The weights are
read with mmengine's ``CheckpointLoader`` (``torch.load`` with PyTorch's
``weights_only`` safety left on) and loaded with mmengine's strict
``load_state_dict``; a checkpoint that does not fit the model raises
:class:`CheckpointMismatchError` naming the missing and unexpected keys.
"""
import os.path as osp
import re
from collections import OrderedDict
from typing import Optional, Tuple, Union

import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.runner import CheckpointLoader, load_state_dict
from torch import nn


class CheckpointMismatchError(ValueError):
    """A checkpoint's weights do not fit the model built from the config."""


def load_checkpoint_file(checkpoint: str) -> dict:
    """Read a checkpoint file with mmengine's ``CheckpointLoader``.

    Args:
        checkpoint (str): Path (or any URI mmengine can load) of the file.

    Returns:
        dict: The checkpoint (with ``state_dict`` and ``meta`` for a Runner
        checkpoint, or a bare state dict).
    """
    if '://' not in checkpoint and not osp.isfile(checkpoint):
        raise FileNotFoundError(f'checkpoint {checkpoint!r} does not exist')
    return CheckpointLoader.load_checkpoint(
        checkpoint, map_location='cpu', logger='silent')


def checkpoint_config(checkpoint: dict, path: str) -> Config:
    """The config an mmengine Runner stored in ``meta['cfg']``.

    Args:
        checkpoint (dict): A loaded checkpoint.
        path (str): Its file, named in the error.

    Returns:
        Config: The config of the run that saved the checkpoint.
    """
    meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
    text = meta.get('cfg') if isinstance(meta, dict) else None
    if not text:
        raise ValueError(
            f'checkpoint {path!r} stores no config (no meta["cfg"]); pass the '
            'config file it was trained with (--config).')
    return Config.fromstring(text, file_format='.py')


def model_state_dict(checkpoint: dict) -> 'OrderedDict[str, torch.Tensor]':
    """The model weights of a checkpoint, without DataParallel's ``module.``.

    Args:
        checkpoint (dict): A loaded checkpoint.

    Returns:
        OrderedDict: Parameter and buffer names -> tensors.
    """
    state_dict = checkpoint.get('state_dict', checkpoint)
    return OrderedDict(
        (re.sub(r'^module\.', '', k), v) for k, v in state_dict.items())


def load_model(
        checkpoint: str,
        config: Optional[Union[str, Config]] = None,
        device: Union[str, torch.device] = 'cpu') -> Tuple[nn.Module, Config]:
    """Build the model of ``config`` and load ``checkpoint`` into it strictly.

    Args:
        checkpoint (str): The checkpoint file.
        config (str | Config, optional): The model's config; defaults to the
            one stored in the checkpoint's ``meta['cfg']``.
        device (str | torch.device): Where to put the model. Defaults to CPU.

    Returns:
        Tuple[nn.Module, Config]: The model, in eval mode, and its config.

    Raises:
        CheckpointMismatchError: If the weights do not fit the model; the
            message lists the missing and unexpected keys (and any shape
            mismatch).
    """
    from mmpretrain.registry import MODELS

    ckpt = load_checkpoint_file(checkpoint)
    if config is None:
        cfg = checkpoint_config(ckpt, checkpoint)
    elif isinstance(config, Config):
        cfg = config
    else:
        cfg = Config.fromfile(config)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    model_cfg = cfg.model.copy()
    if cfg.get('data_preprocessor') is not None:  # as mmengine's Runner does
        model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor)
    model = MODELS.build(model_cfg)
    try:
        load_state_dict(model, model_state_dict(ckpt), strict=True)
    except RuntimeError as err:
        source = getattr(cfg, 'filename', None) or "meta['cfg']"
        raise CheckpointMismatchError(
            f'checkpoint {checkpoint!r} does not fit the '
            f'{type(model).__name__} built from config {source}:\n{err}'
        ) from None
    return model.to(device).eval(), cfg
