"""The study's outputs: Markdown tables (mean ± std over seeds) and plots."""
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np

PROBES = ('knn', 'linear')


@dataclass
class CellSummary:
    """One row of the table: a cell's results over seeds.

    Attributes:
        cell (str): The config name (the cell of the grid).
        method (str): What the cell is (``study_method`` of the config).
        knn (np.ndarray): k-NN accuracies (final norm), one per seed (%).
        linear (np.ndarray): Linear-probe accuracies (final norm), one per
            seed (%).
        loss (np.ndarray): Final training losses (mean of the last 10
            iterations), one per seed; NaN without training.
        seconds (np.ndarray): Pre-training wall time per seed.
        cpu_seconds (np.ndarray): Pre-training CPU time per seed (NaN where
            a run did not record it).
        blocks (dict): Feature name (``'block<i>'``) -> ``{'knn': ...,
            'linear': ...}`` accuracies per seed.
        head_kl (dict): Block -> mean KL between heads, one per seed.
        high_freq (dict): Block -> ``Delta log amplitude`` at the highest
            frequency, one per seed.
        stream_rms (dict): Block -> RMS of the residual stream at the
            block's output, one per seed (empty for studies saved before
            it was measured).
        loss_grad (dict): Loss term (and ``'total'``) -> parameter group
            (``embed``, ``block<i>``, ...) -> the norm of the term's
            gradient there, one per seed (empty where not measured).
    """
    cell: str
    method: str
    knn: np.ndarray
    linear: np.ndarray
    loss: np.ndarray
    seconds: np.ndarray
    cpu_seconds: np.ndarray = field(default_factory=lambda: np.array([]))
    blocks: Dict[str, Dict[str, np.ndarray]] = field(default_factory=dict)
    head_kl: Dict[str, np.ndarray] = field(default_factory=dict)
    high_freq: Dict[str, np.ndarray] = field(default_factory=dict)
    stream_rms: Dict[str, np.ndarray] = field(default_factory=dict)
    loss_grad: Dict[str, Dict[str, np.ndarray]] = field(default_factory=dict)


def summarize(runs: Sequence[Dict]) -> List[CellSummary]:
    """Group per-seed runs by cell, in order of first appearance.

    Args:
        runs (Sequence[dict]): Dicts with ``cell``, ``method``, ``knn``,
            ``linear``, ``loss`` and ``seconds``; optionally ``blocks``
            (name -> ``{'knn', 'linear'}``) and ``analyses`` (the output of
            :func:`~noisemim.study.analyses.analyze_cell`).

    Returns:
        List[CellSummary]: One summary per cell.
    """
    cells: Dict[str, List[Dict]] = {}
    for run in runs:
        cells.setdefault(run['cell'], []).append(run)

    def values(rows: List[Dict], get) -> np.ndarray:
        return np.array([get(r) for r in rows], dtype=float)

    summaries = []
    for cell, rows in cells.items():
        summary = CellSummary(cell, rows[0]['method'],
                              values(rows, lambda r: r['knn']),
                              values(rows, lambda r: r['linear']),
                              values(rows, lambda r: r['loss']),
                              values(rows, lambda r: r['seconds']),
                              values(rows,
                                     lambda r: r.get('cpu_seconds', np.nan)))
        for name in rows[0].get('blocks', {}):
            summary.blocks[name] = {
                p: values(rows, lambda r: r['blocks'][name][p])
                for p in PROBES
            }
        if all('analyses' in r for r in rows):
            for b in rows[0]['analyses']['head_kl']:
                summary.head_kl[b] = values(
                    rows,
                    lambda r: np.mean(r['analyses']['head_kl'][b]))
                summary.high_freq[b] = values(
                    rows, lambda r: r['analyses']['spectrum'][b][-1])
            if all('stream_rms' in r['analyses'] for r in rows):
                summary.stream_rms = {
                    b: values(rows, lambda r: r['analyses']['stream_rms'][b])
                    for b in rows[0]['analyses']['stream_rms']
                }
            if all('loss_grad' in r['analyses'] for r in rows):
                first = rows[0]['analyses']['loss_grad']
                summary.loss_grad = {
                    term: {
                        g: values(rows,
                                  lambda r: r['analyses']['loss_grad'][term][g])
                        for g in groups
                    }
                    for term, groups in first.items()
                }
        summaries.append(summary)
    return summaries


def std(values: np.ndarray) -> float:
    """Sample standard deviation over seeds (0 for one seed)."""
    return float(values.std(ddof=1)) if len(values) > 1 else 0.


def mean_std(values: np.ndarray, digits: int = 1) -> str:
    """``'mean ± std'`` (sample std over seeds; just the mean for one seed)."""
    if np.isnan(values).all():
        return 'n/a'
    if len(values) < 2:
        return f'{values.mean():.{digits}f}'
    return f'{values.mean():.{digits}f} ± {std(values):.{digits}f}'


