"""Evaluate a checkpoint with any noisemim, mmpretrain, mmdet or mmseg config.

``--precision`` (default ``auto``) runs the test loop under autocast where the
config asks for it (``test_cfg.fp16``) and the device runs it fast
(docs/gpu.md, "Precision").
"""
import argparse

from mmengine.registry import RUNNERS
from mmengine.runner import Runner

import noisemim  # noqa: F401  (registers noisemim's modules)
from noisemim.engine.optimizers import configure_test_precision
from noisemim.engine.optimizers.mixed_precision import set_autocast_dtype
from noisemim.utils.launch import (add_common_args, check_data_roots,
                                   load_config, setup_distributed,
                                   shutdown_distributed)
from noisemim.utils.run_options import fit_dataloader_workers


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Test (evaluate) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the dir to save the results')
    add_common_args(parser)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    cfg = load_config(args)
    cfg.load_from = args.checkpoint
    notes = fit_dataloader_workers(cfg, args.no_persistent_workers)
    precision = configure_test_precision(cfg, args.precision)
    notes.append(precision.message())
    check_data_roots(cfg, ['test_dataloader'])
    setup_distributed(cfg, args.launcher)
    runner = (Runner.from_cfg(cfg)
              if 'runner_type' not in cfg else RUNNERS.build(cfg))
    for note in notes:
        runner.logger.info(note)
    set_autocast_dtype(precision.precision)
    runner.test()
    shutdown_distributed(exit_process=True)


if __name__ == '__main__':
    main()
