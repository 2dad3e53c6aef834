"""Plots as PNG files: cell diagrams of genotypes (more plots live next to what they show)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import networkx as nx  # noqa: E402
from matplotlib.backend_bases import FigureCanvasBase

from nas.errors import NasError
from nas.genotype import Genotype  # noqa: E402
from nas.io import atomic_save
from nas.space import SearchSpace, load_space  # noqa: E402

_INPUT_NAMES = {1: ["c_{k-1}"], 2: ["c_{k-2}", "c_{k-1}"]}


def _draw_cell(ax, genotype: Genotype, cell: str, inputs: int) -> None:
    g = genotype.graph(cell, inputs)
    g.remove_edges_from([(s, d) for s, d, ops in g.edges(data="ops") if ops == ["none"]])
    layers = {}
    for node in nx.topological_sort(g):
        preds = list(g.predecessors(node))
        layers[node] = 0 if not preds else 1 + max(layers[p] for p in preds)
    for i in range(inputs):
        layers[i] = 0
    nx.set_node_attributes(g, layers, "layer")
    pos = nx.multipartite_layout(g, subset_key="layer")
    labels = {n: (f"${_INPUT_NAMES[inputs][n]}$" if isinstance(n, int) and n < inputs else
                  ("out" if n == "out" else str(n))) for n in g.nodes}
    colors = ["#9ecae1" if (isinstance(n, int) and n < inputs) else "#fdae6b" if n == "out" else "#e5f5e0"
              for n in g.nodes]
    nx.draw_networkx_nodes(g, pos, ax=ax, node_color=colors, node_size=900, edgecolors="black")
    nx.draw_networkx_labels(g, pos, labels, ax=ax, font_size=9)
    nx.draw_networkx_edges(g, pos, ax=ax, arrows=True, arrowsize=12, node_size=900,
                           connectionstyle="arc3,rad=0.08")
    edge_labels = {(s, d): "\n".join(ops) for s, d, ops in g.edges(data="ops") if ops != ["concat"]}
    nx.draw_networkx_edge_labels(g, pos, edge_labels, ax=ax, font_size=7, label_pos=0.45,
                                 bbox={"boxstyle": "round", "fc": "white", "alpha": 0.8, "lw": 0})
    ax.set_title(f"{cell} cell", fontsize=11)
    ax.axis("off")


def _draw_chain(ax, genotype: Genotype, space: SearchSpace) -> None:
    y = 0
    for i, (blocks, stage) in enumerate(zip(genotype.stages, space.stages)):
        for j, op in enumerate(blocks):
            short = op.replace("inverted_residual_", "MB ").replace("_", " ")
            stride = stage.stride if j == 0 else 1
            ax.add_patch(plt.Rectangle((0, -y - 0.8), 4, 0.8, fc="#e5f5e0" if "se" not in op.split("_") else "#fdd0a2",
                                       ec="black"))
            ax.text(2, -y - 0.4, f"{short}  C={stage.channels}" + (" /2" if stride == 2 else ""),
                    ha="center", va="center", fontsize=8)
            y += 1
        ax.axhline(-y + 0.1, color="grey", lw=0.5, ls="--")
    ax.set_xlim(-0.5, 4.5)
    ax.set_ylim(-y - 0.5, 0.5)
    ax.set_title(f"{genotype.space}: {sum(len(s) for s in genotype.stages)} blocks", fontsize=11)
    ax.axis("off")


def check_plot(path: str | Path, *, overwrite: bool = False, option: str = "--plot") -> Path:
    """Refuse ``path`` as the file of a new plot before anything is drawn: a folder, a file in a
    folder that does not exist, a name without an image format matplotlib writes (``.png``,
    ``.svg``, ``.pdf``, ...), or a file that exists (unless ``overwrite``). Returns it as a Path."""
    path = Path(path)
    formats = FigureCanvasBase.get_supported_filetypes()
    if path.is_dir():
        raise NasError(f"{option} {path} is a folder; name the image file to write, such as {path / 'cell.png'}")
    if path.suffix.lower().lstrip(".") not in formats:
        raise NasError(f"{option} {path}: name a .png file (or .svg, .pdf, .jpg: a format that matplotlib writes)")
    folder = path.parent
    if not folder.is_dir():
        what = "is a file" if folder.exists() else "does not exist"
        raise NasError(f"{option} {path}: the folder {folder} {what}; create the folder or choose another {option}")
    if path.exists() and not overwrite:
        raise NasError(f"{option} {path} already exists; choose another file, or pass --overwrite to replace it")
    return path


def plot_genotype(genotype: Genotype, path: str | Path, space: SearchSpace | str | None = None,
                  title: str | None = None) -> Path:
    """Draw every cell of ``genotype`` (or its block chain) into one image file (PNG unless the
    name says another format); the file appears whole or not at all."""
    space = load_space(space or genotype)
    path = Path(path)
    image_format = path.suffix.lower().lstrip(".") or "png"
    if space.kind == "chain":
        fig, ax = plt.subplots(figsize=(4.5, 0.35 * sum(len(s) for s in genotype.stages) + 1.2))
        _draw_chain(ax, genotype, space)
    else:
        fig, axes = plt.subplots(1, len(genotype.cells), figsize=(6 * len(genotype.cells), 4.5), squeeze=False)
        for ax, (name, _) in zip(axes[0], genotype.cells):
            _draw_cell(ax, genotype, name, space.inputs)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    try:
        atomic_save(path, lambda f: fig.savefig(f, format=image_format, dpi=110))
    finally:
        plt.close(fig)
    return path
