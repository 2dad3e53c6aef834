"""Search spaces: YAML files loaded and validated into :class:`SearchSpace`.

The shipped spaces (``darts``, ``lecture``, ``nb201``, ``mobile``) are package data in
``nas/searchspaces/``. A space file names its *kind*; each kind is one registration
(:func:`register_space_kind`): how to read its part of the file and how to write it back.
Two kinds ship:

* ``cell``: DARTS-style cells. Node ``i`` of a cell (``i >= inputs``) sums one op per incoming
  edge; ``edges_per_node`` distinct earlier nodes feed it (or ``all`` of them, as in
  NAS-Bench-201). The cell output concatenates the intermediate nodes or takes the last one.
* ``chain``: a MobileNet-style sequence of stages; each stage picks a depth and each block an
  inverted-residual variant (kernel, expansion, SE).

A user adds a space by writing a YAML file and passing its path wherever a space name goes.
"""
from __future__ import annotations

import functools
import importlib.resources
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from nas.errors import NasError
from nas.ops import has_op

# The folder of the shipped space files, inside the installed package.
SPACES_DIR = Path(str(importlib.resources.files("nas") / "searchspaces"))
FORMAT_HINT = f"see {SPACES_DIR / 'darts.yaml'} for the format"


@dataclass(frozen=True)
class Stage:
    channels: int
    stride: int
    depth: tuple[int, ...]


@dataclass(frozen=True)
class SearchSpace:
    name: str
    kind: str  # a registered space kind ("cell", "chain")
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
        """The space as it would be written to a file (for run folders and genotype.json)."""
        data: dict[str, Any] = {"name": self.name, "description": self.description, "kind": self.kind}
        data.update(get_space_kind(self.kind).write(self))
        data["network"] = dict(self.network)
        return data

    @functools.cached_property
    def shipped(self) -> bool:
        """True if this is one of the spaces shipped with nas, unchanged."""
        return self.name in available_spaces() and _shipped_space(self.name).to_dict() == self.to_dict()


@dataclass(frozen=True)
class SpaceKind:
    """One kind of space file.

    read(data, source): the whole mapping of a space file (``name``, ``kind``, ``network`` and
      the kind's own keys) -> a validated :class:`SearchSpace`; raise :class:`NasError` naming
      ``source`` on a mistake. :func:`need` fetches a required key with such a message.
    write(space): the kind's own keys, so that ``read(space.to_dict())`` gives the space back.
    """

    name: str
    read: Callable[[dict[str, Any], str], SearchSpace]
    write: Callable[[SearchSpace], dict[str, Any]]
    description: str = ""


_KINDS: dict[str, SpaceKind] = {}


def register_space_kind(name: str, *, read: Callable[[dict[str, Any], str], SearchSpace],
                        write: Callable[[SearchSpace], dict[str, Any]], description: str = "") -> SpaceKind:
    """Register a kind of space file; ``kind: <name>`` in a YAML file then selects it."""
    if name in _KINDS:
        raise ValueError(f"space kind {name!r} is already registered")
    kind = SpaceKind(name, read, write, description)
    _KINDS[name] = kind
    return kind


def space_kinds() -> list[str]:
    return list(_KINDS)


def get_space_kind(name: str) -> SpaceKind:
    try:
        return _KINDS[name]
    except (KeyError, TypeError):
        raise NasError(f"unknown space kind {name!r}; known: {', '.join(_KINDS)}") from None


def chain_op_name(kernel: int, expansion: int, se: bool) -> str:
    return f"inverted_residual_k{kernel}_e{expansion}" + ("_se" if se else "")


def available_spaces() -> list[str]:
    """Names of the spaces shipped in the package (``nas/searchspaces/*.yaml``)."""
    return sorted(p.stem for p in SPACES_DIR.glob("*.yaml"))


@functools.lru_cache(maxsize=None)
def _shipped_space(name: str) -> SearchSpace:
    return _load_file(SPACES_DIR / f"{name}.yaml")


def load_space(name_or_path: str | Path | SearchSpace | Any) -> SearchSpace:
    """Load a space by name (``darts``, ``lecture``, ``nb201``, ``mobile``), from a YAML file, or
    the space of a genotype: the definition it embeds, else its shipped space by name."""
    if isinstance(name_or_path, SearchSpace):
        return name_or_path
    if hasattr(name_or_path, "space_definition"):  # a Genotype (defined a layer above)
        return name_or_path.space_definition or load_space(name_or_path.space)
    text = str(name_or_path)
    path = Path(text)
    if not (path.suffix in (".yaml", ".yml", ".json") or path.exists()):
        if text not in available_spaces():
            raise NasError(f"unknown search space {text!r}; known: {', '.join(available_spaces())} "
                           "(or pass the path of a .yaml space file)")
        return _shipped_space(text)
    if not path.is_file():
        raise NasError(f"search space file {path} not found; check the path")
    return _load_file(path)