def beats(a: np.ndarray, b: np.ndarray) -> Optional[bool]:
    """Whether ``a`` beats ``b`` by the study's margin: ``mean(a) - 2 std(a)
    > mean(b) + 2 std(b)`` (sample std over seeds).

    Returns:
        bool, optional: None with fewer than 2 seeds on either side.
    """
    if len(a) < 2 or len(b) < 2:
        return None
    return bool(a.mean() - 2 * std(a) > b.mean() + 2 * std(b))


def _margin(s: CellSummary, floor: Optional[CellSummary]) -> str:
    if floor is None or s is floor:
        return '–'
    marks = []
    for p in PROBES:
        won = beats(getattr(s, p), getattr(floor, p))
        marks.append('?' if won is None else 'yes' if won else 'no')
    return ' / '.join(marks)


def write_markdown(summaries: Sequence[CellSummary],
                   path: str,
                   header: str = '',
                   floor: Optional[str] = None) -> str:
    """Write (and return) the Markdown report.

    Args:
        summaries (Sequence[CellSummary]): The rows.
        path (str): The ``.md`` file to write.
        header (str): Text put above the table (command, machine, ...).
        floor (str, optional): The cell that every other row is compared
            with (the untrained encoder): a column says whether the row
            beats it by two standard deviations on each side.

    Returns:
        str: The Markdown text.
    """
    base = next((s for s in summaries if s.cell == floor), None)
    lines = [
        '| cell | method | k-NN acc. (%) | linear probe acc. (%) '
        '| beats untrained by 2σ (k-NN / linear) '
        '| final train loss | pre-train s / run (wall, CPU) |',
        '| --- | --- | --- | --- | --- | --- | --- |',
    ]
    for s in summaries:
        lines.append(f'| `{s.cell}` | {s.method} | {mean_std(s.knn)} '
                     f'| {mean_std(s.linear)} | {_margin(s, base)} '
                     f'| {mean_std(s.loss, 3)} '
                     f'| {mean_std(s.seconds, 0)}, '
                     f'{mean_std(s.cpu_seconds, 0)} |')
    names = list(summaries[0].blocks) if summaries else []
    if names:
        lines += [
            '', 'Probes on intermediate blocks (mean-pooled block outputs, '
            'before the final norm; k-NN / linear, %):', '',
            '| cell | ' + ' | '.join(names) + ' |',
            '| --- |' + ' --- |' * len(names)
        ]
        for s in summaries:
            cells = [
                f'{mean_std(s.blocks[n]["knn"])} / '
                f'{mean_std(s.blocks[n]["linear"])}' for n in names
            ]
            lines.append(f'| `{s.cell}` | ' + ' | '.join(cells) + ' |')
    blocks = list(summaries[0].head_kl) if summaries else []
    if blocks:
        lines += [
            '', 'Analyses on clean validation images, per block (mean ± std '
            'over seeds): mean KL divergence between attention heads, and '
            'Δ log amplitude of the features at the highest frequency:', '',
            '| cell | ' + ' | '.join(f'KL block {b}' for b in blocks) +
            ' | ' + ' | '.join(f'Δ at π, block {b}' for b in blocks) + ' |',
            '| --- |' + ' --- |' * (2 * len(blocks))
        ]
        for s in summaries:
            lines.append(f'| `{s.cell}` | ' + ' | '.join(
                mean_std(s.head_kl[b], 2) for b in blocks) + ' | ' +
                ' | '.join(mean_std(s.high_freq[b], 2) for b in blocks) +
                ' |')
    blocks = [b for b in blocks if all(b in s.stream_rms for s in summaries)]
    if blocks:
        lines += [
            '', 'Scale of the residual stream (RMS of the patch tokens at '
            "each block's output, clean validation images; mean ± std over "
            'seeds):', '',
            '| cell | ' + ' | '.join(f'block {b}' for b in blocks) + ' |',
            '| --- |' + ' --- |' * len(blocks)
        ]
        for s in summaries:
            lines.append(f'| `{s.cell}` | ' + ' | '.join(
                mean_std(s.stream_rms[b], 2) for b in blocks) + ' |')
    lines += _loss_grad_table(summaries)
    text = (header.rstrip() + '\n\n' if header else '') + '\n'.join(lines)
    with open(path, 'w') as f:
        f.write(text + '\n')
    return text


def _loss_grad_table(summaries: Sequence[CellSummary]) -> List[str]:
    """The gradient norm of each loss term per parameter group (mean over
    seeds), for the cells where it was measured."""
    measured = [s for s in summaries if s.loss_grad]
    if not measured:
        return []
    groups = list(next(iter(measured[0].loss_grad.values())))
    lines = [
        '', 'Gradient norm that each loss term sends into each part of the '
        'trained model (on the analysis images, corrupted as in '
        'pre-training; mean over seeds; `total` is the sum of the terms):',
        '', '| cell | term | ' + ' | '.join(groups) + ' |',
        '| --- | --- |' + ' --- |' * len(groups)
    ]
    for s in measured:
        for term, row in s.loss_grad.items():
            lines.append(f'| `{s.cell}` | {term} | ' + ' | '.join(
                f'{row[g].mean():.3g}' if g in row else '–'
                for g in groups) + ' |')
    return lines


