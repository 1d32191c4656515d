"""Evaluate a checkpoint with any noisemim, mmpretrain, mmdet or mmseg config."""
import argparse

from mmengine.config import Config, DictAction
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

import noisemim  # noqa: F401  (registers noisemim's modules)
from noisemim.utils.launch import (check_data_roots, default_scope,
                                   set_work_dir, setup_distributed)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Test (evaluate) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the dir to save the results')
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
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    cfg = Config.fromfile(args.config)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    default_scope(cfg)
    cfg.launcher = args.launcher
    cfg.load_from = args.checkpoint
    set_work_dir(cfg, args.config, args.work_dir)
    check_data_roots(cfg, ['test_dataloader'])
    setup_distributed(cfg, args.launcher)
    runner = (Runner.from_cfg(cfg)
              if 'runner_type' not in cfg else RUNNERS.build(cfg))
    runner.test()


if __name__ == '__main__':
    main()
