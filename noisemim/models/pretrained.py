"""Load pre-trained backbone weights strictly: a missing key is an error.

mmengine's ``Pretrained`` initializer loads with ``strict=False`` and only logs
what did not match, so a wrong prefix or a renamed parameter silently leaves a
backbone at its random initialisation. :class:`StrictPretrainedInit`
(config name ``'StrictPretrained'``) is the drop-in replacement used by every
transfer config of this project::

    backbone=dict(
        type='VisionTransformer', ...,  # mmpretrain's, or NoiseMIMViT(Det)
        init_cfg=dict(type='StrictPretrained', checkpoint=PATH,
                      prefix='backbone.'))

It accepts a NoiseMIM pre-training checkpoint (keys ``backbone.*``,
``mim_head.*``, ...) as well as a published backbone-only file, with or
without the ``backbone.`` prefix
(``tools/model_converters/publish_checkpoint.py``).
It is registered in mmengine's root ``WEIGHT_INITIALIZERS``, so mmpretrain,
mmdet and mmseg configs all find it.
"""
import fnmatch
import os.path as osp
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

from mmengine.logging import print_log
from mmengine.model import BaseModule
from mmengine.model.weight_init import update_init_info
from mmengine.registry import WEIGHT_INITIALIZERS
from mmengine.runner.checkpoint import CheckpointLoader
from torch import Tensor, nn

# Parameters that only pre-training has (NoiseMIMViT's mask token and the
# optional embedding of the noise level): dropped on transfer, listed at INFO.
PRETRAIN_ONLY_KEYS = ('mask_token', 'time_embed.*')


class LoadReport(NamedTuple):
    """What :class:`StrictPretrainedInit` did with a checkpoint.

    Attributes:
        loaded (List[str]): Module keys set from the checkpoint.
        new (List[str]): Module keys declared downstream-only (``new_keys``)
            or pre-training-only (a published file has no ``mask_token``)
            that keep their initialisation.
        pretrain_only (List[str]): Checkpoint keys of pre-training-only
            parameters (``mask_token``, ``time_embed.*``), dropped.
        unused (List[str]): Other checkpoint keys the module has no place
            for, dropped (``unused_keys`` declares the expected ones).
        outside_prefix (List[str]): Checkpoint keys outside ``prefix`` (the
            pre-training heads), dropped.
    """
    loaded: List[str]
    new: List[str]
    pretrain_only: List[str]
    unused: List[str]
    outside_prefix: List[str]


def matches_any(key: str, patterns: Sequence[str]) -> bool:
    """Whether ``key`` matches one of the glob ``patterns``."""
    return any(fnmatch.fnmatchcase(key, p) for p in patterns)


def weights_of(checkpoint: object, source: str) -> Dict[str, Tensor]:
    """The weights in a loaded checkpoint file (a Runner checkpoint's
    ``state_dict``, a ``model`` entry, or a bare state dict)."""
    if not isinstance(checkpoint, dict):
        raise TypeError(f'{source} is not a checkpoint: expected a dict, got '
                        f'{type(checkpoint).__name__}')
    for key in ('state_dict', 'model'):
        if key in checkpoint and isinstance(checkpoint[key], dict):
            return dict(checkpoint[key])
    if not checkpoint or not all(
            isinstance(v, Tensor) for v in checkpoint.values()):
        raise KeyError(f'{source} has no weights: expected a "state_dict" or '
                       f'"model" entry or a dict of tensors, found the keys '
                       f'{sorted(checkpoint)[:10]}')
    return dict(checkpoint)


