"""The genotype: a frozen description of one discrete architecture, the only exchange format
between strategies, builders and export.

A cell genotype lists, for every intermediate node, its incoming edges as ``(op, source)``
pairs; node ids ``0 .. inputs-1`` are the cell inputs. A chain genotype lists, per stage, the
op name of every block.

A genotype names its space. A genotype of a user's own space (not one shipped with nas) also
carries the space's definition, written into ``genotype.json``, so that the file alone
rebuilds the network: ``load_space(genotype)`` returns that definition, else the shipped
space of that name.
"""
from __future__ import annotations

import difflib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import networkx as nx

from nas.errors import NasError
from nas.io import atomic_write
from nas.space import (
    SearchSpace,
    load_space,
    read_user_text,
    refuse_unknown_keys,
    shorten,
    show,
    space_from_record,
    space_record,
    type_name,
)

Edge = tuple[str, int]

GENOTYPE_KEYS = ("space", "space_definition", "cells", "stages")
CELL_KEYS = ("nodes", "concat")
GENOTYPE_HINT = ('expected JSON like {"space": "darts", "cells": {"normal": {"nodes": [[["sep_conv_3x3", 0], '
                 '["sep_conv_3x3", 1]], ...], "concat": [2, 3, 4, 5]}, ...}}, as nas writes to genotype.json')


