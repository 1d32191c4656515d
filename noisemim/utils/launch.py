"""What ``tools/train.py`` and ``tools/test.py`` share: config set-up for any of
mmpretrain, mmdet and mmseg, data-root checks, and distributed runs on CPU."""
import argparse
import logging
import os
import os.path as osp
import sys
from typing import Optional

import torch
import torch.distributed as dist
from mmengine.config import Config, DictAction

from ..datasets.image_folder import IMAGE_EXTENSIONS, LAYOUTS, resolve_layout
from .config_checks import check_option_paths
from .derived_fields import follow_overrides, iter_datasets
from .precision import PRECISIONS

SCOPES = ('mmpretrain', 'mmdet', 'mmseg')

# How to prepare each dataset, by dataset type (shown when its root is missing).
DATA_HINTS = {
    'ImageNet': 'ImageNet-1K in the mmpretrain layout: <root>/train/<wnid>/*.JPEG, '
    '<root>/val/..., <root>/meta/{train,val}.txt (see docs/transfer.md, "Data layouts").',
    'CocoDataset': 'COCO 2017: <root>/{train2017,val2017}/*.jpg and '
    '<root>/annotations/instances_{train,val}2017.json (see docs/transfer.md, "Data layouts").',
    'CustomDataset': 'a folder of images, <root>/*.jpg (or <root>/<class>/*.jpg '
    'with labels), as mmpretrain\'s CustomDataset reads it.',
    'NoiseMIMImageFolder': LAYOUTS + '; tools/train.py --data-root DIR takes it.',
    'ADE20KDataset': 'ADE20K (ADEChallengeData2016): <root>/images/{training,'
    'validation}/*.jpg and <root>/annotations/{training,validation}/*.png '
    '(see docs/transfer.md, "Data layouts").',
}


def check_data_roots(cfg: Config, loaders=('train_dataloader', )) -> None:
    """Fail early, naming the path and how to prepare it, if a root is missing.

    Args:
        cfg (Config): The run's config.
        loaders (Sequence[str]): The dataloaders that the run uses.

    Raises:
        FileNotFoundError: A dataset's ``data_root`` does not exist, or an
            ``NoiseMIMImageFolder`` root holds no image.
    """
    for name in loaders:
        loader = cfg.get(name)
        if not loader:
            continue
        for dataset in iter_datasets(loader.get('dataset')):
            root = dataset.get('data_root')
            kind = str(dataset.get('dataset_type') or  # SkipBadSamples
                       dataset.get('type', '')).split('.')[-1]
            hint = DATA_HINTS.get(kind,
                                  'see docs/transfer.md, "Data layouts".')
            if root and not osp.isdir(root):
                raise FileNotFoundError(
                    f'{name}: the data_root {osp.abspath(root)!r} of dataset '
                    f'{kind or "?"} does not exist. Prepare it as {hint} Or '
                    f'point the config at it, e.g. --cfg-options '
                    f'{name}.dataset.data_root=/path/to/data')
            if kind == 'NoiseMIMImageFolder' and root and dataset.get(
                    'data_prefix') is None:
                folder = osp.join(root,
                                  resolve_layout(root,
                                                 dataset.get('split',
                                                             'train'))[0])
                if not _has_image(folder):
                    raise FileNotFoundError(
                        f'{name}: no images ({", ".join(IMAGE_EXTENSIONS)}, '
                        f'any case) in {osp.abspath(folder)!r}. Give {hint}')


def _has_image(folder: str) -> bool:
    """Whether ``folder`` holds an image at any depth (stops at the first)."""
    for _, _, files in os.walk(folder, followlinks=True):
        if any(f.lower().endswith(IMAGE_EXTENSIONS) for f in files):
            return True
    return False


def default_scope(cfg: Config) -> str:
    """The config's ``default_scope`` (checked against the supported ones)."""
    scope = cfg.get('default_scope', 'mmpretrain')
    if scope not in SCOPES:
        raise ValueError(f'default_scope must be one of {SCOPES}, got '
                         f'{scope!r}')
    if scope != 'mmpretrain':  # say what to install when mmdet/mmseg is missing
        from ..registration import require
        require(scope)
    return scope


