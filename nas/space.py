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

import difflib
import functools
import importlib.resources
import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nas.errors import NasError
from nas.ops import has_op, list_ops

# The folder of the shipped space files, inside the installed package.
SPACES_DIR = Path(str(importlib.resources.files("nas") / "searchspaces"))
FORMAT_HINT = f"see {SPACES_DIR / 'darts.yaml'} for the format"
# space and genotype files are a few KiB; a larger file is a mistake, not something to parse
MAX_TEXT_BYTES = 1024 * 1024
# a space's name goes into run folder names: no path separators, no leading dot
SPACE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}")


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


@functools.cache
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
    if path_kind(path) == "file":
        return _load_file(path)
    if path.suffix in (".yaml", ".yml", ".json"):
        raise NasError(f"search space file {shorten(text)} not found; check the path")
    if text not in available_spaces():  # a folder of that name is no space either
        raise NasError(f"unknown search space {shorten(text)!r}; known: {', '.join(available_spaces())} "
                       "(or pass the path of a .yaml space file)")
    return _shipped_space(text)


def path_kind(path: Path) -> str | None:
    """``"file"``, ``"dir"``, ``"other"`` (a socket, a device) or ``None`` for nothing there; a
    text that cannot be a path (a NUL byte, too long a name) is nothing there."""
    try:
        return "file" if path.is_file() else "dir" if path.is_dir() else "other" if path.exists() else None
    except (OSError, ValueError):
        return None


def shorten(text: str, limit: int = 80) -> str:
    """``text`` cut to ``limit`` characters for a one-line message."""
    return text if len(text) <= limit else text[:limit - 3] + "..."


def show(value: Any, limit: int = 60) -> str:
    """A short one-line ``repr`` of a value a user wrote, for messages."""
    return shorten(repr(value), limit)


