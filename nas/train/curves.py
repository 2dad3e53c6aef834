"""Learning curves of a training run as one PNG: losses on the left, validation metrics on the right."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

from nas.io import atomic_save


def plot_curves(records: list[dict[str, Any]], path: str | Path, *, losses: Sequence[str],
                metrics: Sequence[str], percent: bool = False, metric_label: str = "validation",
                title: str = "") -> Path:
    """Draw the ``losses`` keys (left) and ``metrics`` keys (right, in % when ``percent``) of
    ``records`` against their epoch; keys a record lacks are left out."""
    path = Path(path)
    epochs = [r["epoch"] for r in records]
    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, keys, style, label in ((ax_loss, losses, "-o", "loss"),
                                   (ax_metric, metrics, "-s", metric_label + (" (%)" if percent else ""))):
        for key in keys:
            values = [r.get(key) for r in records]
            if all(v is None for v in values):
                continue
            scale = 100 if percent and ax is ax_metric else 1
            ax.plot(epochs, [None if v is None else v * scale for v in values], style, ms=3, label=key)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    try:  # a kill mid-plot never leaves a half-written PNG
        atomic_save(path, lambda f: fig.savefig(f, format="png", dpi=100))
    finally:
        plt.close(fig)
    return path
