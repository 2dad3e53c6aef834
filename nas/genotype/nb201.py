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
    layers, out = _trace(genotype)
    if not out:
        return "zero"
    texts: dict[str, str] = {}

    def text(term: str) -> str:
        if term not in layers:  # the input x or a constant
            return term
        if term not in texts:
            op, inputs = layers[term]
            texts[term] = f"{op}({'+'.join(sorted(text(t) for t in inputs))})"
        return texts[term]

    return " ; ".join([*sorted(text(layer) for layer in layers), "out=" + "+".join(sorted(text(t) for t in out))])


def _trace(genotype: Genotype) -> tuple[dict[str, tuple[str, tuple[str, ...]]], list[str]]:
    """The layers a cell's output depends on, ``{layer: (op, the terms it sums)}``, and the
    output's terms; a term is ``x`` (the input), ``c`` (a constant) or a layer (one per edge)."""
    if genotype.space != "nb201":
        raise NasError(f"only nb201 genotypes have a NAS-Bench-201 function, not {genotype.space!r}")
    values: list[list[str]] = [["x"]]  # per node: the terms it sums, with repeats
    layers: dict[str, tuple[str, tuple[str, ...]]] = {}
    for j, node in enumerate(genotype.cell("normal").nodes, start=1):
        value: list[str] = []
        for op, src in node:
            inputs = values[src]
            if op == "none" or (not inputs and op in _PASS_ZERO):
                continue
            if op == "skip_connect":
                value.extend(inputs)
            elif all(term == CONSTANT for term in inputs):  # zeros or a constant in: a constant out
                value.append(CONSTANT)
            else:
                layer = f"{op}@{src}-{j}"
                layers[layer] = (op, tuple(inputs))
                value.append(layer)
        if value.count(CONSTANT) > 1:  # constants add up to one constant
            value = [term for term in value if term != CONSTANT] + [CONSTANT]
        values.append(value)
    out = values[-1]
    live: set[str] = set()
    todo = [term for term in out if term in layers]
    while todo:
        layer = todo.pop()
        if layer not in live:
            live.add(layer)
            todo.extend(term for term in layers[layer][1] if term in layers)
    return {layer: layers[layer] for layer in live}, out


def nb201_graph(genotype: Genotype):
    """The layer graph of a cell (a ``networkx.DiGraph``): the input ``x``, one vertex per layer
    that reaches the output (attribute ``op``), a constant ``c`` if any, and ``out``; an arc
    from each term a layer (or the output) sums to it, ``n`` times for a term summed ``n`` times.
    Isomorphic graphs (matching ``op`` and ``n``) compute the same function."""
    import networkx as nx

    layers, out = _trace(genotype)
    graph = nx.DiGraph()
    sums = {**{layer: inputs for layer, (_, inputs) in layers.items()}, "out": tuple(out)}
    for vertex, terms in sums.items():
        graph.add_node(vertex, op=layers[vertex][0] if vertex in layers else "out")
        for term in terms:
            if term not in layers:
                graph.add_node(term, op=term)
            n = graph.edges[term, vertex]["n"] + 1 if graph.has_edge(term, vertex) else 1
            graph.add_edge(term, vertex, n=n)
    return graph
