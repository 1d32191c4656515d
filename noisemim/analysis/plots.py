"""The figures of the analyses (matplotlib's object API: no pyplot state, Agg).

Each function takes the numbers the analyses computed and writes one PNG.
"""
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from torch import Tensor

PALETTE = ('tab:blue', 'tab:orange', 'tab:green', 'tab:red', 'tab:purple',
           'tab:brown', 'tab:pink', 'tab:gray', 'tab:olive', 'tab:cyan')
MASK_GRAY = 0.5
NOISE_TINT = (1.0, 0.25, 0.1)


def _save(fig: Figure, path: str, dpi: int = 100) -> str:
    fig.savefig(path, dpi=dpi)
    return path


def plot_head_diversity(per_head: Mapping[str, Mapping[int, Sequence[float]]],
                        path: str) -> str:
    """Small dot per head (its mean KL to the other heads), large dot per
    block mean, one colour per model.

    Args:
        per_head (Mapping): Model label -> block index -> per-head KL.
        path (str): The PNG to write.

    Returns:
        str: ``path``.
    """
    fig = Figure(layout='constrained', figsize=(6, 4))
    ax = fig.add_subplot()
    n = len(per_head)
    for m, (label, blocks) in enumerate(per_head.items()):
        color = PALETTE[m % len(PALETTE)]
        offset = (m - (n - 1) / 2) * 0.12
        xs = np.array(sorted(blocks)) + offset
        means = [float(np.mean(blocks[b])) for b in sorted(blocks)]
        for x, b in zip(xs, sorted(blocks)):
            values = np.asarray(blocks[b], dtype=float)
            ax.scatter(
                np.full(len(values), x),
                values,
                s=10,
                color=color,
                alpha=0.5,
                linewidths=0)
        ax.plot(xs, means, '-', color=color, alpha=0.6)
        ax.scatter(
            xs,
            means,
            s=70,
            color=color,
            edgecolors='black',
            linewidths=0.6,
            label=label,
            zorder=3)
    ax.set_xlabel('block')
    ax.set_ylabel('KL divergence between heads')
    ax.set_title('Attention-head diversity (small: head, large: block mean)')
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(fontsize='small')
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_feature_spectrum(profiles: Mapping[str, Mapping[int,
                                                         Sequence[float]]],
                          path: str) -> str:
    """Left: ``Delta log amplitude`` at the highest frequency per block, one
    line per model. Right: each model's full profiles (0 to pi), coloured by
    depth.

    Args:
        profiles (Mapping): Model label -> block -> relative log amplitude
            from frequency 0 to the highest.
        path (str): The PNG to write.

    Returns:
        str: ``path``.
    """
    n = len(profiles)
    fig = Figure(layout='constrained', figsize=(4.2 * (n + 1), 3.6))
    axes = fig.subplots(1, n + 1, squeeze=False)[0]
    for m, (label, blocks) in enumerate(profiles.items()):
        color = PALETTE[m % len(PALETTE)]
        order = sorted(blocks)
        axes[0].plot(
            order, [blocks[b][-1] for b in order],
            'o-',
            color=color,
            label=label)
        ax = axes[m + 1]
        for i, b in enumerate(order):
            prof = np.asarray(blocks[b], dtype=float)
            freqs = np.linspace(0, 1, len(prof))
            shade = 0.25 + 0.75 * i / max(len(order) - 1, 1)
            ax.plot(
                freqs, prof, color=to_rgba(color, shade), label=f'block {b}')
        ax.set_title(label)
        ax.set_xlabel('frequency (×π)')
        ax.set_ylabel('Δ log amplitude')
        ax.legend(fontsize='x-small')
        ax.grid(alpha=0.3)
    axes[0].set_title('Highest frequency (π) vs. depth')
    axes[0].set_xlabel('block')
    axes[0].set_ylabel('Δ log amplitude at π')
    axes[0].xaxis.get_major_locator().set_params(integer=True)
    axes[0].legend(fontsize='small')
    axes[0].grid(alpha=0.3)
    return _save(fig, path)