def type_name(value: Any) -> str:
    """How a JSON / YAML value's type is called in messages."""
    names = {dict: "a mapping", list: "a list", tuple: "a list", str: "a string", bool: "true/false",
             int: "an integer", float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def read_user_text(path: Path, what: str, hint: str) -> str:
    """The text of a small UTF-8 file a user gave (a space or genotype file): an unreadable,
    binary or oversized file is a :class:`NasError` naming ``path``; ``hint`` says what to pass."""
    try:
        with open(path, "rb") as f:
            blob = f.read(MAX_TEXT_BYTES + 1)
    except OSError as exc:
        raise NasError(f"{path}: cannot read the {what} ({exc.strerror or exc}); {hint}") from None
    if len(blob) > MAX_TEXT_BYTES:
        raise NasError(f"{path}: too large for a {what} (over {MAX_TEXT_BYTES // 1024} KiB); {hint}")
    try:
        text = blob.decode("utf-8")
    except UnicodeDecodeError:
        raise NasError(f"{path}: not a text file (not UTF-8); {hint}") from None
    if "\x00" in text:
        raise NasError(f"{path}: not a text file (it holds NUL bytes); {hint}")
    return text


def _load_file(path: Path) -> SearchSpace:
    text = read_user_text(path, "space file", f"pass a YAML space file ({FORMAT_HINT})")
    try:
        data = yaml.safe_load(text)  # safe: no tags that build Python objects
    except yaml.YAMLError as exc:
        raise NasError(f"{path}: not valid YAML ({str(exc).splitlines()[0]}); fix the file") from None
    except RecursionError:
        raise NasError(f"{path}: nested too deeply to be a space file; {FORMAT_HINT}") from None
    except ValueError as exc:  # a scalar YAML resolves but cannot build, such as the date 2024-13-45
        raise NasError(f"{path}: not valid YAML ({exc}); fix the file") from None
    return space_from_dict(data, source=str(path))


def space_from_dict(data: Any, source: str = "<dict>") -> SearchSpace:
    """Validate the mapping of a space file (or :meth:`SearchSpace.to_dict`) into a space."""
    if not isinstance(data, dict):
        raise NasError(f"{source}: a space file must be a mapping with name, kind and ops/stages, "
                       f"got {type_name(data)}; {FORMAT_HINT}")
    name = need(data, "name", source)
    if not isinstance(name, str) or not SPACE_NAME.fullmatch(name):
        raise NasError(f"{source}: 'name' must be a short name of letters, digits, '_', '-' or '.', "
                       f"got {show(name)}")
    kind = need(data, "kind", source)
    if not isinstance(kind, str) or kind not in _KINDS:
        raise NasError(f"{source}: kind must be {' or '.join(repr(k) for k in _KINDS)}, got {show(kind)}")
    description = data.get("description")
    if description is not None and not isinstance(description, str):
        raise NasError(f"{source}: 'description' must be a string, got {type_name(description)}")
    network = data.get("network")
    if network is not None and not isinstance(network, dict):
        raise NasError(f"{source}: 'network' must be a mapping of macro settings, got {type_name(network)}")
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
            raise NasError(f"{source}: names space {show(data['space'])} but embeds space {space.name!r}; "
                           "fix one of them")
        return space
    name = need(data, "space", source)
    if not isinstance(name, str):
        raise NasError(f"{source}: 'space' must be a space name, got {type_name(name)}")
    return load_space(name)


def need(mapping: dict, key: str, source: str, where: str = "") -> Any:
    """``mapping[key]``, or a :class:`NasError` naming the file and the missing key."""
    if key not in mapping:
        raise NasError(f"{source}: missing key {where + key!r}; {FORMAT_HINT}")
    return mapping[key]


def refuse_unknown_keys(mapping: dict, known: tuple[str, ...], source: str, where: str = "") -> None:
    """A :class:`NasError` for the first key of ``mapping`` not in ``known``, with the nearest
    known one as a suggestion; ``where`` prefixes the key (``"cell."``)."""
    for key in mapping:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"did you mean {where + close[0]!r}? " if close else ""
            raise NasError(f"{source}: unknown key {where + shorten(str(key), 40)!r}; {hint}"
                           f"known: {', '.join(where + k for k in known)}")


def _optional(mapping: dict, key: str, default: Any) -> Any:
    """``mapping[key]``; a missing key or an empty YAML value (``key:``) gives ``default``."""
    value = mapping.get(key)
    return default if value is None else value


def _common(data: dict[str, Any], source: str) -> dict[str, Any]:
    return {"name": data["name"], "description": data.get("description") or "", "source": source}


def _check_ops(ops: Any, source: str, what: str = "'ops'") -> tuple[str, ...]:
    if not isinstance(ops, list) or not ops or not all(isinstance(o, str) for o in ops):
        raise NasError(f"{source}: {what} must be a non-empty list of op names, got {show(ops)}")
    for op in ops:
        if not has_op(op):
            close = difflib.get_close_matches(op, list_ops(), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise NasError(f"{source}: unknown op {shorten(op, 40)!r}; {hint}run `nas ops` to list the known ops")
    if len(set(ops)) != len(ops):
        raise NasError(f"{source}: {what} lists an op twice")
    return tuple(ops)


def _positive_int(value: Any, what: str, source: str) -> int:
    # bool is a subclass of int: `nodes: true` is a mistake, not 1
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise NasError(f"{source}: {what} must be a positive integer, got {show(value)}")
    return value


def _choice(value: Any, choices: tuple[Any, ...], what: str, source: str) -> Any:
    if isinstance(value, bool) or not any(type(value) is type(c) and value == c for c in choices):
        raise NasError(f"{source}: {what} must be {' or '.join(repr(c) for c in choices)}, got {show(value)}")
    return value


# network settings each kind's builders read: name -> check of its value
_POSITIVE = "a positive integer"
CELL_NETWORK: dict[str, tuple[Any, ...] | str] = {
    "init_channels": _POSITIVE, "layers": _POSITIVE, "cells_per_stage": _POSITIVE, "stem_multiplier": _POSITIVE,
    "reduction": ("cell", "residual"), "head": ("none", "bn_relu")}
CHAIN_NETWORK: dict[str, tuple[Any, ...] | str] = {
    "stem_channels": _POSITIVE, "stem_stride": (1, 2), "head_channels": _POSITIVE}


def _network(data: dict[str, Any], schema: dict[str, tuple[Any, ...] | str], source: str) -> dict[str, Any]:
    network = dict(data.get("network") or {})
    refuse_unknown_keys(network, tuple(schema), source, "network.")
    for key, rule in schema.items():
        if network.get(key) is None:
            network.pop(key, None)
        elif rule == _POSITIVE:
            _positive_int(network[key], f"network.{key}", source)
        else:
            _choice(network[key], rule, f"network.{key}", source)
    return network


CELL_KEYS = ("name", "description", "kind", "ops", "cell", "network")
CELL_SECTION = ("inputs", "nodes", "edges_per_node", "output", "types")


def _read_cell(data: dict[str, Any], source: str) -> SearchSpace:
    refuse_unknown_keys(data, CELL_KEYS, source)
    common = _common(data, source)
    network = _network(data, CELL_NETWORK, source)
    ops = _check_ops(need(data, "ops", source), source)
    cell = need(data, "cell", source)
    if cell is None:
        cell = {}
    if not isinstance(cell, dict):
        raise NasError(f"{source}: 'cell' must be a mapping (inputs, nodes, edges_per_node, output, types), "
                       f"got {type_name(cell)}")
    refuse_unknown_keys(cell, CELL_SECTION, source, "cell.")
    inputs = _positive_int(_optional(cell, "inputs", 2), "cell.inputs", source)
    if inputs > 2:
        raise NasError(f"{source}: cell.inputs must be 1 or 2 (the previous one or two cells)")
    nodes = _positive_int(_optional(cell, "nodes", 4), "cell.nodes", source)
    epn = _optional(cell, "edges_per_node", 2)
    if epn == "all":
        edges_per_node = None
    else:
        if isinstance(epn, str):
            raise NasError(f"{source}: cell.edges_per_node must be a positive integer or 'all', got {show(epn)}")
        edges_per_node = _positive_int(epn, "cell.edges_per_node", source)
        if edges_per_node > inputs:
            # the first intermediate node only has `inputs` predecessors
            raise NasError(f"{source}: cell.edges_per_node ({edges_per_node}) exceeds cell.inputs ({inputs}); "
                           "the first node could not be wired")
    output = _choice(_optional(cell, "output", "concat"), ("concat", "last"), "cell.output", source)
    types = _optional(cell, "types", ["normal", "reduction"])
    if not isinstance(types, list) or tuple(types) not in (("normal",), ("normal", "reduction")):
        raise NasError(f"{source}: cell.types must be [normal] or [normal, reduction], got {show(types)}")
    types = tuple(types)
    reduction = network.get("reduction", "cell" if "reduction" in types else "residual")
    if reduction == "cell" and "reduction" not in types:
        raise NasError(f"{source}: network.reduction is 'cell' but cell.types has no 'reduction' cell")
    return SearchSpace(kind="cell", ops=ops, inputs=inputs, nodes=nodes, edges_per_node=edges_per_node,
                       output=output, cell_types=types, network={**network, "reduction": reduction}, **common)


def _write_cell(space: SearchSpace) -> dict[str, Any]:
    return {"ops": list(space.ops),
            "cell": {"inputs": space.inputs, "nodes": space.nodes,
                     "edges_per_node": "all" if space.dense else space.edges_per_node,
                     "output": space.output, "types": list(space.cell_types)}}


CHAIN_KEYS = ("name", "description", "kind", "blocks", "stages", "network")
BLOCK_KEYS = ("kernel", "expansion", "se")
STAGE_KEYS = ("channels", "stride", "depth")


def _choices_list(value: Any, what: str, source: str, *, flags: bool = False) -> list[Any]:
    """A non-empty list of positive integers (``flags``: of true / false)."""
    ok = isinstance(value, list) and value and all(
        isinstance(v, bool) if flags else (isinstance(v, int) and not isinstance(v, bool) and v > 0) for v in value)
    if not ok:
        kind = "true / false" if flags else "positive integers"
        raise NasError(f"{source}: {what} must be a non-empty list of {kind}, got {show(value)}")
    if len(set(value)) != len(value):
        raise NasError(f"{source}: {what} lists a value twice")
    return value


def _read_chain(data: dict[str, Any], source: str) -> SearchSpace:
    refuse_unknown_keys(data, CHAIN_KEYS, source)
    network = _network(data, CHAIN_NETWORK, source)
    blocks = need(data, "blocks", source)
    if not isinstance(blocks, dict):
        raise NasError(f"{source}: 'blocks' must map kernel, expansion and se to lists of choices, "
                       f"got {type_name(blocks)}")
    refuse_unknown_keys(blocks, BLOCK_KEYS, source, "blocks.")
    kernels = _choices_list(need(blocks, "kernel", source, "blocks."), "blocks.kernel", source)
    expansions = _choices_list(need(blocks, "expansion", source, "blocks."), "blocks.expansion", source)
    ses = _choices_list(_optional(blocks, "se", [False]), "blocks.se", source, flags=True)
    ops = tuple(chain_op_name(k, e, s) for k, e, s in itertools.product(kernels, expansions, ses))
    _check_ops(list(ops), source, "'blocks'")
    raw_stages = need(data, "stages", source)
    if not isinstance(raw_stages, list) or not raw_stages:
        raise NasError(f"{source}: 'stages' must be a non-empty list of {{channels, stride, depth}}, "
                       f"got {show(raw_stages)}")
    stages = []
    for i, st in enumerate(raw_stages):
        if not isinstance(st, dict):
            raise NasError(f"{source}: stages[{i}] must be a mapping with channels, stride and depth, "
                           f"got {type_name(st)}")
        refuse_unknown_keys(st, STAGE_KEYS, source, f"stages[{i}].")
        channels = _positive_int(need(st, "channels", source, f"stages[{i}]."), f"stages[{i}].channels", source)
        stride = _optional(st, "stride", 1)
        if isinstance(stride, bool) or stride not in (1, 2) or not isinstance(stride, int):
            raise NasError(f"{source}: stages[{i}].stride must be 1 or 2, got {show(stride)}")
        depth = _optional(st, "depth", [1])
        depth = depth if isinstance(depth, list) else [depth]
        if not depth:
            raise NasError(f"{source}: stages[{i}].depth must be a positive integer or a non-empty list of them")
        stages.append(Stage(channels, stride, tuple(_positive_int(d, f"stages[{i}].depth", source) for d in depth)))
    return SearchSpace(kind="chain", ops=ops, stages=tuple(stages), cell_types=(), network=network,
                       **_common(data, source))


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
