"""Search spaces: data files in ``searchspaces/`` loaded and validated into :class:`SearchSpace`.

Two kinds of space:

* ``cell``: DARTS-style cells. Node ``i`` of a cell (``i >= inputs``) sums one op per incoming
  edge; ``edges_per_node`` distinct earlier nodes feed it (or ``all`` of them, as in
  NAS-Bench-201). The cell output concatenates the intermediate nodes or takes the last one.
* ``chain``: a MobileNet-style sequence of stages; each stage picks a depth and each block an
  inverted-residual variant (kernel, expansion, SE).

A user adds a space by writing a YAML file and passing its path wherever a space name goes.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nas.errors import NasError
from nas.ops import has_op

SPACES_DIR = Path(__file__).resolve().parent.parent / "searchspaces"


@dataclass(frozen=True)
class Stage:
    channels: int
    stride: int
    depth: tuple[int, ...]


@dataclass(frozen=True)
class SearchSpace:
    name: str
    kind: str  # "cell" | "chain"
    ops: tuple[str, ...]
    description: str = ""
    # cell spaces
    inputs: int = 2
    nodes: int = 4
    edges_per_node: int | None = 2  # None: every earlier node (dense)
    output: str = "concat"  # "concat" | "last"
    cell_types: tuple[str, ...] = ("normal", "reduction")
    # chain spaces
    stages: tuple[Stage, ...] = ()
    # network (macro) settings, passed to the builders
    network: dict[str, Any] = field(default_factory=dict)
    source: str = ""  # the file it was read from

    @property
    def dense(self) -> bool:
        return self.edges_per_node is None

    @property
    def num_node_ids(self) -> int:
        """Number of node ids in a cell: inputs plus intermediate nodes."""
        return self.inputs + self.nodes

    @property
    def intermediate(self) -> range:
        return range(self.inputs, self.inputs + self.nodes)

    def default_concat(self) -> tuple[int, ...]:
        return tuple(self.intermediate) if self.output == "concat" else (self.num_node_ids - 1,)

    def num_edges(self, node: int) -> int:
        return node if self.dense else int(self.edges_per_node)

    def to_dict(self) -> dict[str, Any]:
        """The space as it would be written to a file (for run folders)."""
        data: dict[str, Any] = {"name": self.name, "description": self.description, "kind": self.kind}
        if self.kind == "cell":
            data["ops"] = list(self.ops)
            data["cell"] = {"inputs": self.inputs, "nodes": self.nodes,
                            "edges_per_node": "all" if self.dense else self.edges_per_node,
                            "output": self.output, "types": list(self.cell_types)}
        else:
            data["blocks"] = _blocks_from_ops(self.ops)
            data["stages"] = [{"channels": s.channels, "stride": s.stride, "depth": list(s.depth)}
                              for s in self.stages]
        data["network"] = dict(self.network)
        return data


def chain_op_name(kernel: int, expansion: int, se: bool) -> str:
    return f"inverted_residual_k{kernel}_e{expansion}" + ("_se" if se else "")


def _blocks_from_ops(ops: tuple[str, ...]) -> dict[str, list]:
    kernels, expansions, ses = set(), set(), set()
    for op in ops:
        parts = op.split("_")
        kernels.add(int(parts[2][1:]))
        expansions.add(int(parts[3][1:]))
        ses.add(op.endswith("_se"))
    return {"kernel": sorted(kernels), "expansion": sorted(expansions), "se": sorted(ses)}


def available_spaces() -> list[str]:
    return sorted(p.stem for p in SPACES_DIR.glob("*.yaml"))


def load_space(name_or_path: str | Path | SearchSpace) -> SearchSpace:
    """Load a space by name (``darts``, ``lecture``, ``nb201``, ``mobile``) or from a YAML file."""
    if isinstance(name_or_path, SearchSpace):
        return name_or_path
    text = str(name_or_path)
    path = Path(text)
    if not (path.suffix in (".yaml", ".yml", ".json") or path.exists()):
        path = SPACES_DIR / f"{text}.yaml"
        if not path.exists():
            raise NasError(f"unknown search space {text!r}; known: {', '.join(available_spaces())} "
                           "(or pass the path of a .yaml space file)")
    if not path.is_file():
        raise NasError(f"search space file {path} not found; check the path")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise NasError(f"{path}: not valid YAML ({str(exc).splitlines()[0]}); fix the file") from None
    return space_from_dict(data, source=str(path))


def space_from_dict(data: Any, source: str = "<dict>") -> SearchSpace:
    if not isinstance(data, dict):
        raise NasError(f"{source}: a space file must be a mapping with name, kind and ops/stages")

    def need(mapping: dict, key: str, where: str = "") -> Any:
        if key not in mapping:
            raise NasError(f"{source}: missing key {where}{key!r}; see searchspaces/darts.yaml for the format")
        return mapping[key]

    name = str(need(data, "name"))
    kind = need(data, "kind")
    network = data.get("network") or {}
    if not isinstance(network, dict):
        raise NasError(f"{source}: 'network' must be a mapping of macro settings")
    if kind == "cell":
        space = _cell_space(data, name, network, source, need)
    elif kind == "chain":
        space = _chain_space(data, name, network, source, need)
    else:
        raise NasError(f"{source}: kind must be 'cell' or 'chain', got {kind!r}")
    return space


def _check_ops(ops: Any, source: str) -> tuple[str, ...]:
    if not isinstance(ops, list) or not ops or not all(isinstance(o, str) for o in ops):
        raise NasError(f"{source}: 'ops' must be a non-empty list of op names")
    for op in ops:
        if not has_op(op):
            raise NasError(f"{source}: unknown op {op!r}; run `nas ops` to list the known ops")
    if len(set(ops)) != len(ops):
        raise NasError(f"{source}: 'ops' lists an op twice")
    return tuple(ops)


def _positive_int(value: Any, what: str, source: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise NasError(f"{source}: {what} must be a positive integer, got {value!r}")
    return value


def _cell_space(data, name, network, source, need) -> SearchSpace:
    ops = _check_ops(need(data, "ops"), source)
    cell = need(data, "cell")
    if not isinstance(cell, dict):
        raise NasError(f"{source}: 'cell' must be a mapping (inputs, nodes, edges_per_node, output, types)")
    inputs = _positive_int(cell.get("inputs", 2), "cell.inputs", source)
    if inputs > 2:
        raise NasError(f"{source}: cell.inputs must be 1 or 2 (the previous one or two cells)")
    nodes = _positive_int(cell.get("nodes", 4), "cell.nodes", source)
    epn = cell.get("edges_per_node", 2)
    if epn == "all":
        edges_per_node = None
    else:
        edges_per_node = _positive_int(epn, "cell.edges_per_node", source)
        if edges_per_node > inputs:
            # the first intermediate node only has `inputs` predecessors
            raise NasError(f"{source}: cell.edges_per_node ({edges_per_node}) exceeds cell.inputs ({inputs}); "
                           "the first node could not be wired")
    output = cell.get("output", "concat")
    if output not in ("concat", "last"):
        raise NasError(f"{source}: cell.output must be 'concat' or 'last', got {output!r}")
    types = tuple(cell.get("types", ["normal", "reduction"]))
    if types not in (("normal",), ("normal", "reduction")):
        raise NasError(f"{source}: cell.types must be [normal] or [normal, reduction], got {list(types)}")
    reduction = network.get("reduction", "cell" if "reduction" in types else "residual")
    if reduction not in ("cell", "residual"):
        raise NasError(f"{source}: network.reduction must be 'cell' or 'residual', got {reduction!r}")
    if reduction == "cell" and "reduction" not in types:
        raise NasError(f"{source}: network.reduction is 'cell' but cell.types has no 'reduction' cell")
    return SearchSpace(name=name, kind="cell", ops=ops, description=str(data.get("description", "")),
                       inputs=inputs, nodes=nodes, edges_per_node=edges_per_node, output=output,
                       cell_types=types, network={**network, "reduction": reduction}, source=source)


def _chain_space(data, name, network, source, need) -> SearchSpace:
    blocks = need(data, "blocks")
    if not isinstance(blocks, dict):
        raise NasError(f"{source}: 'blocks' must map kernel, expansion and se to lists of choices")
    try:
        ops = tuple(chain_op_name(k, e, bool(s)) for k, e, s in
                    itertools.product(blocks["kernel"], blocks["expansion"], blocks.get("se", [False])))
    except (KeyError, TypeError):
        raise NasError(f"{source}: 'blocks' needs lists 'kernel' and 'expansion' (and optionally 'se')") from None
    _check_ops(list(ops), source)
    raw_stages = need(data, "stages")
    if not isinstance(raw_stages, list) or not raw_stages:
        raise NasError(f"{source}: 'stages' must be a non-empty list of {{channels, stride, depth}}")
    stages = []
    for i, st in enumerate(raw_stages):
        if not isinstance(st, dict):
            raise NasError(f"{source}: stage {i} must be a mapping with channels, stride and depth")
        depth = st.get("depth", [1])
        depth = depth if isinstance(depth, list) else [depth]
        if st.get("stride", 1) not in (1, 2):
            raise NasError(f"{source}: stage {i} stride must be 1 or 2")
        stages.append(Stage(_positive_int(st.get("channels"), f"stage {i} channels", source), st.get("stride", 1),
                            tuple(_positive_int(d, f"stage {i} depth", source) for d in depth)))
    return SearchSpace(name=name, kind="chain", ops=ops, description=str(data.get("description", "")),
                       stages=tuple(stages), network=dict(network), cell_types=(), source=source)