def setup_distributed(cfg: Config, launcher: str) -> None:
    """Start torch.distributed on CPU (gloo) when no GPU is present.

    mmengine's ``init_dist`` calls ``torch.cuda.set_device``, which fails on a
    machine without GPUs, and its DDP wrapper passes GPU ``device_ids``; this
    starts the process group itself and has DDP wrap the model on CPU.

    Args:
        cfg (Config): The run's config (changed in place).
        launcher (str): ``'none'``, ``'pytorch'``, ``'slurm'`` or ``'mpi'``.
    """
    if launcher == 'none' or torch.cuda.is_available():
        return
    if launcher != 'pytorch':
        raise ValueError(f'launcher {launcher!r} needs GPUs; on CPU use '
                         "'pytorch' (tools/dist_train.sh).")
    if not dist.is_initialized():
        dist.init_process_group(backend='gloo')
    cfg.env_cfg.setdefault('dist_cfg', {})['backend'] = 'gloo'
    wrapper = cfg.get('model_wrapper_cfg') or dict(
        type='MMDistributedDataParallel')
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper


def shutdown_distributed(exit_process: bool = False) -> None:
    """End a finished run's process group on every rank together.

    Args:
        exit_process (bool): After a CPU (gloo) run, also end the process
            here, logs and output flushed, without the C++ teardown of
            interpreter exit. Even with the group destroyed, a rank of a
            finished 2-process CPU run sometimes aborted there ("terminate
            called without an active exception", exit code -6; about one
            run in ten on a loaded 2-core machine), and torchrun then reports
            the run failed. GPU (NCCL) runs exit as usual.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    cpu = dist.get_backend() == 'gloo'
    dist.barrier()
    dist.destroy_process_group()
    if exit_process and cpu:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def set_work_dir(cfg: Config, config_path: str,
                 work_dir: Optional[str]) -> None:
    """``--work-dir``, else the config's, else ``work_dirs/<config name>``
    (only named: nothing is written before the pre-flight checks pass)."""
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(config_path))[0])
    # Not created here: the Runner makes it, after the pre-flight checks.


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """The flags ``tools/train.py`` and ``tools/test.py`` share.

    Args:
        parser (argparse.ArgumentParser): Gets ``--cfg-options``,
            ``--launcher`` and ``--local-rank``.
    """
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of the config, key=value')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument(
        '--precision',
        choices=PRECISIONS,
        default='auto',
        help="auto (default): the config's precision where the device runs "
        'it fast: bf16 on GPUs with bf16, fp16 with a loss scaler on older '
        'GPUs, fp32 on a CPU without native bf16 (AMX/AVX512-BF16); fp32, '
        'bf16, fp16: forced (docs/gpu.md)')
    parser.add_argument(
        '--no-persistent-workers',
        action='store_true',
        help='switch off persistent_workers in all dataloaders')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def load_config(args: argparse.Namespace) -> Config:
    """Read ``args.config`` with ``--cfg-options``, ``--launcher`` and the work
    dir applied, and check its ``default_scope``.

    Args:
        args (argparse.Namespace): Parsed flags (see :func:`add_common_args`).

    Returns:
        Config: The run's config.
    """
    cfg = Config.fromfile(args.config)
    # a `noisemim::` base's collate_fn carries mmengine's _scope_ tag, which
    # mmengine 0.10.7 would pass to the function (noisemim/registry.py)
    from ..registry import untag_collate_fns
    untag_collate_fns(cfg)
    if args.cfg_options is not None:
        original = Config.fromfile(args.config)
        check_option_paths(cfg, args.cfg_options)  # before mmengine's merge
        cfg.merge_from_dict(args.cfg_options)
        # paths under a moved data root follow it; a shortened schedule's
        # stale fields are named (noisemim/utils/derived_fields.py)
        follow_overrides(cfg, original, args.cfg_options)
    default_scope(cfg)
    cfg.launcher = args.launcher
    set_work_dir(cfg, args.config, args.work_dir)
    return cfg