def plot_attention_maps(rows: List[Tuple[str, np.ndarray, Tensor, Tensor]],
                        path: str) -> str:
    """One row per image: the image, the mean map and each head's map, drawn
    over the image.

    Args:
        rows (List[Tuple]): ``(title, image (H, W, 3) in [0, 1], mean map
            (h, w), head maps (heads, h, w))`` per row.
        path (str): The PNG to write.

    Returns:
        str: ``path``.
    """
    heads = max(r[3].shape[0] for r in rows)
    fig = Figure(
        layout='constrained', figsize=(1.3 * (heads + 2), 1.4 * len(rows)))
    axes = fig.subplots(len(rows), heads + 2, squeeze=False)
    for r, (title, image, mean_map, head_maps) in enumerate(rows):
        H, W = image.shape[:2]
        maps = [None, mean_map] + list(head_maps)
        names = ['image', 'mean'
                 ] + [f'head {h}' for h in range(len(head_maps))]
        for c, ax in enumerate(axes[r]):
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(maps):
                ax.axis('off')
                continue
            ax.imshow(image)
            if maps[c] is not None:
                ax.imshow(
                    np.asarray(maps[c], dtype=float),
                    cmap='inferno',
                    alpha=0.65,
                    extent=(0, W, H, 0),
                    interpolation='nearest')
            if r == 0:
                ax.set_title(names[c], fontsize=8)
        axes[r][0].set_ylabel(title, fontsize=7)
    fig.suptitle('Class-token attention in the last block', fontsize=9)
    return _save(fig, path)


def corrupted_view(image: np.ndarray, mask: np.ndarray,
                   noised: Optional[np.ndarray], patch_size: int,
                   tint_noised: bool) -> np.ndarray:
    """The encoder's input as a picture: masked patches gray, feature-noised
    patches tinted (pixel noise is already in ``image``).

    Args:
        image (np.ndarray): ``(H, W, 3)`` in ``[0, 1]``.
        mask (np.ndarray): ``(N,)`` bool, row-major over the patch grid.
        noised (np.ndarray, optional): ``(N,)`` bool.
        patch_size (int): The patch side.
        tint_noised (bool): Tint the noised patches.

    Returns:
        np.ndarray: ``(H, W, 3)``.
    """
    out = image.copy()
    H, W = image.shape[:2]
    p = patch_size
    cells = out.reshape(H // p, p, W // p, p, 3)

    def per_pixel(patches: np.ndarray) -> np.ndarray:
        return np.broadcast_to(
            patches.reshape(H // p, 1, W // p, 1), cells.shape[:4])

    cells[per_pixel(mask)] = MASK_GRAY
    if noised is not None and tint_noised:
        tinted = per_pixel(noised)
        cells[tinted] = 0.5 * cells[tinted] + 0.5 * np.array(NOISE_TINT)
    return cells.reshape(H, W, 3)


def plot_reconstructions(rows: List[Tuple[str, Dict[str,
                                                    Optional[np.ndarray]]]],
                         path: str) -> str:
    """One row per (model, image): original | input | MIM | denoise.

    Args:
        rows (List[Tuple]): ``(title, {column title: (H, W, 3) or None})``;
            None draws an empty, labelled cell.
        path (str): The PNG to write.

    Returns:
        str: ``path``.
    """
    columns = list(rows[0][1])
    fig = Figure(
        layout='constrained', figsize=(1.6 * len(columns), 1.6 * len(rows)))
    axes = fig.subplots(len(rows), len(columns), squeeze=False)
    for r, (title, panels) in enumerate(rows):
        for c, name in enumerate(columns):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if panels.get(name) is None:
                ax.text(
                    0.5,
                    0.5,
                    'n/a',
                    ha='center',
                    va='center',
                    transform=ax.transAxes,
                    color='gray')
                for spine in ax.spines.values():
                    spine.set_visible(False)
            else:
                ax.imshow(panels[name])
            if r == 0:
                ax.set_title(name, fontsize=8)
        axes[r][0].set_ylabel(title, fontsize=7)
    return _save(fig, path, dpi=80)  # photographs: keep the PNG small