def _index(value: Any, where: str, source: str) -> int:
    """A node index as written in a genotype file: an int, never a bool or a float (1.5 is not node 1)."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise NasError(f"{source}: {where} must be a node index (an integer), got {show(value)}")
    if value < 0:
        raise NasError(f"{source}: {where} must be a node index (0 or more), got {value}")
    return value


def _list(value: Any, where: str, source: str, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise NasError(f"{source}: {where} must be a list of {what}, got {type_name(value)}; {GENOTYPE_HINT}")
    return value


def _parse_cells(raw: Any, source: str) -> tuple[tuple[str, CellGenotype], ...]:
    if not isinstance(raw, dict) or not raw:
        raise NasError(f"{source}: 'cells' must map cell types (normal, reduction) to cells, got {show(raw)}; "
                       f"{GENOTYPE_HINT}")
    cells = []
    for name, cell in raw.items():
        where = f"cells.{shorten(str(name), 30)}"
        if not isinstance(cell, dict):
            raise NasError(f"{source}: {where} must be a mapping with 'nodes' and 'concat', got {type_name(cell)}")
        refuse_unknown_keys(cell, CELL_KEYS, source, f"{where}.")
        if "nodes" not in cell or "concat" not in cell:
            raise NasError(f"{source}: {where} needs 'nodes' and 'concat'; {GENOTYPE_HINT}")
        nodes = []
        for i, node in enumerate(_list(cell["nodes"], f"{where}.nodes", source, "nodes")):
            edges = []
            for j, edge in enumerate(_list(node, f"{where}.nodes[{i}]", source, "[op, source] edges")):
                at = f"{where}.nodes[{i}][{j}]"
                if not isinstance(edge, list) or len(edge) != 2:
                    raise NasError(f"{source}: {at} must be an edge [op, source node], got {show(edge)}")
                op, src = edge
                if not isinstance(op, str) or not op:
                    raise NasError(f"{source}: {at}: the op must be an op name (a string), got {show(op)}")
                edges.append((op, _index(src, f"{at}: the source node", source)))
            nodes.append(tuple(edges))
        concat = tuple(_index(n, f"{where}.concat[{k}]", source)
                       for k, n in enumerate(_list(cell["concat"], f"{where}.concat", source, "node indices")))
        cells.append((str(name), CellGenotype(tuple(nodes), concat)))
    return tuple(cells)


def _parse_stages(raw: Any, source: str) -> tuple[tuple[str, ...], ...]:
    stages = []
    for i, stage in enumerate(_list(raw, "'stages'", source, "stages")):
        blocks = _list(stage, f"stages[{i}]", source, "block op names")
        for j, op in enumerate(blocks):
            if not isinstance(op, str) or not op:
                raise NasError(f"{source}: stages[{i}][{j}] must be a block op name (a string), got {show(op)}")
        stages.append(tuple(blocks))
    if not stages:
        raise NasError(f"{source}: 'stages' is empty; a chain genotype lists the block ops of every stage")
    return tuple(stages)


@dataclass(frozen=True)
class CellGenotype:
    nodes: tuple[tuple[Edge, ...], ...]  # per intermediate node: its incoming edges
    concat: tuple[int, ...]  # node ids whose outputs form the cell output

    def edges(self, inputs: int) -> Iterator[tuple[int, int, str]]:
        """Yield ``(source, target, op)`` for every edge, targets numbered after the inputs."""
        for i, node_edges in enumerate(self.nodes):
            for op, src in node_edges:
                yield src, inputs + i, op

    def to_dict(self) -> dict[str, Any]:
        return {"nodes": [[[op, src] for op, src in n] for n in self.nodes], "concat": list(self.concat)}


@dataclass(frozen=True)
class Genotype:
    space: str
    cells: tuple[tuple[str, CellGenotype], ...] = ()  # (cell type, cell), in the space's order
    stages: tuple[tuple[str, ...], ...] = ()  # chain spaces: op name per block, per stage
    # the space itself when it is not a shipped one; not part of the architecture's identity
    space_definition: SearchSpace | None = field(default=None, compare=False, repr=False)
    # the file (or text) it was read from, for messages; not part of its identity either
    source: str = field(default="", compare=False, repr=False)

    @staticmethod
    def from_cells(space: str, **cells: CellGenotype) -> Genotype:
        return Genotype(space=space, cells=tuple(cells.items()))

    def with_space(self, space: SearchSpace) -> Genotype:
        """This genotype carrying ``space``'s definition, unless it is a shipped space (whose name
        is enough). Whatever makes a genotype from a space calls this."""
        if space.name != self.space:
            raise NasError(f"genotype is for space {self.space!r}, not {space.name!r}")
        return replace(self, space_definition=None if space.shipped else space)

    def cell(self, name: str) -> CellGenotype:
        for key, cell in self.cells:
            if key == name:
                return cell
        raise NasError(f"genotype of space {self.space!r} has no {name!r} cell")

    @property
    def cell_types(self) -> tuple[str, ...]:
        return tuple(k for k, _ in self.cells)

    # -- JSON ---------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"space": self.space}
        if self.space_definition is not None:
            data.update(space_record(self.space_definition))
        if self.cells:
            data["cells"] = {k: c.to_dict() for k, c in self.cells}
        if self.stages:
            data["stages"] = [list(s) for s in self.stages]
        return data

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @staticmethod
    def from_dict(data: Any, source: str = "genotype") -> Genotype:
        """A genotype from :meth:`to_dict` output (a genotype.json), every field checked by type:
        a mistake is a :class:`NasError` naming ``source`` and the field."""
        if not isinstance(data, dict):
            raise NasError(f"{source}: not a genotype (a JSON object), got {type_name(data)}; {GENOTYPE_HINT}")
        refuse_unknown_keys(data, GENOTYPE_KEYS, source)
        space = data.get("space")
        if not isinstance(space, str) or not space:
            raise NasError(f"{source}: 'space' must be the name of the genotype's space (a string), "
                           f"got {show(space)}; {GENOTYPE_HINT}")
        raw_cells, raw_stages = data.get("cells"), data.get("stages")
        if (raw_cells is None) == (raw_stages is None):
            raise NasError(f"{source}: a genotype has 'cells' (a cell space) or 'stages' (a chain space), "
                           f"{'not both' if raw_cells is not None else 'but this one has neither'}; {GENOTYPE_HINT}")
        cells = _parse_cells(raw_cells, source) if raw_cells is not None else ()
        stages = _parse_stages(raw_stages, source) if raw_stages is not None else ()
        definition = space_from_record(data, source) if data.get("space_definition") is not None else None
        return Genotype(space=space, cells=cells, stages=stages, space_definition=definition, source=source)

    @staticmethod
    def from_json(text: str, source: str = "genotype") -> Genotype:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise NasError(f"{source}: not valid JSON ({exc.msg} at line {exc.lineno}); "
                           "pass a genotype.json written by nas or a reference name") from None
        except RecursionError:
            raise NasError(f"{source}: nested too deeply to be a genotype; {GENOTYPE_HINT}") from None
        except ValueError as exc:  # such as an integer of more digits than Python converts
            raise NasError(f"{source}: not valid JSON ({shorten(str(exc), 60)}); {GENOTYPE_HINT}") from None
        return Genotype.from_dict(data, source)

    def save(self, path: str | Path) -> Path:
        return atomic_write(path, self.to_json() + "\n")  # a kill never leaves half a genotype

    @staticmethod
    def load(path: str | Path) -> Genotype:
        path = Path(path)
        if not path.is_file():
            raise NasError(f"genotype file {shorten(str(path))} not found; pass a genotype.json or a reference name "
                           "(`nas build --list-genotypes`)")
        text = read_user_text(path, "genotype file", "pass a genotype.json written by nas or a reference name")
        return Genotype.from_json(text, source=str(path))

    # -- graph view ---------------------------------------------------------------------------
    def graph(self, cell: str, inputs: int | None = None) -> nx.DiGraph:
        """A DiGraph of one cell: nodes are ids (plus ``"out"``), edges carry ``op``.

        Parallel edges between the same two nodes (allowed in a genotype) are merged into one
        graph edge whose ``ops`` attribute lists them.
        """
        c = self.cell(cell)
        if inputs is None:
            inputs = _infer_inputs(c)
        g = nx.DiGraph()
        g.add_nodes_from(range(inputs), kind="input")
        g.add_nodes_from(range(inputs, inputs + len(c.nodes)), kind="node")
        g.add_node("out", kind="output")
        for src, dst, op in c.edges(inputs):
            if g.has_edge(src, dst):
                g[src][dst]["ops"].append(op)
            else:
                g.add_edge(src, dst, ops=[op])
        for n in c.concat:
            g.add_edge(n, "out", ops=["concat"])
        return g

    def validate(self, space: SearchSpace | str) -> Genotype:
        """Raise :class:`NasError` unless this genotype belongs to ``space``; returns self."""
        space = load_space(space)
        try:
            if self.space != space.name:
                raise NasError(f"genotype is for space {self.space!r}, not {space.name!r}; "
                               f"pass --space {self.space} or a genotype of {space.name!r}")
            if space.kind == "chain":
                _validate_chain(self, space)
            else:
                _validate_cells(self, space)
        except NasError as exc:
            if not self.source:
                raise
            raise NasError(f"{self.source}: {exc}") from None
        return self

    def prune(self, space: SearchSpace | str) -> Genotype:
        """Drop what cannot affect the output: ``none`` edges and nodes that do not reach it.

        A removed edge becomes ``none``, so the pruned genotype keeps the space's edge count and
        computes the same function; builders skip ``none`` edges.
        """
        space = load_space(space)
        if space.kind == "chain":
            return self
        cells = []
        for name, c in self.cells:
            g = nx.DiGraph()
            g.add_nodes_from(range(space.num_node_ids))
            g.add_edges_from((s, d) for s, d, op in c.edges(space.inputs) if op != "none")
            g.add_edges_from((n, "out") for n in c.concat)
            live = nx.ancestors(g, "out")
            reachable = set().union(*(nx.descendants(g, i) for i in range(space.inputs))) | set(range(space.inputs))
            alive = live & reachable
            nodes = []
            for i, node_edges in enumerate(c.nodes):
                dst = space.inputs + i
                kept = tuple((op, src) if (dst in alive and src in alive and op != "none") else ("none", src)
                             for op, src in node_edges)
                nodes.append(kept)
            cells.append((name, CellGenotype(tuple(nodes), tuple(n for n in c.concat if n in alive) or c.concat)))
        return replace(self, cells=tuple(cells))

    def depth(self, cell: str, inputs: int | None = None) -> int:
        """Longest input-to-output path of a cell, counted in ops (``none`` edges ignored)."""
        g = self.graph(cell, inputs)
        g.remove_edges_from([(s, d) for s, d, ops in g.edges(data="ops") if ops == ["none"]])
        return max(0, nx.dag_longest_path_length(g) - 1)

    def __str__(self) -> str:
        """The architecture on one line (the space by name only)."""
        data = self.to_dict()
        data.pop("space_definition", None)
        return json.dumps(data)


def _did_you_mean(name: str, known: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _infer_inputs(c: CellGenotype) -> int:
    first = c.nodes[0] if c.nodes else ()
    return max((src for _, src in first), default=0) + 1


def _validate_cells(genotype: Genotype, space: SearchSpace) -> None:
    if set(genotype.cell_types) != set(space.cell_types) or len(genotype.cells) != len(space.cell_types):
        raise NasError(f"genotype cells {list(genotype.cell_types)} do not match space {space.name!r} "
                       f"cell types {list(space.cell_types)}")
    if genotype.stages:
        raise NasError(f"genotype has chain stages but space {space.name!r} is a cell space")
    for name, c in genotype.cells:
        where = f"genotype {name} cell"
        if len(c.nodes) != space.nodes:
            raise NasError(f"{where} has {len(c.nodes)} nodes; space {space.name!r} has {space.nodes}")
        for i, node_edges in enumerate(c.nodes):
            node = space.inputs + i
            want = space.num_edges(node)
            if len(node_edges) != want:
                raise NasError(f"{where}: node {node} has {len(node_edges)} input edges; "
                               f"space {space.name!r} wants {want}")
            for op, src in node_edges:
                if op not in space.ops:
                    raise NasError(f"{where}: op {shorten(op, 40)!r} on edge {src}->{node} is not in space "
                                   f"{space.name!r}{_did_you_mean(op, space.ops)} (ops: {', '.join(space.ops)})")
                if not 0 <= src < node:
                    raise NasError(f"{where}: edge {src}->{node} is out of range or makes a cycle; "
                                   f"node {node} may only read nodes 0..{node - 1}")
            srcs = [src for _, src in node_edges]
            if space.dense and sorted(srcs) != list(range(node)):
                raise NasError(f"{where}: node {node} must have one edge from each of nodes 0..{node - 1}")
        if not c.concat:
            raise NasError(f"{where}: concat is empty; it lists the nodes whose outputs form the cell output")
        if len(set(c.concat)) != len(c.concat):
            raise NasError(f"{where}: concat {list(c.concat)} names a node twice; list each output node once")
        for n in c.concat:
            if not 0 <= n < space.num_node_ids:
                raise NasError(f"{where}: output node {n} is out of range 0..{space.num_node_ids - 1}")
        if space.output == "last" and tuple(c.concat) != space.default_concat():
            raise NasError(f"{where}: space {space.name!r} outputs the last node; concat must be "
                           f"{list(space.default_concat())}")
        if not nx.is_directed_acyclic_graph(genotype.graph(name, space.inputs)):
            raise NasError(f"{where} has a cycle")


def _validate_chain(genotype: Genotype, space: SearchSpace) -> None:
    if genotype.cells:
        raise NasError(f"genotype has cells but space {space.name!r} is a chain space")
    if len(genotype.stages) != len(space.stages):
        raise NasError(f"genotype has {len(genotype.stages)} stages; space {space.name!r} has {len(space.stages)}")
    for i, (blocks, stage) in enumerate(zip(genotype.stages, space.stages)):
        if len(blocks) not in stage.depth:
            raise NasError(f"genotype stage {i} has {len(blocks)} blocks; space allows {list(stage.depth)}")
        for op in blocks:
            if op not in space.ops:
                raise NasError(f"genotype stage {i}: block {shorten(op, 40)!r} is not in space {space.name!r}"
                               f"{_did_you_mean(op, space.ops)}")
