"""Seeded random sampling and single mutations of genotypes, for any space."""
from __future__ import annotations

import random
from dataclasses import replace

from nas.genotype.core import CellGenotype, Genotype
from nas.space import SearchSpace, load_space


def _rng(seed: int | random.Random | None) -> random.Random:
    return seed if isinstance(seed, random.Random) else random.Random(seed)


def edge_ops(space: SearchSpace) -> tuple[str, ...]:
    """Ops a sampled edge may take: ``none`` only where an edge must exist anyway (dense cells)."""
    if space.dense:
        return space.ops
    return tuple(op for op in space.ops if op != "none") or space.ops


def random_genotype(space: SearchSpace | str, seed: int | random.Random | None = None) -> Genotype:
    space = load_space(space)
    rng = _rng(seed)
    if space.kind == "chain":
        stages = tuple(tuple(rng.choice(space.ops) for _ in range(rng.choice(st.depth))) for st in space.stages)
        return Genotype(space.name, stages=stages).with_space(space)
    ops = edge_ops(space)
    cells = []
    for cell_type in space.cell_types:
        nodes = []
        for node in space.intermediate:
            srcs = range(node) if space.dense else sorted(rng.sample(range(node), space.num_edges(node)))
            nodes.append(tuple((rng.choice(ops), src) for src in srcs))
        cells.append((cell_type, CellGenotype(tuple(nodes), space.default_concat())))
    return Genotype(space.name, tuple(cells)).with_space(space)


def mutate(genotype: Genotype, space: SearchSpace | str, seed: int | random.Random | None = None) -> Genotype:
    """One random change that stays inside the space: an edge's op or input, or a block / depth."""
    space = load_space(space)
    rng = _rng(seed)
    if space.kind == "chain":
        return _mutate_chain(genotype, space, rng)
    ops = edge_ops(space)
    ci = rng.randrange(len(genotype.cells))
    name, cell = genotype.cells[ci]
    ni = rng.randrange(len(cell.nodes))
    node = space.inputs + ni
    edges = list(cell.nodes[ni])
    ei = rng.randrange(len(edges))
    op, src = edges[ei]
    free_srcs = [s for s in range(node) if s not in {e[1] for e in edges}]
    if not space.dense and free_srcs and (len(ops) == 1 or rng.random() < 0.5):
        edges[ei] = (op, rng.choice(free_srcs))
        edges.sort(key=lambda e: e[1])
    elif len(ops) > 1:
        edges[ei] = (rng.choice([o for o in ops if o != op]), src)
    nodes = cell.nodes[:ni] + (tuple(edges),) + cell.nodes[ni + 1:]
    cells = genotype.cells[:ci] + ((name, CellGenotype(nodes, cell.concat)),) + genotype.cells[ci + 1:]
    return replace(genotype, cells=cells).with_space(space)


def _mutate_chain(genotype: Genotype, space: SearchSpace, rng: random.Random) -> Genotype:
    stages = [list(s) for s in genotype.stages]
    si = rng.randrange(len(stages))
    depths = [d for d in space.stages[si].depth if d != len(stages[si])]
    if depths and rng.random() < 0.3:
        depth = rng.choice(depths)
        stages[si] = (stages[si] + [rng.choice(space.ops) for _ in range(depth)])[:depth]
    else:
        bi = rng.randrange(len(stages[si]))
        stages[si][bi] = rng.choice([o for o in space.ops if o != stages[si][bi]] or space.ops)
    return replace(genotype, stages=tuple(tuple(s) for s in stages)).with_space(space)
