"""Run ``tools/train.py`` in the test process (no interpreter start-up) and
read what it logged; tiny image folders to train on."""
import glob
import importlib.util
import json
import os
import os.path as osp
import sys
import time
from typing import List, Sequence

import numpy as np
from PIL import Image

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
VIT_B = osp.join(
    ROOT, 'configs/pretrain/noisemim_vit-base-p16_8xb512-amp-coslr-400e_in1k.py')
DEMO = osp.join(ROOT, 'configs/pretrain/noisemim_vit-tiny_demo.py')


def train_tool():
    """``tools/train.py`` as a module."""
    spec = importlib.util.spec_from_file_location(
        'noisemim_train_tool', osp.join(ROOT, 'tools/train.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


_last_start = 0  # the second the last run_train started in


def run_train(config: str, work_dir: str, *args: str,
              cfg_options: Sequence[str] = ()) -> str:
    """Train through ``tools/train.py``'s ``main()``; returns the run's log.

    Args:
        config (str): The config file.
        work_dir (str): ``--work-dir``.
        *args (str): More flags.
        cfg_options (Sequence[str]): ``--cfg-options`` values.

    Returns:
        str: The text of the run's log file.
    """
    # mmengine names a run's log folder by the second it starts in: two
    # in-process runs within one second would share it (and its scalars).
    global _last_start
    while int(time.time()) == _last_start:
        time.sleep(0.05)
    _last_start = int(time.time())
    old, sys.argv = sys.argv, [
        'train.py', config, '--work-dir', str(work_dir), *args,
        '--cfg-options', f'experiment_name=t{time.time_ns()}', *cfg_options
    ]
    try:
        train_tool().main()
    finally:
        sys.argv = old
    logs = sorted(glob.glob(osp.join(str(work_dir), '*', '*.log')),
                  key=osp.getmtime)
    with open(logs[-1]) as f:
        return f.read()


def build_config(config: str, work_dir: str, *args: str):
    """``tools/train.py``'s config with its flags applied (nothing run)."""
    tool = train_tool()
    old, sys.argv = sys.argv, ['train.py', config, '--work-dir',
                               str(work_dir), *args]
    try:
        return tool.build_config(tool.parse_args())
    finally:
        sys.argv = old


def loss_records(work_dir: str) -> List[dict]:
    """The logged training records of the newest run in ``work_dir``."""
    paths = sorted(glob.glob(osp.join(str(work_dir), '*', 'vis_data',
                                      'scalars.json')), key=osp.getmtime)
    with open(paths[-1]) as f:
        return [json.loads(line) for line in f if '"loss"' in line]


def write_image(path: str, size=(40, 30), seed: int = 0) -> str:
    """A small random RGB image; the format follows the extension."""
    os.makedirs(osp.dirname(path), exist_ok=True)
    pixels = np.random.default_rng(seed).integers(
        0, 256, (size[1], size[0], 3), dtype=np.uint8)
    fmt = {'.jpg': 'JPEG', '.jpeg': 'JPEG', '.png': 'PNG', '.webp': 'WEBP',
           '.bmp': 'BMP'}[osp.splitext(path)[1].lower()]
    Image.fromarray(pixels).save(path, format=fmt)
    return path


def plain_folder(root: str) -> List[str]:
    """Images in any nesting, any extension case, beside other files."""
    names = ['a.JPG', 'x/b.png', 'x/y/c.webp', 'x/y/z/d.Bmp', 'e.jpeg']
    paths = [write_image(osp.join(root, n), seed=i)
             for i, n in enumerate(names)]
    with open(osp.join(root, 'x', 'notes.txt'), 'w') as f:
        f.write('not an image')
    return paths


def imagenet_folder(root: str, classes: int = 3, per_class: int = 2,
                    meta: bool = False) -> List[str]:
    """``root/train/<class>/*.JPEG`` (and ``val/``), ``meta/`` optional."""
    paths, lines = [], []
    for c in range(classes):
        for i in range(per_class):
            name = f'n0{c}/n0{c}_{i}.JPEG'
            paths.append(write_image(osp.join(root, 'train', name),
                                     seed=10 * c + i))
            lines.append(f'{name} {c}')
        write_image(osp.join(root, 'val', f'n0{c}', 'v.JPEG'), seed=99)
    if meta:
        os.makedirs(osp.join(root, 'meta'), exist_ok=True)
        with open(osp.join(root, 'meta', 'train.txt'), 'w') as f:
            f.write('\n'.join(lines[:-1]) + '\n')  # one left out on purpose
    return paths
