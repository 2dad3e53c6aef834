"""NAS-Bench-201 arch strings: ``|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|...|``.

Node ``j`` (1..3) is written ``|op~i|`` for each of its inputs ``i < j``; nodes are joined by
``+``. The same cell is a genotype of the ``nb201`` space with one ``normal`` cell.
"""
from __future__ import annotations

import re

from nas.errors import NasError
from nas.genotype.core import CellGenotype, Genotype
from nas.space import shorten

NB201_OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")


FORMAT = "'|op~0|+|op~0|op~1|+|op~0|op~1|op~2|' with ops " + ", ".join(NB201_OPS)
_EDGE = re.compile(r"([a-z0-9_]+)~([0-9]+)")


def from_nb201_string(arch: str) -> Genotype:
    if not isinstance(arch, str):
        raise NasError(f"a NAS-Bench-201 arch string is text, got {type(arch).__name__}")
    shown = shorten(arch)
    parts = arch.strip().split("+")
    if len(parts) != 3:
        raise NasError(f"not a NAS-Bench-201 arch string: {shown!r} has {len(parts)} nodes separated by '+', "
                       f"not 3; expected {FORMAT}")
    nodes = []
    try:
        for j, part in enumerate(parts, start=1):
            part = part.strip()
            if not (part.startswith("|") and part.endswith("|")):
                raise ValueError
            edges = []
            for item in part[1:-1].split("|"):
                match = _EDGE.fullmatch(item)  # a source is digits only: not 1.5, not -1
                if match is None:
                    raise ValueError
                edges.append((match[1], int(match[2])))
            if sorted(src for _, src in edges) != list(range(j)) or any(op not in NB201_OPS for op, _ in edges):
                raise ValueError
            nodes.append(tuple(sorted(edges, key=lambda e: e[1])))
    except ValueError:
        raise NasError(f"not a NAS-Bench-201 arch string: {shown!r}; expected {FORMAT}") from None
    return Genotype.from_cells("nb201", normal=CellGenotype(tuple(nodes), (3,)))


def to_nb201_string(genotype: Genotype) -> str:
    if genotype.space != "nb201":
        raise NasError(f"only nb201 genotypes have arch strings, not {genotype.space!r}")
    cell = genotype.cell("normal")
    return "+".join("|" + "|".join(f"{op}~{src}" for op, src in sorted(n, key=lambda e: e[1])) + "|"
                    for n in cell.nodes)