def select_prefix(state_dict: Dict[str, Tensor], prefix: Optional[str]
                  ) -> Tuple[Dict[str, Tensor], List[str]]:
    """Take the sub-module ``prefix`` of a checkpoint's weights.

    Args:
        state_dict (dict): All weights of the checkpoint.
        prefix (str, optional): E.g. ``'backbone.'``. When no key starts with
            it (a published backbone file saved stripped), all keys are used.

    Returns:
        Tuple[dict, List[str]]: The weights with ``prefix`` removed, and the
        keys outside ``prefix`` that were left out.
    """
    if not prefix or not any(k.startswith(prefix) for k in state_dict):
        return state_dict, []
    inside = {
        k[len(prefix):]: v
        for k, v in state_dict.items() if k.startswith(prefix)
    }
    return inside, sorted(k for k in state_dict if not k.startswith(prefix))


def load_backbone_weights(checkpoint: str,
                          prefix: Optional[str] = 'backbone.',
                          map_location: str = 'cpu'
                          ) -> Tuple[Dict[str, Tensor], List[str]]:
    """Read a checkpoint file with mmengine's ``CheckpointLoader`` and take
    the sub-module ``prefix``.

    Args:
        checkpoint (str): Local path or URL of the checkpoint.
        prefix (str, optional): See :func:`select_prefix`.
        map_location (str): Passed to the loader. Defaults to ``'cpu'``.

    Returns:
        Tuple[dict, List[str]]: See :func:`select_prefix`.

    Raises:
        FileNotFoundError: A local ``checkpoint`` does not exist.
    """
    if '://' not in checkpoint and not osp.isfile(checkpoint):
        raise FileNotFoundError(
            f'the checkpoint {checkpoint!r} does not exist; expected a '
            'NoiseMIM pre-training checkpoint or a published backbone file '
            '(for an init_cfg: --cfg-options '
            'model.backbone.init_cfg.checkpoint=/path/to/ckpt.pth).')
    loaded = CheckpointLoader.load_checkpoint(
        checkpoint, map_location=map_location)
    return select_prefix(weights_of(loaded, repr(checkpoint)), prefix)


def _short(keys: Sequence[str], limit: int = 20) -> str:
    keys = list(keys)
    more = f' ... (+{len(keys) - limit} more)' if len(keys) > limit else ''
    return ', '.join(keys[:limit]) + more


