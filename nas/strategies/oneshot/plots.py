"""Plots of a DARTS search: architecture-weight heatmaps (PNG files, TensorBoard images) and
their course over epochs."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from nas.io import atomic_save
from nas.space import SearchSpace


def edge_labels(space: SearchSpace) -> list[str]:
    """``"src>dst"`` for every supernet edge, node by node (the rows of an alpha tensor)."""
    return [f"{src}>{node}" for node in space.intermediate for src in range(node)]


def plot_alphas(weights: dict[str, np.ndarray], space: SearchSpace, path: str | Path, *, title: str | None = None,
                edge_weights: dict[str, np.ndarray] | None = None) -> Path:
    """Heatmaps of softmaxed architecture weights (:func:`alpha_figure`) as a PNG file."""
    path = Path(path)
    fig = alpha_figure(weights, space, title=title, edge_weights=edge_weights)
    try:
        atomic_save(path, lambda f: fig.savefig(f, format="png", dpi=110))
    finally:
        plt.close(fig)
    return path


def alpha_figure(weights: dict[str, np.ndarray], space: SearchSpace, *, title: str | None = None,
                 edge_weights: dict[str, np.ndarray] | None = None) -> Figure:
    """Heatmaps of softmaxed architecture weights: one subplot per cell type, ops x edges.

    The colours span each cell's own range of weights, so the early differences of a short
    search (all weights near ``1 / num_ops``) stay visible; white squares mark each edge's
    strongest op. With edge-normalisation weights, the column labels carry them (``0>2 0.41``).
    The caller closes the figure.
    """
    names = list(weights)
    num_edges, num_ops = np.asarray(weights[names[0]]).shape
    fig, axes = plt.subplots(1, len(names), figsize=(max(5.0, 0.42 * num_edges + 2.5) * len(names),
                                                     0.36 * num_ops + 1.8), squeeze=False)
    labels = edge_labels(space)
    for ax, name in zip(axes[0], names):
        w = np.asarray(weights[name], dtype=float).T
        low, high = float(w.min()), float(w.max())
        image = ax.imshow(w, cmap="viridis", aspect="auto", vmin=low, vmax=max(high, low + 1e-9))
        ax.set_yticks(range(num_ops), space.ops, fontsize=8)
        cols = labels if edge_weights is None else [
            f"{lab} {b:.2f}" for lab, b in zip(labels, np.asarray(edge_weights[name], dtype=float))]
        ax.set_xticks(range(num_edges), cols, rotation=90, fontsize=7)
        ax.set_xlabel("edge (source>node)")
        best = w.argmax(axis=0)
        ax.scatter(range(num_edges), best, marker="s", s=30, facecolors="none", edgecolors="white", linewidths=1)
        ax.set_title(f"{name} cell: softmax(alpha)", fontsize=10)
        fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_alpha_history(history: Sequence[dict[str, np.ndarray]], space: SearchSpace, path: str | Path) -> Path:
    """Mean softmaxed weight of every op over all edges, per epoch and cell type.

    A rising ``skip_connect`` line is the skip-connection collapse DARTS is known for.
    """
    path = Path(path)
    names = list(history[0])
    fig, axes = plt.subplots(1, len(names), figsize=(5.5 * len(names), 3.8), squeeze=False)
    epochs = np.arange(1, len(history) + 1)
    for ax, name in zip(axes[0], names):
        means = np.stack([np.asarray(h[name], dtype=float).mean(axis=0) for h in history])  # [epochs, ops]
        for i, op in enumerate(space.ops):
            ax.plot(epochs, means[:, i], marker="o", ms=3, label=op, ls="--" if op in ("none", "skip_connect") else "-")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("mean softmax(alpha) over edges")
        ax.set_title(f"{name} cell", fontsize=10)
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    try:
        atomic_save(path, lambda f: fig.savefig(f, format="png", dpi=110))
    finally:
        plt.close(fig)
    return path