def _load_file(path: Path) -> SearchSpace:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise NasError(f"{path}: not valid YAML ({str(exc).splitlines()[0]}); fix the file") from None
    return space_from_dict(data, source=str(path))


def space_from_dict(data: Any, source: str = "<dict>") -> SearchSpace:
    """Validate the mapping of a space file (or :meth:`SearchSpace.to_dict`) into a space."""
    if not isinstance(data, dict):
        raise NasError(f"{source}: a space file must be a mapping with name, kind and ops/stages")
    need(data, "name", source)
    kind = need(data, "kind", source)
    if kind not in _KINDS:
        raise NasError(f"{source}: kind must be {' or '.join(repr(k) for k in _KINDS)}, got {kind!r}")
    if not isinstance(data.get("network") or {}, dict):
        raise NasError(f"{source}: 'network' must be a mapping of macro settings")
    return _KINDS[kind].read(data, source)


def space_record(space: SearchSpace) -> dict[str, Any]:
    """How a run folder's config.json and a genotype.json store a space: its name and its whole
    definition, so that the run needs no space file (:func:`space_from_record` reads it back)."""
    return {"space": space.name, "space_definition": space.to_dict()}


def space_from_record(data: dict[str, Any], source: str = "<record>") -> SearchSpace:
    """The space of a :func:`space_record` mapping: the embedded definition, else the shipped
    space of that name."""
    if data.get("space_definition") is not None:
        space = space_from_dict(data["space_definition"], source=f"{source} (space_definition)")
        if "space" in data and data["space"] != space.name:
            raise NasError(f"{source}: names space {data['space']!r} but embeds space {space.name!r}; "
                           "fix one of them")
        return space
    return load_space(need(data, "space", source))


def need(mapping: dict, key: str, source: str, where: str = "") -> Any:
    """``mapping[key]``, or a :class:`NasError` naming the file and the missing key."""
    if key not in mapping:
        raise NasError(f"{source}: missing key {where}{key!r}; {FORMAT_HINT}")
    return mapping[key]


def _common(data: dict[str, Any], source: str) -> dict[str, Any]:
    return {"name": str(data["name"]), "description": str(data.get("description", "")),
            "network": dict(data.get("network") or {}), "source": source}


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


def _read_cell(data: dict[str, Any], source: str) -> SearchSpace:
    common = _common(data, source)
    network = common.pop("network")
    ops = _check_ops(need(data, "ops", source), source)
    cell = need(data, "cell", source)
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
    return SearchSpace(kind="cell", ops=ops, inputs=inputs, nodes=nodes, edges_per_node=edges_per_node,
                       output=output, cell_types=types, network={**network, "reduction": reduction}, **common)


def _write_cell(space: SearchSpace) -> dict[str, Any]:
    return {"ops": list(space.ops),
            "cell": {"inputs": space.inputs, "nodes": space.nodes,
                     "edges_per_node": "all" if space.dense else space.edges_per_node,
                     "output": space.output, "types": list(space.cell_types)}}


def _read_chain(data: dict[str, Any], source: str) -> SearchSpace:
    blocks = need(data, "blocks", source)
    if not isinstance(blocks, dict):
        raise NasError(f"{source}: 'blocks' must map kernel, expansion and se to lists of choices")
    try:
        ops = tuple(chain_op_name(k, e, bool(s)) for k, e, s in
                    itertools.product(blocks["kernel"], blocks["expansion"], blocks.get("se", [False])))
    except (KeyError, TypeError):
        raise NasError(f"{source}: 'blocks' needs lists 'kernel' and 'expansion' (and optionally 'se')") from None
    _check_ops(list(ops), source)
    raw_stages = need(data, "stages", source)
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
    return SearchSpace(kind="chain", ops=ops, stages=tuple(stages), cell_types=(), **_common(data, source))


def _write_chain(space: SearchSpace) -> dict[str, Any]:
    kernels, expansions, ses = set(), set(), set()
    for op in space.ops:
        parts = op.split("_")
        kernels.add(int(parts[2][1:]))
        expansions.add(int(parts[3][1:]))
        ses.add(op.endswith("_se"))
    return {"blocks": {"kernel": sorted(kernels), "expansion": sorted(expansions), "se": sorted(ses)},
            "stages": [{"channels": s.channels, "stride": s.stride, "depth": list(s.depth)} for s in space.stages]}


register_space_kind("cell", read=_read_cell, write=_write_cell,
                    description="DARTS-style cells: nodes summing one op per incoming edge")
register_space_kind("chain", read=_read_chain, write=_write_chain,
                    description="MobileNet-style stages of inverted-residual blocks")
