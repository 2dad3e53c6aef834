"""From architecture weights to a discrete genotype, and short text forms of genotypes.

* Dense spaces (``edges_per_node: all``, NAS-Bench-201): every edge stays and takes its
  strongest op, ``none`` included (a ``none`` edge is a removed edge).
* Top-k spaces (DARTS, lecture): each node keeps the ``k = edges_per_node`` incoming edges
  whose strongest non-``none`` op weighs most (times the edge-normalisation weight when
  PC-DARTS' betas are used), each with that op, as in the DARTS paper.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from nas.genotype import CellGenotype, Genotype
from nas.space import SearchSpace

_SHORT_NAMES = (("inverted_residual_", "mb_"), ("skip_connect", "skip"), ("nor_conv", "conv"), ("_conv", ""),
                ("_pool", ""), ("grouped", "grp"), ("squeeze_excite", "se"), ("res_bottleneck", "res_bn"))


def derive_cell(space: SearchSpace, weights: torch.Tensor, edge_weights: torch.Tensor | None = None) -> CellGenotype:
    """One cell from its softmaxed op weights ``[num_edges, num_ops]`` (edges ordered node by
    node, sources ascending) and optional edge weights ``[num_edges]``."""
    ops = space.ops
    real = [i for i, op in enumerate(ops) if op != "none"] or list(range(len(ops)))
    nodes = []
    start = 0
    for node in space.intermediate:
        rows = weights[start:start + node].detach().float().cpu()
        if space.dense:
            nodes.append(tuple((ops[int(row.argmax())], src) for src, row in enumerate(rows)))
        else:
            strength, best = rows[:, real].max(dim=1)
            if edge_weights is not None:
                strength = strength * edge_weights[start:start + node].detach().float().cpu()
            # Stable sort: among equal strengths the lower source wins, so ties are reproducible.
            order = sorted(range(node), key=lambda src: -float(strength[src]))
            nodes.append(tuple((ops[real[int(best[src])]], src) for src in order[:space.edges_per_node]))
        start += node
    return CellGenotype(nodes=tuple(nodes), concat=space.default_concat())


def derive_genotype(space: SearchSpace, weights: dict[str, torch.Tensor],
                    edge_weights: dict[str, torch.Tensor] | None = None) -> Genotype:
    """The discrete genotype of softmaxed op weights per cell type; valid for ``space``.

    >>> from nas.space import load_space
    >>> space = load_space("nb201")
    >>> w = torch.zeros(6, 5); w[:, 3] = 1  # nor_conv_3x3 strongest everywhere
    >>> derive_genotype(space, {"normal": w}).cell("normal").nodes[0]
    (('nor_conv_3x3', 0),)
    """
    cells = {t: derive_cell(space, weights[t], None if edge_weights is None else edge_weights[t])
             for t in space.cell_types}
    return Genotype.from_cells(space.name, **cells).validate(space).with_space(space)


def short_op(op: str) -> str:
    """``sep_conv_3x3`` -> ``sep3x3``, ``skip_connect`` -> ``skip``, ``max_pool_3x3`` -> ``max3x3``."""
    for long, short in _SHORT_NAMES:
        op = op.replace(long, short)
    return op.replace("_", "")


def short_genotype(genotype: Genotype) -> str:
    """One line: per cell type, nodes separated by ``/``, edges as ``op~source``.

    >>> from nas.genotype import get_reference
    >>> short_genotype(get_reference("NB201_RESNET"))
    'normal: conv3x3~0 / none~0 conv3x3~1 / skip~0 none~1 skip~2'
    """
    parts = []
    for name, cell in genotype.cells:
        nodes = " / ".join(" ".join(f"{short_op(op)}~{src}" for op, src in edges) for edges in cell.nodes)
        parts.append(f"{name}: {nodes}")
    return "; ".join(parts)


def count_ops(genotype: Genotype, op: str, cell: str = "normal") -> int:
    """How often ``op`` appears in one cell (DARTS+ stops a search on too many ``skip_connect``)."""
    return sum(1 for edges in genotype.cell(cell).nodes for name, _ in edges if name == op)


@dataclass(frozen=True)
class Decisiveness:
    """How decisive architecture weights are for the genotype derived from them.

    ``decisive`` of the ``edges`` derived edges (all cell types) have a chosen op whose softmax
    weight is at least ``threshold`` (twice the uniform weight ``1 / number of ops``: 0.25 for
    8 ops); ``parameter_free`` of the normal cell's ``normal_ops`` ops have no weights. A
    search has converged when at least 80% of the edges are decisive and at most half of the
    normal cell is parameter-free.
    """

    edges: int
    decisive: int
    threshold: float
    parameter_free: int
    normal_ops: int
    min_share: float = 0.8

    @property
    def share(self) -> float:
        return self.decisive / self.edges if self.edges else 0.0

    @property
    def converged(self) -> bool:
        return self.share >= self.min_share and 2 * self.parameter_free <= self.normal_ops

    def verdict(self) -> str:
        """One line for the end of a search."""
        head = "decisive" if self.converged else "NOT decisive"
        line = (f"architecture weights {head}: the chosen op holds >= {self.threshold:.3g} (2x uniform) on "
                f"{self.decisive} of {self.edges} derived edges ({self.share:.0%}, goal {self.min_share:.0%}); "
                f"{self.parameter_free} of {self.normal_ops} normal-cell ops parameter-free")
        if not self.converged:
            line += " - search longer (--epochs) or raise --arch-lr"
        return line


def decisiveness(space: SearchSpace, weights: dict[str, torch.Tensor], genotype: Genotype) -> Decisiveness:
    """:class:`Decisiveness` of softmaxed op weights per cell type and their derived genotype.

    >>> from nas.space import load_space
    >>> space = load_space("nb201")
    >>> w = torch.full((6, 5), 0.1); w[:, 3] = 0.6  # nor_conv_3x3 holds 0.6 on every edge
    >>> d = decisiveness(space, {"normal": w}, derive_genotype(space, {"normal": w}))
    >>> d.decisive, d.edges, d.threshold, d.converged
    (6, 6, 0.4, True)
    """
    from nas.ops.registry import get_op

    threshold = 2.0 / len(space.ops)
    edges = decisive = 0
    for cell_type, cell in genotype.cells:
        rows = weights[cell_type].detach().float().cpu()
        start = 0
        for node, chosen in zip(space.intermediate, cell.nodes):
            for op, src in chosen:
                edges += 1
                decisive += float(rows[start + src, space.ops.index(op)]) >= threshold
            start += node
    normal = [op for edges_ in genotype.cell(genotype.cell_types[0]).nodes for op, _ in edges_ if op != "none"]
    free = sum(1 for op in normal if not get_op(op).parametric)
    return Decisiveness(edges=edges, decisive=int(decisive), threshold=threshold, parameter_free=free,
                        normal_ops=len(normal))
