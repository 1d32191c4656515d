"""Train with any noisemim, mmpretrain, mmdet or mmseg config.

The library is chosen by the config's ``default_scope``. Examples::

    python tools/train.py configs/pretrain/noisemim_vit-base-p16_8xb512-amp-coslr-400e_in1k.py
    python tools/train.py <pre-training config> --data-root DIR   # any images
    bash tools/dist_train.sh configs/detection/<config>.py 8

Nothing is written to the work dir before the pre-flight checks (data,
checkpoints, model settings) pass.
"""
import argparse
from typing import List, Tuple

from mmengine.config import Config
from mmengine.registry import RUNNERS
from mmengine.runner import Runner, find_latest_checkpoint

import noisemim  # noqa: F401  (registers noisemim's modules)
from noisemim.engine.hooks.bad_samples import guard_bad_samples
from noisemim.engine.hooks.checkpoint_atomic import use_atomic_checkpoints
from noisemim.engine.optimizers import (configure_mixed_precision,
                                        count_accumulation_in_lr_scaling)
from noisemim.utils.checkpoint import check_checkpoint
from noisemim.utils.compile import apply_compile_config
from noisemim.utils.config_checks import check_init_cfgs, check_model_keys
from noisemim.utils.launch import (add_common_args, check_data_roots,
                                   load_config, setup_distributed,
                                   shutdown_distributed)
from noisemim.utils.run_options import (disable_validation,
                                        fit_dataloader_workers,
                                        resolve_resume, use_image_folder)
from noisemim.utils.tensorboard import add_tensorboard_backend


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train a model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from this checkpoint, or from the latest checkpoint in '
        'the work dir when no path is given (a run resumes only when asked)')
    parser.add_argument(
        '--amp',
        action='store_true',
        help='the same as --precision bf16 (fp16 on a GPU without bf16)')
    parser.add_argument(
        '--data-root',
        help='pre-train on this folder of images: ImageNet layout '
        '(DIR/train/<class>/*, with or without DIR/meta/) or any folder of '
        'images in any nesting (jpg, jpeg, png, webp, bmp; no labels)')
    parser.add_argument(
        '--no-validate',
        action='store_true',
        help='do not evaluate checkpoints during training')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='scale the lr by the actual total batch size (GPUs x batch x '
        'accumulative_counts)')
    parser.add_argument(
        '--tensorboard',
        action='store_true',
        help='also log to TensorBoard (needs the tensorboard package)')
    parser.add_argument(
        '--compile',
        action='store_true',
        help='torch.compile the encoder blocks and heads (not the optimizer '
        'step); the same as compile_blocks=True in the config')
    add_common_args(parser)
    return parser.parse_args()


def build_config(args: argparse.Namespace) -> Tuple[Config, List[str]]:
    """The run's config with the flags applied, checked before anything is
    built or written.

    Returns:
        Tuple[Config, List[str]]: The config and the lines to log (what the
        flags and the device changed, and why).
    """
    cfg = load_config(args)
    notes = []
    if args.data_root:
        notes.append(use_image_folder(cfg, args.data_root))
    if args.no_validate:
        notes.append(disable_validation(cfg))
    notes += fit_dataloader_workers(cfg, args.no_persistent_workers)
    # bf16 where the device runs it fast, fp16 + loss scaler on older GPUs,
    # fp32 on a CPU without native bf16 (docs/gpu.md, "Precision"); the lr
    # scaling counts gradient accumulation.
    notes.append(
        configure_mixed_precision(cfg, args.precision, args.amp).message())
    if args.auto_scale_lr:
        cfg.setdefault('auto_scale_lr', {})['enable'] = True
    count_accumulation_in_lr_scaling(cfg)
    apply_compile_config(cfg, getattr(args, 'compile', False))
    if getattr(args, 'tensorboard', False):
        add_tensorboard_backend(cfg)
    notes.append(resolve_resume(cfg, args.resume))
    # Pre-flight: settings the model classes do not take, init_cfg, data.
    check_model_keys(cfg)
    check_init_cfgs(cfg)
    loaders = ['train_dataloader']
    if cfg.get('val_cfg') and cfg.get('val_dataloader'):
        loaders.append('val_dataloader')
    check_data_roots(cfg, loaders)
    # Refuse a checkpoint that carries code before anything unpickles it.
    check_checkpoint(cfg.get('load_from') or (
        find_latest_checkpoint(cfg.work_dir) if cfg.get('resume') else None))
    # Atomic checkpoint writes, a --resume that skips a broken newest
    # checkpoint, and bad samples skipped or named, for mmdet/mmseg/mmpretrain
    # configs alike (docs/reliability.md).
    use_atomic_checkpoints(cfg)
    guard_bad_samples(cfg)
    setup_distributed(cfg, args.launcher)
    return cfg, [n for n in notes if n]


def main() -> None:
    cfg, notes = build_config(parse_args())
    runner = (Runner.from_cfg(cfg)
              if 'runner_type' not in cfg else RUNNERS.build(cfg))
    for note in notes:
        runner.logger.info(note)
    runner.train()
    shutdown_distributed(exit_process=True)


if __name__ == '__main__':
    main()
