"""Train with any noisemim, mmpretrain, mmdet or mmseg config.

The library is chosen by the config's ``default_scope``. Examples::

    python tools/train.py configs/pretrain/noisemim_vit-base-p16_8xb512-amp-coslr-400e_in1k.py
    bash tools/dist_train.sh configs/detection/<config>.py 8
"""
import argparse

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
from noisemim.utils.launch import (add_common_args, check_data_roots,
                                   load_config, setup_distributed,
                                   shutdown_distributed)
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
        'the work dir when no path is given')
    parser.add_argument(
        '--amp',
        action='store_true',
        help='mixed precision training: bf16 where the GPU has it, else fp16 '
        'with a loss scaler')
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


def build_config(args: argparse.Namespace) -> Config:
    cfg = load_config(args)
    # bf16 where the device has it, fp16 + loss scaler or CPU autocast where
    # not (docs/gpu.md); the lr scaling counts gradient accumulation.
    configure_mixed_precision(cfg, args.amp)
    if args.auto_scale_lr:
        cfg.setdefault('auto_scale_lr', {})['enable'] = True
    count_accumulation_in_lr_scaling(cfg)
    apply_compile_config(cfg, getattr(args, 'compile', False))
    if getattr(args, 'tensorboard', False):
        add_tensorboard_backend(cfg)
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
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
    return cfg


def main() -> None:
    cfg = build_config(parse_args())
    runner = (Runner.from_cfg(cfg)
              if 'runner_type' not in cfg else RUNNERS.build(cfg))
    runner.train()
    shutdown_distributed(exit_process=True)


if __name__ == '__main__':
    main()