def _pyplot():
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path: str, title: str = '') -> None:
    """Give ``fig`` its title, write it to ``path`` and close it."""
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)


def plot_summaries(summaries: Sequence[CellSummary], path: str,
                   title: str = '') -> None:
    """Bar chart of k-NN and linear-probe accuracy (mean, ± std error bars).

    Args:
        summaries (Sequence[CellSummary]): The rows.
        path (str): The ``.png`` file to write.
        title (str): The figure title.
    """
    plt = _pyplot()
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
                  fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel('validation accuracy of the probe (%)')
    ax.set_xlim(0, 100)  # room for the legend right of the bars
    ax.set_title(title, fontsize=9)
    ax.legend(loc='lower right')
    ax.grid(axis='x', alpha=0.3)
    _save(fig, path)


def plot_analyses(summaries: Sequence[CellSummary], path: str,
                  title: str = '') -> bool:
    """Per block: mean KL between heads, ``Delta log amplitude`` at the
    highest frequency and (where measured) the residual stream's RMS, one
    line per cell, ± std over seeds.

    Args:
        summaries (Sequence[CellSummary]): The rows (those without
            analyses are left out).
        path (str): The ``.png`` file to write.
        title (str): The figure title.

    Returns:
        bool: False (and nothing written) when no row has analyses.
    """
    rows = [s for s in summaries if s.head_kl]
    if not rows:
        return False
    with_scale = all(s.stream_rms for s in rows)
    plt = _pyplot()
    fig, axes = plt.subplots(
        1, 3 if with_scale else 2, figsize=(16 if with_scale else 11, 4.2))
    for i, s in enumerate(rows):
        blocks = sorted(s.head_kl, key=int)
        x = np.array([int(b) for b in blocks]) + (i - len(rows) / 2) * 0.03
        style = dict(marker='o', capsize=2, label=s.method, lw=1.2, ms=4)
        axes[0].errorbar(x, [s.head_kl[b].mean() for b in blocks],
                         yerr=[std(s.head_kl[b]) for b in blocks], **style)
        axes[1].errorbar(x, [s.high_freq[b].mean() for b in blocks],
                         yerr=[std(s.high_freq[b]) for b in blocks], **style)
        if with_scale:
            axes[2].errorbar(x, [s.stream_rms[b].mean() for b in blocks],
                             yerr=[std(s.stream_rms[b]) for b in blocks],
                             **style)
    axes[0].set_ylabel('mean KL divergence between heads')
    axes[0].set_title('Attention-head diversity (paper A, Fig. 2)',
                      fontsize=9)
    axes[1].set_ylabel('Δ log amplitude at the highest frequency')
    axes[1].set_title('Feature spectrum (lower: more low-pass)', fontsize=9)
    if with_scale:
        axes[2].set_yscale('log')
        axes[2].set_ylabel('RMS of the residual stream')
        axes[2].set_title("Scale of the stream at each block's output",
                          fontsize=9)
    for ax in axes:
        ax.set_xlabel('block')
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=6, loc='best')
    _save(fig, path, title)
    return True


def plot_curves(runs: Sequence[Dict], path: str, title: str = '') -> bool:
    """Probe accuracy over pre-training iterations (mean ± std over seeds),
    k-NN (left) and linear (right), one line per cell; the untrained
    encoder as a horizontal band (mean ± 2 std).

    Args:
        runs (Sequence[dict]): Runs as in :func:`summarize`; those with a
            ``curve`` (a list of dicts with ``iter``, ``knn``, ``linear``)
            are drawn.
        path (str): The ``.png`` file to write.
        title (str): The figure title.

    Returns:
        bool: False (and nothing written) when no run has a curve.
    """
    cells: Dict[str, List[Dict]] = {}
    for run in runs:
        cells.setdefault(run['cell'], []).append(run)
    if not any('curve' in r for r in runs):
        return False
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, probe in zip(axes, PROBES):
        for cell, rows in cells.items():
            if rows[0].get('curve'):
                x = [p['iter'] for p in rows[0]['curve']]
                acc = np.array([[p[probe] for p in r['curve']]
                                for r in rows])
                ax.errorbar(x, acc.mean(0),
                            yerr=acc.std(0, ddof=1) if len(rows) > 1 else
                            None, marker='o', ms=3, capsize=2,
                            label=rows[0]['method'])
            elif all(r.get('seconds', 0) == 0 for r in rows):
                acc = np.array([r[probe] for r in rows])
                ax.axhspan(acc.mean() - 2 * std(acc), acc.mean() + 2 * std(acc),
                           color='gray', alpha=0.25,
                           label=f'{rows[0]["method"]} (mean ± 2 std)')
                ax.axhline(acc.mean(), color='gray', lw=1)
        ax.set_xlabel('pre-training iteration')
        ax.set_ylabel(f'{"k-NN" if probe == "knn" else "linear probe"} '
                      'accuracy (%)')
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=6, loc='best')
    _save(fig, path, title)
    return True
