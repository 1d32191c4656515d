"""Pre-flight checks of a model config, before anything is built or written.

* Every key of the algorithm and of its typed parts (backbone, neck, heads,
  ...) must be an argument of the class it configures: a typo such as
  ``model.backbone.mask_ration=0.5`` fails with "did you mean 'mask_ratio'",
  naming the class. The arguments are read from the class's ``__init__``
  signature (found in the registry of the config's scope), following
  ``**kwargs`` up the MRO to the parents they are passed to.
* Every ``init_cfg`` must be None, a dict with a ``type``, or a list of those.
"""
import difflib
import inspect
from typing import Iterator, List, Optional, Set, Tuple

import torch

#: Keys every registry config may carry besides the class's arguments.
BUILD_KEYS = {'type', '_scope_'}


def accepted_keys(obj) -> Optional[Set[str]]:
    """The keyword arguments a class (or builder function) accepts.

    A class whose ``__init__`` takes ``**kwargs`` also accepts its parents'
    arguments (the MRO is walked until an ``__init__`` without ``**kwargs``;
    ``nn.Module`` and ``object`` take none).

    Args:
        obj (type | Callable): What a config's ``type`` names.

    Returns:
        Set[str] | None: The argument names; None when anything is accepted
        (a function with ``**kwargs``) or the signature cannot be read.
    """
    if not inspect.isclass(obj):
        names, var_kw = _params(obj)
        return names if var_kw is False else None
    keys: Set[str] = set()
    for klass in obj.__mro__:
        if klass in (object, torch.nn.Module):
            return keys
        init = klass.__dict__.get('__init__')
        if init is None:
            continue
        names, var_kw = _params(init)
        if names is None:
            return None
        keys |= names
        if not var_kw:
            return keys
    return keys


def _params(func) -> Tuple[Optional[Set[str]], Optional[bool]]:
    """``(names, takes **kwargs)`` of a callable, ``(None, None)`` if
    unreadable."""
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):
        return None, None
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD,
             inspect.Parameter.KEYWORD_ONLY)
    names = {
        name
        for name, p in signature.parameters.items()
        if p.kind in kinds and name != 'self'
    }
    var_kw = any(p.kind == inspect.Parameter.VAR_KEYWORD
                 for p in signature.parameters.values())
    return names, var_kw


def _registry(scope: str):
    """The ``MODELS`` registry of mmpretrain, mmdet or mmseg."""
    if scope == 'mmdet':
        from mmdet.registry import MODELS
    elif scope == 'mmseg':
        from mmseg.registry import MODELS
    else:
        from mmpretrain.registry import MODELS
    return MODELS


def _typed_parts(model: dict,
                 prefix: str = 'model') -> Iterator[Tuple[str, dict]]:
    """The model config and its direct parts that name a ``type``."""
    yield prefix, model
    for key, value in model.items():
        if key != 'init_cfg' and isinstance(value, dict) and isinstance(
                value.get('type'), str):
            yield f'{prefix}.{key}', value


def check_model_keys(cfg, scope: Optional[str] = None) -> None:
    """Refuse keys that the configured classes do not take.

    Args:
        cfg (Config): The run's config (``cfg.model``).
        scope (str, optional): ``mmpretrain``, ``mmdet`` or ``mmseg``;
            defaults to the config's ``default_scope``.

    Raises:
        ValueError: Names the key, the class and the closest argument.
    """
    model = cfg.get('model')
    if not isinstance(model, dict) or not isinstance(model.get('type'), str):
        return
    registry = _registry(scope or cfg.get('default_scope', 'mmpretrain'))
    problems: List[str] = []
    for where, part in _typed_parts(model):
        try:
            obj = registry.get(part['type'])
        except Exception:  # e.g. a scope whose package is missing
            obj = None
        if obj is None:  # the build names an unknown type itself
            continue
        keys = accepted_keys(obj)
        if keys is None:
            continue
        name = getattr(obj, '__name__', str(obj))
        for key in sorted(set(part) - keys - BUILD_KEYS):
            close = difflib.get_close_matches(key, sorted(keys), n=1)
            hint = (f"did you mean {close[0]!r}?" if close else
                    f'it takes: {", ".join(sorted(keys))}.')
            problems.append(f'{where}.{key}: {name} ({obj.__module__}) has '
                            f'no argument {key!r}; {hint}')
    if problems:
        raise ValueError('Unknown model settings:\n  ' + '\n  '.join(problems))


def _init_cfgs(node, where: str) -> Iterator[Tuple[str, object]]:
    """Every ``init_cfg`` in a model config, with its dotted path."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == 'init_cfg':
                yield f'{where}.init_cfg', value
            else:
                yield from _init_cfgs(value, f'{where}.{key}')
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            yield from _init_cfgs(value, f'{where}.{i}')


def check_init_cfgs(cfg) -> None:
    """Refuse an ``init_cfg`` that mmengine cannot read.

    Args:
        cfg (Config): The run's config (``cfg.model``).

    Raises:
        ValueError: Names the path, the value and what is expected.
    """
    for where, value in _init_cfgs(cfg.get('model'), 'model'):
        items = value if isinstance(value, (list, tuple)) else [value]
        if value is None or all(
                isinstance(v, dict) and isinstance(v.get('type'), str)
                for v in items):
            continue
        raise ValueError(
            f"{where} = {value!r}: expected None, a dict with a 'type' (e.g. "
            "dict(type='Pretrained', checkpoint=CKPT, prefix='backbone.')) "
            "or a list of such dicts. A setting such as "
            f'{where}.checkpoint=CKPT needs the type too '
            f"({where}.type=Pretrained); to continue a pre-training run, "
            'use --resume; to start one from weights, load_from=CKPT.')


def check_option_paths(cfg, options: dict) -> None:
    """Refuse a ``--cfg-options`` key that goes into a list by name.

    mmengine fails on it with ``TypeError: list indices must be integers``;
    e.g. ``model.init_cfg.checkpoint=CKPT`` on a config whose ``init_cfg`` is
    a list of initialisers.

    Args:
        cfg (Config): The config before the options are merged.
        options (dict): ``--cfg-options``, dotted keys to values.

    Raises:
        ValueError: Names the key, the list and what is expected.
    """
    for key in options:
        node, parts = cfg, key.split('.')
        for i, part in enumerate(parts):
            if isinstance(node, (list, tuple)) and not part.isdigit():
                where = '.'.join(parts[:i])
                expected = ''
                if parts[i - 1] == 'init_cfg':
                    expected = (
                        "; an init_cfg is None, a dict with a 'type' (e.g. "
                        "dict(type='Pretrained', checkpoint=CKPT, "
                        "prefix='backbone.')) or a list of such dicts")
                raise ValueError(
                    f'--cfg-options {key}: {where} is a list, {node!r}, not '
                    f'a dict; set an item by its index ({where}.0.'
                    f'{".".join(parts[i:])}=...) or the whole value'
                    f'{expected}.')
            if i == len(parts) - 1:
                break
            if isinstance(node, (list, tuple)):
                node = node[int(part)] if int(part) < len(node) else None
            elif hasattr(node, 'get') and not isinstance(node, str):
                node = node.get(part)  # a Config or a dict
            else:
                break
            if node is None:
                break
