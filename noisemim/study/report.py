"""The study's outputs: a Markdown table (mean ± std over seeds) and a plot."""
from dataclasses import dataclass
from typing import Dict, List, Sequence

import numpy as np


@dataclass
class CellSummary:
    """One row of the table.

    Attributes:
        cell (str): The config name (the cell of the grid).
        method (str): What the cell is (``study_method`` of the config).
        knn (np.ndarray): k-NN accuracies, one per seed (%).
        linear (np.ndarray): Linear-probe accuracies, one per seed (%).
        loss (np.ndarray): Final training losses (mean of the last 10
            iterations), one per seed; NaN without training.
        seconds (np.ndarray): Pre-training wall time per seed.
    """
    cell: str
    method: str
    knn: np.ndarray
    linear: np.ndarray
    loss: np.ndarray
    seconds: np.ndarray


def summarize(runs: Sequence[Dict]) -> List[CellSummary]:
    """Group per-seed runs by cell, in order of first appearance.

    Args:
        runs (Sequence[dict]): Dicts with ``cell``, ``method``, ``knn``,
            ``linear``, ``loss`` and ``seconds``.

    Returns:
        List[CellSummary]: One summary per cell.
    """
    cells: Dict[str, List[Dict]] = {}
    for run in runs:
        cells.setdefault(run['cell'], []).append(run)

    def values(rows: List[Dict], key: str) -> np.ndarray:
        return np.array([r[key] for r in rows], dtype=float)

    return [
        CellSummary(cell, rows[0]['method'], values(rows, 'knn'),
                    values(rows, 'linear'), values(rows, 'loss'),
                    values(rows, 'seconds')) for cell, rows in cells.items()
    ]


def mean_std(values: np.ndarray, digits: int = 1) -> str:
    """``'mean ± std'`` (sample std over seeds; just the mean for one seed)."""
    if np.isnan(values).all():
        return 'n/a'
    if len(values) < 2:
        return f'{values.mean():.{digits}f}'
    return f'{values.mean():.{digits}f} ± {values.std(ddof=1):.{digits}f}'


def write_markdown(summaries: Sequence[CellSummary], path: str,
                   header: str = '') -> str:
    """Write (and return) the Markdown table.

    Args:
        summaries (Sequence[CellSummary]): The rows.
        path (str): The ``.md`` file to write.
        header (str): Text put above the table (command, machine, ...).

    Returns:
        str: The Markdown text.
    """
    lines = [
        '| cell | method | k-NN acc. (%) | linear probe acc. (%) '
        '| final train loss | pre-train s / run |',
        '| --- | --- | --- | --- | --- | --- |',
    ]
    for s in summaries:
        lines.append(f'| `{s.cell}` | {s.method} | {mean_std(s.knn)} '
                     f'| {mean_std(s.linear)} | {mean_std(s.loss, 3)} '
                     f'| {mean_std(s.seconds, 0)} |')
    text = (header.rstrip() + '\n\n' if header else '') + '\n'.join(lines)
    with open(path, 'w') as f:
        f.write(text + '\n')
    return text


def plot_summaries(summaries: Sequence[CellSummary], path: str,
                   title: str = '') -> None:
    """Bar chart of k-NN and linear-probe accuracy (mean, ± std error bars).

    Args:
        summaries (Sequence[CellSummary]): The rows.
        path (str): The ``.png`` file to write.
        title (str): The figure title.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    def std(values: np.ndarray) -> float:
        return float(values.std(ddof=1)) if len(values) > 1 else 0.

    y = np.arange(len(summaries))
    height = 0.38
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.6 * len(summaries)))
    for offset, key, label in ((-height / 2, 'knn', 'k-NN'),
                               (height / 2, 'linear', 'linear probe')):
        ax.barh(
            y + offset, [getattr(s, key).mean() for s in summaries],
            height,
            xerr=[std(getattr(s, key)) for s in summaries],
            capsize=3,
            label=label)
    ax.set_yticks(y, [f'{s.cell}\n({s.method})' for s in summaries],
                  fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel('accuracy on held-out digits (%)')
    ax.set_title(title, fontsize=9)
    ax.legend(loc='lower right')
    ax.grid(axis='x', alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
