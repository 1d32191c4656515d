"""Config fields derived from others when the config was read, after
``--cfg-options`` changed what they derive from.

mmengine evaluates a config file once: ``ann_file=data_root + '...'`` or
``milestones=[round(max_iters * 8 / 9), ...]`` are plain values by the time
``--cfg-options`` applies, so overriding ``data_root`` or ``max_iters``
leaves them behind. Two rules, applied by ``tools/train.py`` and
``tools/test.py`` (:func:`noisemim.utils.launch.load_config`):

* **Paths follow the data root.** When ``--cfg-options`` moves a data root
  (the top-level ``data_root`` or a dataloader's ``dataset.data_root``),
  every path still under the old root that the user did not set moves with
  it: the dataloaders' ``data_root`` (for a top-level ``data_root``) and the
  evaluators' ``ann_file`` (COCO's, a full path). One log line per moved
  field. A path under the old root is certainly stale: it names the data set
  the user moved away from.
* **The schedule is not rewritten; its stale fields are named.** A shorter
  ``train_cfg.max_iters``/``max_epochs`` is also how the start of a real
  schedule is run (a speed check, a resume test), so scheduler boundaries,
  milestones and ``dynamic_intervals`` past the new end are listed in one
  warning rather than compressed. ``configs/smoke/`` sets them explicitly.
"""
import logging
import os.path as osp
from typing import Any, Dict, Iterator, List, Optional, Tuple

from mmengine.config import Config
from mmengine.logging import print_log

LOADER_EVALUATORS = (('val_dataloader', 'val_evaluator'),
                     ('test_dataloader', 'test_evaluator'))
LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


def _norm(path: Any) -> Optional[str]:
    return osp.normpath(path) if isinstance(path, str) and path else None


def _under(path: str, root: str) -> bool:
    path, root = _norm(path), _norm(root)
    return bool(path and root) and (path == root or path.startswith(
        root.rstrip(osp.sep) + osp.sep))


def _moved(path: str, old_root: str, new_root: str) -> str:
    rel = osp.relpath(_norm(path), _norm(old_root))
    return new_root if rel == '.' else osp.join(new_root, rel)


def iter_datasets(cfg: Any) -> Iterator[dict]:
    """A dataset config and the datasets it wraps (``dataset``/``datasets``)."""
    if not isinstance(cfg, dict):
        return
    yield cfg
    yield from iter_datasets(cfg.get('dataset'))
    for child in cfg.get('datasets', None) or []:
        yield from iter_datasets(child)


def _loader_root(cfg: Config, loader: str) -> Optional[str]:
    """The first ``data_root`` of a dataloader's (possibly wrapped) dataset."""
    for dataset in iter_datasets((cfg.get(loader) or {}).get('dataset')):
        if dataset.get('data_root'):
            return dataset['data_root']
    return None


def _evaluators(cfg: Config, name: str) -> List[dict]:
    evaluator = cfg.get(name)
    if isinstance(evaluator, dict):
        return [evaluator]
    return [e for e in evaluator or [] if isinstance(e, dict)]


def _set_by_user(options: Dict[str, Any], key: str) -> bool:
    """Whether ``--cfg-options`` set ``key`` or a field inside it."""
    return any(k == key or k.startswith(key + '.') for k in options)


