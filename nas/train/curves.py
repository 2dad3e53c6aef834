"""Learning curves of a training run as one PNG: loss and accuracy per epoch, train and val."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402


def plot_curves(records: list[dict[str, Any]], path: str | Path, *, title: str = "") -> Path:
    """Draw ``train_loss``/``val_loss`` and ``train_acc``/``val_acc`` of ``records`` against epoch."""
    path = Path(path)
    epochs = [r["epoch"] for r in records]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, metric, label in ((ax_loss, "loss", "cross-entropy loss"), (ax_acc, "acc", "accuracy")):
        for split, style in (("train", "-o"), ("val", "-s")):
            values = [r.get(f"{split}_{metric}") for r in records]
            ax.plot(epochs, [v * 100 if metric == "acc" else v for v in values], style, ms=3, label=split)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(label + (" (%)" if metric == "acc" else ""))
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)  # an interrupted plot never leaves a half-written PNG
    return path
