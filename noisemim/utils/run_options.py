"""What ``tools/train.py``'s flags do to a config: ``--data-root``,
``--resume``, ``--no-validate`` and ``--no-persistent-workers`` (or
``num_workers=0``). Each returns the log lines that say what it changed."""
import os.path as osp
from typing import List, Optional

from mmengine.config import Config

from ..datasets.image_folder import resolve_layout
from .checkpoint import _candidates

LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')
#: Dataset arguments that an image folder keeps from the config's dataset.
KEPT_DATASET_KEYS = ('pipeline', 'indices', 'serialize_data', 'lazy_init',
                     'max_refetch')
#: Wrapper keys of ``SkipBadSamples``'s flat form.
FLAT_WRAPPER_KEYS = ('type', 'max_bad', 'dataset_type')


def is_pretraining(cfg: Config) -> bool:
    """Whether the config pre-trains (an mmpretrain self-supervised
    algorithm, which needs no labels)."""
    if cfg.get('default_scope', 'mmpretrain') != 'mmpretrain':
        return False
    from mmpretrain.models import BaseSelfSupervisor
    from mmpretrain.registry import MODELS
    model = cfg.get('model') or {}
    cls = MODELS.get(model.get('type')) if isinstance(
        model.get('type'), str) else None
    if cls is not None:
        return issubclass(cls, BaseSelfSupervisor)
    preprocessor = model.get('data_preprocessor') or cfg.get(
        'data_preprocessor') or {}
    return preprocessor.get('type') == 'SelfSupDataPreprocessor'


def use_image_folder(cfg: Config, data_root: str) -> str:
    """``--data-root DIR``: pre-train on the images of ``DIR``.

    The training dataset (inside ``SkipBadSamples`` and other wrappers)
    becomes :class:`noisemim.datasets.NoiseMIMImageFolder` on ``DIR``, keeping its
    pipeline: an ImageNet-layout folder (``DIR/train/<class>/*``, with or
    without ``meta/``) or any folder of images.

    Args:
        cfg (Config): A pre-training config (changed in place).
        data_root (str): The folder.

    Returns:
        str: The log line, with the equivalent ``--cfg-options``.

    Raises:
        ValueError: The config does not pre-train, or trains on several
            datasets.
    """
    if not is_pretraining(cfg):
        raise ValueError(
            f'--data-root is for pre-training configs (unlabelled images); '
            f'this config trains {cfg.model.get("type")!r}. Point its '
            'dataset at the data with --cfg-options '
            'train_dataloader.dataset.data_root=DIR.')
    node, path = cfg.train_dataloader.dataset, 'train_dataloader.dataset'
    while isinstance(node.get('dataset'), dict):  # nested wrappers
        node, path = node.dataset, path + '.dataset'
    if 'datasets' in node:
        raise ValueError(f'--data-root: {path} concatenates several '
                         'datasets; set their data_root in the config.')
    flat = 'dataset_type' in node  # SkipBadSamples(dataset_type=..., ...)
    type_key = 'dataset_type' if flat else 'type'
    before = str(node.get(type_key)).split('.')[-1]
    split = node.get('split') if isinstance(node.get('split'), str) else (
        'train')
    kept = {
        k: v
        for k, v in node.items()
        if k in KEPT_DATASET_KEYS or (flat and k in FLAT_WRAPPER_KEYS)
    }
    node.clear()
    node.update(kept)
    node.update({type_key: 'NoiseMIMImageFolder', 'data_root': data_root,
                 'split': split})
    layout = (resolve_layout(data_root, split)[2]
              if osp.isdir(data_root) else 'missing')
    same = (f'the same as --cfg-options {path}.data_root={data_root}'
            if before == 'NoiseMIMImageFolder' else
            f"in place of the config's {before}, its pipeline kept")
    return (f'--data-root {data_root}: pre-training on its images '
            f'(NoiseMIMImageFolder, {layout}); {same}.')


def fit_dataloader_workers(cfg: Config,
                           no_persistent_workers: bool = False) -> List[str]:
    """Switch off ``persistent_workers`` where it cannot or should not run.

    PyTorch refuses ``persistent_workers=True`` (and ``prefetch_factor``)
    with ``num_workers=0``; mmpretrain's ``--no-persistent-workers`` switches
    it off everywhere.

    Args:
        cfg (Config): The run's config (changed in place).
        no_persistent_workers (bool): ``--no-persistent-workers``.

    Returns:
        List[str]: A log line per change.
    """
    notes = []
    for name in LOADERS:
        loader = cfg.get(name)
        if not isinstance(loader, dict) or not loader.get(
                'persistent_workers'):
            continue
        if no_persistent_workers:
            loader['persistent_workers'] = False
            notes.append(f'{name}: persistent_workers switched off '
                         '(--no-persistent-workers).')
        elif not loader.get('num_workers', 0):
            loader['persistent_workers'] = False
            loader.pop('prefetch_factor', None)
            notes.append(f'{name}: num_workers=0 (data loaded in the main '
                         'process), so persistent_workers is switched off.')
    return notes


def disable_validation(cfg: Config) -> str:
    """``--no-validate``: train without the validation loop (mmpretrain's
    flag)."""
    cfg.val_cfg = None
    cfg.val_dataloader = None
    cfg.val_evaluator = None
    return '--no-validate: no validation during training.'


def resolve_resume(cfg: Config, resume: Optional[str]) -> Optional[str]:
    """Resume only when asked, and say from what.

    Args:
        cfg (Config): The run's config (``resume``, ``load_from`` set).
        resume (str, optional): ``--resume``: None (not given), ``'auto'``
            (no path: the newest checkpoint of the work dir) or a path.

    Returns:
        str | None: The log line. With ``--resume`` and no checkpoint in the
        work dir, the run starts fresh and says so (mmengine would log
        "Auto resumed from the latest checkpoint None"). The checkpoint hook
        logs the checkpoint it resumes from after checking it.
    """
    by_config = resume is None and cfg.get('resume') is True
    if resume is None and not by_config:
        cfg.resume = False
        return None
    how = 'resume=True in the config' if by_config else '--resume'
    if resume not in (None, 'auto'):
        cfg.resume, cfg.load_from = True, resume
        return f'Resuming from {resume} ({how}).'
    if by_config and cfg.get('load_from'):
        return f'Resuming from {cfg.load_from} ({how}).'
    cfg.resume, cfg.load_from = True, None
    work_dir = cfg.work_dir
    if '://' in work_dir:  # remote: left to the checkpoint hook
        return f'{how}: resuming from the newest checkpoint in {work_dir}.'
    hook = (cfg.get('default_hooks') or {}).get('checkpoint') or {}
    tmpls = tuple(t for t in (hook.get('filename_tmpl'), 'iter_{}.pth',
                              'epoch_{}.pth') if t)
    if not _candidates(work_dir, _checkpoint_folders(cfg), tmpls):
        cfg.resume = False
        return (f'{how}: no checkpoint in {osp.abspath(work_dir)} to resume '
                'from; starting a fresh run.')
    return (f'{how}: resuming from the newest complete checkpoint in '
            f'{osp.abspath(work_dir)} (named below).')


def _checkpoint_folders(cfg: Config) -> List[str]:
    """Where the checkpoint hook writes when it has an ``out_dir``."""
    hook = (cfg.get('default_hooks') or {}).get('checkpoint') or {}
    out_dir = hook.get('out_dir')
    if not out_dir or '://' in out_dir:
        return []
    return [osp.join(out_dir, osp.basename(cfg.work_dir.rstrip(osp.sep)))]