def follow_data_root(cfg: Config, original: Config,
                     options: Dict[str, Any]) -> List[str]:
    """Move the paths derived from a data root that ``options`` moved.

    Args:
        cfg (Config): The config with ``options`` merged (changed in place).
        original (Config): The config as read from its file.
        options (dict): The ``--cfg-options`` (dotted keys).

    Returns:
        list[str]: One line per moved field.
    """
    moved = []
    old_top, new_top = original.get('data_root'), cfg.get('data_root')
    if 'data_root' in options and _norm(old_top) != _norm(new_top):
        for loader in LOADERS:
            if _set_by_user(options, f'{loader}.dataset'):
                continue
            for dataset in iter_datasets((cfg.get(loader) or {}).get('dataset')):
                root = dataset.get('data_root')
                if isinstance(root, str) and _under(root, old_top):
                    dataset['data_root'] = _moved(root, old_top, new_top)
                    moved.append(f'{loader} data_root: {root} -> '
                                 f'{dataset["data_root"]}')
    for loader, evaluator_key in LOADER_EVALUATORS:
        old, new = _loader_root(original, loader), _loader_root(cfg, loader)
        if not old or _norm(old) == _norm(new) or _set_by_user(
                options, evaluator_key):
            continue
        for evaluator in _evaluators(cfg, evaluator_key):
            ann_file = evaluator.get('ann_file')
            if isinstance(ann_file, str) and _under(ann_file, old):
                evaluator['ann_file'] = _moved(ann_file, old, new)
                moved.append(f'{evaluator_key} ann_file: {ann_file} -> '
                             f'{evaluator["ann_file"]}')
    return moved


def _schedule_length(cfg: Config) -> Tuple[Optional[int], bool]:
    """(max_iters or max_epochs, by_epoch) of ``train_cfg``."""
    train_cfg = cfg.get('train_cfg') or {}
    if train_cfg.get('max_iters') is not None:
        return train_cfg['max_iters'], False
    return train_cfg.get('max_epochs'), True


def stale_schedule_fields(cfg: Config, original: Config,
                          options: Dict[str, Any]) -> List[str]:
    """The schedule fields past a training length that ``options``
    shortened, and that ``options`` left as the file had them.

    Args:
        cfg (Config): The config with ``options`` merged.
        original (Config): The config as read from its file.
        options (dict): The ``--cfg-options`` (dotted keys).

    Returns:
        list[str]: ``field=value`` of each stale field.
    """
    length, by_epoch = _schedule_length(cfg)
    old_length, _ = _schedule_length(original)
    if length is None or old_length is None or length >= old_length:
        return []
    stale = []
    if not _set_by_user(options, 'param_scheduler'):
        schedulers = cfg.get('param_scheduler') or []
        if isinstance(schedulers, dict):
            schedulers = [schedulers]
        for i, scheduler in enumerate(schedulers):
            if scheduler.get('by_epoch', True) != by_epoch:
                continue  # counted in the other unit
            for key in ('begin', 'end', 'T_max'):
                value = scheduler.get(key)
                if isinstance(value, (int, float)) and value > length:
                    stale.append(f'param_scheduler[{i}].{key}={value}')
            milestones = [m for m in scheduler.get('milestones') or []
                          if m > length]
            if milestones:
                stale.append(f'param_scheduler[{i}].milestones='
                             f'{list(scheduler["milestones"])}')
    intervals = (cfg.get('train_cfg') or {}).get('dynamic_intervals')
    if intervals and not _set_by_user(options, 'train_cfg.dynamic_intervals'):
        if any(start > length for start, _ in intervals):
            stale.append(f'train_cfg.dynamic_intervals={list(intervals)}')
    return stale


def follow_overrides(cfg: Config, original: Config,
                     options: Optional[Dict[str, Any]]) -> None:
    """Apply both rules of this module after ``--cfg-options``, logging
    what moved and what is stale.

    Args:
        cfg (Config): The config with ``options`` merged (changed in place).
        original (Config): The config as read from its file.
        options (dict, optional): The ``--cfg-options``.
    """
    if not options:
        return
    for line in follow_data_root(cfg, original, options):
        print_log(f'--cfg-options moved the data root: {line}',
                  logger='current')
    stale = stale_schedule_fields(cfg, original, options)
    if stale:
        length, by_epoch = _schedule_length(cfg)
        unit = 'max_epochs' if by_epoch else 'max_iters'
        print_log(
            f'train_cfg.{unit}={length} is shorter than the config\'s '
            f'schedule, whose fields past it are kept as they are (the start '
            f'of the full schedule runs): {", ".join(stale)}. To shorten the '
            f'whole schedule, set them too (--cfg-options or a config '
            f'inheriting this one, as configs/smoke/ does; docs/smoke.md).',
            logger='current', level=logging.WARNING)
