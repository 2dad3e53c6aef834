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


# ops that compute nothing from a zero input; a convolution of zeros is a learned constant
# (ReLU -> conv -> BatchNorm leaves BatchNorm's shift)
_PASS_ZERO = ("skip_connect", "avg_pool_3x3")
CONSTANT = "c"


def nb201_function(genotype: Genotype) -> str:
    """What a NAS-Bench-201 cell computes, as text: two cells with the same text compute the
    same function (up to their weights), so a search need not evaluate both.

    Edges that cannot change the output are dropped first: ``none`` edges, edges whose source
    node always holds zeros (a pooling or skip of zeros is zeros; a convolution of zeros is a
    learned constant, kept as ``c``), and ops whose result reaches no output. A skip passes its
    node's terms on, and a node is the sum (order free) of its terms. Each remaining op is one
    layer with weights of its own, so the text lists every op (``op(input)``) once per layer,
    sorted, and then the output's sum: two cells that apply the same expression through one
    shared layer or through two layers of their own get different texts.

    The 15,625 cells make 5,605 functions; NAS-Bench-201's own unique strings make 6,466, as
    they keep zero terms (``#``) and ops of zeros apart. :func:`nb201_graph` gives the layer
    graph: two cells have the same text exactly when their graphs are isomorphic (checked for
    all cells in ``tests/test_genotype.py``).
    """
    terms, layers = _terms(genotype)
    if not terms:
        return "zero"
    return " ; ".join([*sorted(layers), "out=" + "+".join(sorted(terms))])


def _terms(genotype: Genotype) -> tuple[tuple[str, ...], list[str]]:
    """The output's terms (texts) and the texts of the layers it depends on."""
    if genotype.space != "nb201":
        raise NasError(f"only nb201 genotypes have a NAS-Bench-201 function, not {genotype.space!r}")
    nodes = genotype.cell("normal").nodes
    # per node: its terms, each a (text, layer ids it depends on) pair; node 0 is the input
    values: list[list[tuple[str, frozenset[int]]]] = [[("x", frozenset())]]
    texts: dict[int, str] = {}
    for j, node in enumerate(nodes, start=1):
        value: list[tuple[str, frozenset[int]]] = []
        for op, src in node:
            inputs = values[src]
            if op == "none" or (not inputs and op in _PASS_ZERO):
                continue
            if op == "skip_connect":
                value.extend(inputs)
            elif not inputs or all(text == CONSTANT for text, _ in inputs):
                value.append((CONSTANT, frozenset()))
            else:
                layer = j * 10 + src  # one layer per edge
                text = f"{op}({'+'.join(sorted(t for t, _ in inputs))})"
                texts[layer] = text
                value.append((text, frozenset().union(*(deps for _, deps in inputs), {layer})))
        if sum(text == CONSTANT for text, _ in value) > 1:  # constants add up to one constant
            value = [t for t in value if t[0] != CONSTANT] + [(CONSTANT, frozenset())]
        values.append(value)
    out = values[-1]
    live = frozenset().union(*(deps for _, deps in out)) if out else frozenset()
    return tuple(text for text, _ in out), [texts[layer] for layer in live]


def nb201_graph(genotype: Genotype):
    """The layer graph of a cell (a ``networkx.DiGraph``): the input ``x``, one vertex per layer
    that reaches the output (attribute ``op``), a constant ``c`` if any, and ``out``; an arc
    from each term a layer (or the output) sums to it. Isomorphic graphs (matching ``op``)
    compute the same function."""
    import networkx as nx

    if genotype.space != "nb201":
        raise NasError(f"only nb201 genotypes have a NAS-Bench-201 graph, not {genotype.space!r}")
    graph = nx.DiGraph()
    graph.add_node("x", op="x")
    # per node: the vertices it sums (with multiplicity)
    values: list[list[str]] = [["x"]]
    for j, node in enumerate(genotype.cell("normal").nodes, start=1):
        value: list[str] = []
        for op, src in node:
            inputs = values[src]
            if op == "none" or (not inputs and op in _PASS_ZERO):
                continue
            if op == "skip_connect":
                value.extend(inputs)
            elif not inputs or all(v == CONSTANT for v in inputs):
                value.append(CONSTANT)
            else:
                vertex = f"{op}@{src}-{j}"
                graph.add_node(vertex, op=op)
                for v in inputs:
                    graph.add_node(v, op=v if v in ("x", CONSTANT) else graph.nodes[v]["op"])
                    weight = graph.edges[v, vertex]["n"] + 1 if graph.has_edge(v, vertex) else 1
                    graph.add_edge(v, vertex, n=weight)
                value.append(vertex)
        if value.count(CONSTANT) > 1:
            value = [v for v in value if v != CONSTANT] + [CONSTANT]
        values.append(value)
    graph.add_node("out", op="out")
    for v in values[-1]:
        graph.add_node(v, op=v if v in ("x", CONSTANT) else graph.nodes[v]["op"])
        weight = graph.edges[v, "out"]["n"] + 1 if graph.has_edge(v, "out") else 1
        graph.add_edge(v, "out", n=weight)
    live = nx.ancestors(graph, "out") | {"out"}
    graph.remove_nodes_from([v for v in list(graph) if v not in live])
    return graph