@WEIGHT_INITIALIZERS.register_module(name='StrictPretrained')
class StrictPretrainedInit:
    """Initialise a module from a checkpoint; every module key must be there.

    Args:
        checkpoint (str): Path (or any URL that mmengine's
            ``CheckpointLoader`` reads) of a NoiseMIM pre-training checkpoint
            or a published backbone file.
        prefix (str, optional): The sub-module to take, e.g. ``'backbone.'``.
            A checkpoint without any key of this prefix is used whole.
            Defaults to ``'backbone.'``.
        new_keys (Sequence[str]): Glob patterns of module keys that the
            downstream model adds (e.g. ``'ln2.*'``, the norm after average
            pooling); they keep their initialisation, as do the
            pre-training-only :data:`PRETRAIN_ONLY_KEYS`. Defaults to ().
        unused_keys (Sequence[str]): Glob patterns of checkpoint keys that
            the downstream model is expected not to use (e.g. ``'ln1.*'``
            when ``final_norm=False``); listed at INFO rather than WARNING.
            Defaults to ().
        map_location (str): Passed to the checkpoint loader.
            Defaults to ``'cpu'``.

    Loading happens in :meth:`load_into`: called by :meth:`__call__` (the
    init_cfg of any ``BaseModule``, e.g. mmpretrain's ``VisionTransformer``)
    or by :func:`init_weights_then_load` after the module's own
    initialisation (``NoiseMIMViT``).
    """

    def __init__(self,
                 checkpoint: str,
                 prefix: Optional[str] = 'backbone.',
                 new_keys: Sequence[str] = (),
                 unused_keys: Sequence[str] = (),
                 map_location: str = 'cpu') -> None:
        if not isinstance(checkpoint, str) or not checkpoint:
            raise ValueError('StrictPretrained needs checkpoint=<path of a '
                             'NoiseMIM pre-training or published backbone '
                             f'checkpoint>, got {checkpoint!r}')
        self.checkpoint = checkpoint
        self.prefix = prefix
        self.new_keys = tuple(new_keys)
        self.unused_keys = tuple(unused_keys)
        self.map_location = map_location
        self.report: Optional[LoadReport] = None

    def __call__(self, module: nn.Module) -> None:
        """mmengine's entry point, for a module that does not defer loading
        (mmpretrain's stock ``VisionTransformer``, any ``BaseModule``).

        mmengine applies an init_cfg *before* the sub-modules' own
        ``init_weights``, which would overwrite the loaded weights; so this
        initialises the sub-modules first (mmengine then skips them), loads,
        and records the load as the module's ``init_cfg``
        (``dict(type='Pretrained', checkpoint=..., prefix=...)``): mmpretrain's
        backbones re-draw their position embedding at the end of
        ``init_weights`` unless their ``init_cfg`` is such a dict. The
        :class:`LoadReport` is kept as ``module.pretrained_report``.

        Args:
            module (nn.Module): The module whose ``init_cfg`` this is.

        Raises:
            ValueError: This is not the last entry of the module's
                ``init_cfg`` (a later one would overwrite the weights).
        """
        init_cfg = getattr(module, 'init_cfg', None)
        if isinstance(init_cfg, list) and not is_strict_pretrained(
                init_cfg[-1]):
            raise ValueError(
                f'StrictPretrained must be the last init_cfg entry of '
                f'{type(module).__name__} (a later entry would overwrite the '
                f'loaded weights), got {init_cfg!r}')
        init_children(module)
        module.pretrained_report = self.load_into(module)
        module.init_cfg = dict(
            type='Pretrained', checkpoint=self.checkpoint, prefix=self.prefix)

    def load_into(self, module: nn.Module) -> LoadReport:
        """Load the weights into ``module`` through its ``load_state_dict``
        (so pre-hooks run, e.g. ViT's resize of the position embedding).

        Args:
            module (nn.Module): The module to initialise (the backbone).

        Returns:
            LoadReport: What was loaded and what was dropped (also logged and
            kept as ``self.report``).

        Raises:
            RuntimeError: A module key (other than ``new_keys`` and
                :data:`PRETRAIN_ONLY_KEYS`) is not in the checkpoint; the
                message lists the missing and the unexpected keys.
        """
        state_dict, outside_prefix = load_backbone_weights(
            self.checkpoint, self.prefix, self.map_location)
        expected = list(module.state_dict().keys())
        missing = [
            k for k in expected
            if k not in state_dict
            and not matches_any(k, self.new_keys + PRETRAIN_ONLY_KEYS)
        ]
        unexpected = sorted(set(state_dict) - set(expected))
        if missing:
            hint = ''
            if self.prefix and not outside_prefix and not any(
                    k.startswith(self.prefix) for k in state_dict):
                hint = (f' No key of the checkpoint starts with '
                        f'{self.prefix!r}, so it was used whole.')
            raise RuntimeError(
                f'StrictPretrained: {len(missing)} key(s) of '
                f'{type(module).__name__} are not in {self.checkpoint!r} '
                f'(prefix {self.prefix!r}); refusing to leave them at their '
                f'random initialisation.\n  missing: {_short(missing)}\n  '
                f'unexpected in the checkpoint: {_short(unexpected)}\n'
                f'Check the checkpoint, the prefix and the architecture;'
                f'{hint} Declare parameters that only the downstream model '
                f'has with new_keys=(...).')
        module.load_state_dict(
            {k: v for k, v in state_dict.items() if k not in unexpected},
            strict=False)
        report = LoadReport(
            loaded=[k for k in expected if k in state_dict],
            new=[k for k in expected if k not in state_dict],
            pretrain_only=[
                k for k in unexpected if matches_any(k, PRETRAIN_ONLY_KEYS)
            ],
            unused=[
                k for k in unexpected if not matches_any(k, PRETRAIN_ONLY_KEYS)
            ],
            outside_prefix=outside_prefix)
        self._log(module, report)
        self.report = report
        if hasattr(module, '_params_init_info'):
            update_init_info(module, init_info=self._get_init_info())
        return report

    def _log(self, module: nn.Module, report: LoadReport) -> None:
        name = type(module).__name__
        print_log(
            f'StrictPretrained: loaded {len(report.loaded)} keys of {name} '
            f'from {self.checkpoint} (prefix {self.prefix!r}); 0 missing.',
            logger='current')
        absent = [k for k in report.new if matches_any(k, PRETRAIN_ONLY_KEYS)]
        groups = (
            ('kept the initialisation of downstream-only keys',
             [k for k in report.new if k not in absent]),
            ('pre-training-only keys not in the checkpoint, left as '
             'initialised', absent),
            ('dropped pre-training-only keys', report.pretrain_only),
            ('dropped keys outside the prefix', report.outside_prefix))
        for what, keys in groups:
            if keys:
                print_log(f'StrictPretrained: {what}: {_short(keys)}',
                          logger='current')
        unused = [k for k in report.unused if matches_any(k, self.unused_keys)]
        surprising = [k for k in report.unused if k not in unused]
        if unused:
            print_log(f'StrictPretrained: dropped unused keys: '
                      f'{_short(unused)}', logger='current')
        if surprising:
            print_log(
                f'StrictPretrained: {name} has no place for these checkpoint '
                f'keys, dropped: {_short(surprising)}',
                logger='current',
                level=30)  # logging.WARNING

    def _get_init_info(self) -> str:
        return f'{type(self).__name__}: load from {self.checkpoint}'


