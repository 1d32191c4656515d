"""Training curves from mmengine's logged scalars.

An mmengine ``Runner`` with ``LocalVisBackend`` (every config of this
project) writes one JSON record per logging step to
``<work_dir>/<timestamp>/vis_data/scalars.json``: the loss terms, the learning
rate, timings and the global iteration (``step``). A work dir holds one
timestamp folder per launch (a resumed run adds one). These functions read
them back as curves and draw each loss term and the learning rate over the
iterations, several runs overlaid.
"""
import glob
import json
import os.path as osp
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from matplotlib.figure import Figure

SCALARS = osp.join('vis_data', 'scalars.json')
PALETTE = ('tab:blue', 'tab:orange', 'tab:green', 'tab:red', 'tab:purple',
           'tab:brown', 'tab:pink', 'tab:gray', 'tab:olive', 'tab:cyan')
Curve = Tuple[np.ndarray, np.ndarray]


@dataclass
class RunCurves:
    """The curves of one run.

    Attributes:
        name (str): The run's name in the legend.
        curves (Dict[str, Curve]): Key -> (iterations, values), iterations
            ascending.
        sources (List[str]): The ``scalars.json`` files read, oldest first.
    """
    name: str
    curves: Dict[str, Curve]
    sources: List[str]


def find_scalar_logs(path: str) -> List[str]:
    """The ``scalars.json`` files of a run, oldest launch first.

    Args:
        path (str): A work dir (``<work_dir>/<timestamp>/vis_data/
            scalars.json``), one of its timestamp folders, or a
            ``scalars.json`` file.

    Returns:
        List[str]: The files; the timestamp folders (``YYYYmmdd_HHMMSS``)
        sort in launch order.

    Raises:
        FileNotFoundError: If ``path`` holds no logged scalars.
    """
    if osp.isfile(path):
        return [path]
    if osp.isfile(osp.join(path, SCALARS)):
        return [osp.join(path, SCALARS)]
    found = sorted(glob.glob(osp.join(path, '*', SCALARS)))
    if not found:
        raise FileNotFoundError(
            f'No logged scalars under {path!r}: expected a work dir with '
            f'<timestamp>/{SCALARS} (written by mmengine\'s LocalVisBackend), '
            f'a timestamp folder, or a scalars.json file.')
    return found


def read_scalars(path: str) -> List[dict]:
    """The records of one ``scalars.json`` (one JSON object per line).

    Args:
        path (str): The file.

    Returns:
        List[dict]: The records, in file order.

    Raises:
        ValueError: If a line is not a JSON object; names the file and line.
    """
    records = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f'{path}, line {number}: not JSON ({err}): '
                                 f'{line.strip()[:80]!r}') from None
            if not isinstance(record, dict) or 'step' not in record:
                raise ValueError(
                    f'{path}, line {number}: expected a JSON object with a '
                    f"'step' key, as mmengine writes, got {line.strip()[:80]!r}")
            records.append(record)
    return records


def is_training_record(record: dict) -> bool:
    """Training records carry the learning rate or a loss; validation records
    (metrics, logged at ``step`` = epoch or iteration) do not."""
    return 'lr' in record or any('loss' in key for key in record)


def training_curves(paths: Sequence[str]) -> Dict[str, Curve]:
    """Every numeric scalar of the training records, over the iterations.

    Args:
        paths (Sequence[str]): ``scalars.json`` files of one run, oldest
            first. Where a later launch logs an iteration again (a resume from
            an earlier checkpoint), its value replaces the earlier one.

    Returns:
        Dict[str, Curve]: Key -> (iterations, values), sorted by iteration.
    """
    by_key: Dict[str, Dict[int, float]] = {}
    for path in paths:
        for record in read_scalars(path):
            if not is_training_record(record):
                continue
            step = int(record['step'])
            for key, value in record.items():
                if key == 'step' or isinstance(value, bool) or not isinstance(
                        value, (int, float)):
                    continue
                by_key.setdefault(key, {})[step] = float(value)
    curves = {}
    for key, points in by_key.items():
        steps = np.array(sorted(points), dtype=np.int64)
        curves[key] = (steps, np.array([points[s] for s in steps]))
    return curves


def load_runs(paths: Sequence[str],
              names: Optional[Sequence[str]] = None) -> List[RunCurves]:
    """The curves of several runs.

    Args:
        paths (Sequence[str]): Work dirs, timestamp folders or
            ``scalars.json`` files, one per run.
        names (Sequence[str], optional): A legend name per run. Default: the
            work dir's folder name.

    Returns:
        List[RunCurves]: One per path.
    """
    if names is not None and len(names) != len(paths):
        raise ValueError(f'{len(names)} names for {len(paths)} runs: give '
                         'one name per run, or none')
    runs = []
    for i, path in enumerate(paths):
        sources = find_scalar_logs(path)
        name = names[i] if names is not None else osp.basename(
            osp.normpath(path if osp.isdir(path) else osp.dirname(path)))
        runs.append(RunCurves(name, training_curves(sources), sources))
    return runs


def default_keys(runs: Sequence[RunCurves]) -> List[str]:
    """The loss terms (``loss`` first, then the others by name) and the
    learning rate, over all runs."""
    keys = set().union(*(run.curves for run in runs))
    losses = sorted((k for k in keys if 'loss' in k),
                    key=lambda k: (k != 'loss', k))
    return losses + (['lr'] if 'lr' in keys else [])


def plot_curves(runs: Sequence[RunCurves],
                path: str,
                keys: Optional[Sequence[str]] = None,
                columns: int = 3,
                title: Optional[str] = None) -> str:
    """One subplot per key, one line per run, legend by run name.

    Args:
        runs (Sequence[RunCurves]): The runs (see :func:`load_runs`).
        path (str): The PNG to write.
        keys (Sequence[str], optional): The scalars to draw. Default:
            :func:`default_keys`.
        columns (int): Subplots per row. Defaults to 3.
        title (str, optional): A title over the figure.

    Returns:
        str: ``path``.

    Raises:
        ValueError: If there is nothing to draw, or a key is in no run.
    """
    if not runs:
        raise ValueError('No runs to plot')
    keys = list(keys) if keys else default_keys(runs)
    if not keys:
        raise ValueError('The runs logged no loss and no lr: nothing to plot')
    known = set().union(*(run.curves for run in runs))
    unknown = [k for k in keys if k not in known]
    if unknown:
        raise ValueError(f'No run logged {unknown}; logged keys: '
                         f'{sorted(known)}')
    columns = max(1, min(columns, len(keys)))
    rows = -(-len(keys) // columns)
    fig = Figure(layout='constrained', figsize=(4.2 * columns, 3.0 * rows))
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax, key in zip(axes.flat, keys):
        for i, run in enumerate(runs):
            if key not in run.curves:
                continue
            steps, values = run.curves[key]
            ax.plot(
                steps,
                values,
                color=PALETTE[i % len(PALETTE)],
                marker='.' if len(steps) < 30 else None,
                label=run.name)
        ax.set_title(key)
        ax.set_xlabel('iteration')
        ax.grid(alpha=0.3)
        if key == 'lr':
            ax.ticklabel_format(axis='y', style='sci', scilimits=(-2, 2))
        ax.legend(fontsize='small')
    for ax in list(axes.flat)[len(keys):]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=100)
    return path
