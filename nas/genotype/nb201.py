"""NAS-Bench-201 arch strings: ``|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|...|``.

Node ``j`` (1..3) is written ``|op~i|`` for each of its inputs ``i < j``; nodes are joined by
``+``. The same cell is a genotype of the ``nb201`` space with one ``normal`` cell.
"""
from __future__ import annotations

from nas.errors import NasError
from nas.genotype.core import CellGenotype, Genotype

NB201_OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")


def from_nb201_string(arch: str) -> Genotype:
    nodes = []
    try:
        for j, part in enumerate(arch.strip().split("+"), start=1):
            items = [x for x in part.strip().split("|") if x]
            edges = []
            for item in items:
                op, src = item.split("~")
                edges.append((op, int(src)))
            if sorted(src for _, src in edges) != list(range(j)) or any(op not in NB201_OPS for op, _ in edges):
                raise ValueError
            nodes.append(tuple(sorted(edges, key=lambda e: e[1])))
    except ValueError:
        raise NasError(f"not a NAS-Bench-201 arch string: {arch!r}; expected "
                       "'|op~0|+|op~0|op~1|+|op~0|op~1|op~2|' with ops " + ", ".join(NB201_OPS)) from None
    if len(nodes) != 3:
        raise NasError(f"a NAS-Bench-201 arch string has 3 nodes separated by '+', got {len(nodes)}: {arch!r}")
    return Genotype.from_cells("nb201", normal=CellGenotype(tuple(nodes), (3,)))


def to_nb201_string(genotype: Genotype) -> str:
    if genotype.space != "nb201":
        raise NasError(f"only nb201 genotypes have arch strings, not {genotype.space!r}")
    cell = genotype.cell("normal")
    return "+".join("|" + "|".join(f"{op}~{src}" for op, src in sorted(n, key=lambda e: e[1])) + "|"
                    for n in cell.nodes)