def init_children(module: nn.Module) -> None:
    """Run the ``init_weights`` of the sub-modules not yet initialised, as
    mmengine's ``BaseModule.init_weights`` does after the module's own
    init_cfg (it then skips them: they are marked initialised).

    Args:
        module (nn.Module): The parent module.
    """
    for child in module.children():
        if hasattr(child, 'init_weights') and not getattr(
                child, 'is_init', False):
            child.init_weights()
            if hasattr(child, '_params_init_info'):
                update_init_info(
                    child,
                    init_info=f'Initialized by user-defined `init_weights` '
                    f'in {type(child).__name__} ')


def is_strict_pretrained(init_cfg: object) -> bool:
    """Whether an ``init_cfg`` entry is a :class:`StrictPretrainedInit`."""
    return isinstance(init_cfg, dict) and init_cfg.get('type') in (
        'StrictPretrained', StrictPretrainedInit)


def init_weights_then_load(module: BaseModule,
                           init_weights: Callable[[], None]) -> None:
    """Run a module's own initialisation, then its ``StrictPretrained`` loads.

    The :class:`LoadReport` of the last load is kept as
    ``module.pretrained_report``.

    mmengine applies an init_cfg *before* the sub-modules' ``init_weights``
    (which would overwrite the loaded weights) except for its own
    ``Pretrained`` type. A backbone whose ``init_weights`` calls this gets the
    same order for ``StrictPretrained``: random init first, loading last.

    Args:
        module (BaseModule): The module (its ``init_cfg`` is a dict or list).
        init_weights (Callable): Its initialisation without the loads (e.g.
            a bound ``super().init_weights``).
    """
    init_cfg = module.init_cfg
    entries = init_cfg if isinstance(init_cfg, list) else [init_cfg]
    loads = [c for c in entries if is_strict_pretrained(c)]
    if not loads or module.is_init:
        init_weights()
        return
    rest = [c for c in entries if not is_strict_pretrained(c)]
    module.init_cfg = rest or None
    try:
        init_weights()
    finally:
        module.init_cfg = init_cfg
    for cfg in loads:
        cfg = dict(cfg)
        cfg.pop('type')
        module.pretrained_report = StrictPretrainedInit(**cfg).load_into(
            module)
