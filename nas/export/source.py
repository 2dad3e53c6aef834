"""The ``source`` export: ``model.py`` written from the model's own classes, plus its weights.

``model.py`` holds the source of :func:`nas.builders.arch.build` and of every class and
function it reaches for this architecture (read with :mod:`inspect` from where they are
defined: ``nas.ops``, ``nas.builders``, or a user's module that registered an op or head),
the registry entries the architecture uses as small tables (``OPS``, ``HEADS``,
``BACKBONES``), the architecture itself as plain data (``ARCH``), and :func:`load`. The model
layer refers only to torch, torchvision and itself, so the file imports nothing else; it
imports torchvision only where the architecture's classes do.
"""
from __future__ import annotations

import ast
import builtins
import importlib.util
import inspect
import json
import pprint
import sys
import textwrap
import types
import uuid
from pathlib import Path
from typing import Any

import torch

from nas.builders.arch import build
from nas.builders.heads import HEADS
from nas.builders.networks import BACKBONES
from nas.builders.spec import ModelSpec
from nas.errors import NasError
from nas.io import atomic_save, atomic_write
from nas.ops import get_op

SOURCE_FILE, SAFETENSORS_FILE, STATE_DICT_FILE = "model.py", "model.safetensors", "model_state_dict.pt"
_PLAIN = (bool, int, float, str, type(None))


def load(weights: str | Path | None = None) -> torch.nn.Module:
    """The model of ``ARCH`` with its trained weights, in eval mode.

    ``weights`` defaults to ``model.safetensors`` next to this file when the safetensors
    package is installed, else ``model_state_dict.pt`` (read with ``weights_only=True``).
    """
    here = Path(__file__).resolve().parent
    if weights is None:
        try:
            from safetensors.torch import load_file
            weights = here / "model.safetensors"
        except ImportError:
            weights = here / "model_state_dict.pt"
    weights = Path(weights)
    if weights.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(weights))
    else:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    model = build(ARCH)  # noqa: F821  (ARCH is defined in the exported file)
    model.load_state_dict(state)
    return model.eval()


# The exported file's op lookup: the registry's create_op without the registry.
_CREATE_OP = '''def create_op(name: str, C_in: int, C_out: int, stride: int = 1, affine: bool = True) -> nn.Module:
    factory, params = OPS[name]
    return factory(C_in, C_out, stride, affine, **params)'''


def export_arch(spec: ModelSpec) -> dict[str, Any]:
    """The architecture written into ``model.py``: :meth:`ModelSpec.arch` without training-only
    parts (the auxiliary head)."""
    arch = spec.arch()
    if arch.get("auxiliary"):
        arch["auxiliary"] = False
    return arch


def arch_ops(arch: dict[str, Any]) -> list[str]:
    """The op names ``arch`` builds, in first-use order."""
    found: list[str] = []
    body = arch.get("backbone", arch)
    for cell in (body.get("cells") or {}).values():
        found += [op for node in cell["nodes"] for op, _ in node if op != "none"]
    for stage in body.get("stages") or []:
        found += stage["blocks"]
    return list(dict.fromkeys(found))


class _Writer:
    """Collects the definitions reachable from some roots, dependencies first."""

    def __init__(self, tables: dict[str, Any]):
        self.tables = tables  # names the exported file defines itself, with their used entries
        self.defs: dict[str, tuple[Any, str]] = {}
        self.imports: dict[str, str] = {}  # bound name -> import statement
        self.constants: dict[str, Any] = {}
        self._modules: dict[str, dict[str, tuple[str, str]]] = {}

    def add(self, obj: Any) -> str:
        name = obj.__name__
        if name == "<lambda>" or "<locals>" in obj.__qualname__:
            raise NasError(f"{obj.__module__}.{obj.__qualname__}: the source export copies classes and functions "
                           "defined at module level; register a class or a def instead of a lambda")
        if name in self.defs:
            if self.defs[name][0] is not obj:
                raise RuntimeError(f"two definitions named {name!r} ({self.defs[name][0].__module__} and "
                                   f"{obj.__module__}); rename one")
            return name
        self.defs[name] = (obj, "")  # placeholder: recursion stops here
        try:
            source = textwrap.dedent(inspect.getsource(obj))
        except (OSError, TypeError):
            raise NasError(f"{obj.__module__}.{obj.__qualname__}: its source cannot be read, so the source export "
                           "cannot copy it") from None
        tree = ast.parse(source).body[0]
        # leave out decorators (registrations): the tables of the exported file register instead
        source = "\n".join(source.splitlines()[tree.lineno - 1:])
        if hasattr(tree, "decorator_list"):
            tree.decorator_list = []
        module = sys.modules[obj.__module__]
        for ref in sorted({n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} - {name}):
            self._resolve(ref, module, obj)
        del self.defs[name]  # re-insert after its dependencies
        self.defs[name] = (obj, source)
        return name

    def _resolve(self, ref: str, module: types.ModuleType, owner: Any) -> None:
        if ref in self.tables:
            for value in _callables(self.tables[ref]):
                self.add(value)
            return
        imports = self._imports_of(module)
        if ref in imports:
            target, statement = imports[ref]
            if not (target == "nas" or target.startswith("nas.")):
                if self.imports.setdefault(ref, statement) != statement:
                    raise RuntimeError(f"{ref!r} is imported two ways: {self.imports[ref]!r}, {statement!r}")
                return
        if ref not in vars(module) or ref.startswith("__"):
            return  # a local name, a parameter, a builtin or the module's own __file__ / __name__
        value = vars(module)[ref]
        if inspect.isclass(value) or inspect.isfunction(value):
            self.add(value)
        elif _is_plain(value):
            if ref in self.constants and self.constants[ref] != value:
                raise RuntimeError(f"two constants named {ref!r}; rename one")
            self.constants[ref] = value
        elif not hasattr(builtins, ref) and not isinstance(value, types.ModuleType):
            raise NasError(f"{owner.__module__}.{owner.__qualname__} refers to {ref!r} ({type(value).__name__}), "
                           "which the source export cannot write; keep model code to classes, functions and plain "
                           "constants")

    def _imports_of(self, module: types.ModuleType) -> dict[str, tuple[str, str]]:
        """``{bound name: (module imported from, import statement)}`` of a module's top-level imports."""
        if module.__name__ not in self._modules:
            found: dict[str, tuple[str, str]] = {}
            for node in ast.parse(inspect.getsource(module)).body:
                if isinstance(node, ast.Import):
                    for alias in node.names:
                        bound = alias.asname or alias.name.split(".")[0]
                        found[bound] = (alias.name, ast.unparse(ast.Import([alias])))
                elif isinstance(node, ast.ImportFrom) and node.module != "__future__":
                    base = node.module or ""
                    if node.level:  # relative import: resolve against the package
                        base = ".".join(module.__name__.split(".")[:-node.level] + ([base] if base else []))
                    for alias in node.names:
                        found[alias.asname or alias.name] = (base, ast.unparse(ast.ImportFrom(base, [alias], 0)))
            self._modules[module.__name__] = found
        return self._modules[module.__name__]

    def text(self) -> str:
        plain = sorted(s for s in set(self.imports.values()) if s.startswith("import "))
        froms: dict[str, list[str]] = {}
        for statement in set(self.imports.values()) - set(plain):
            module, names = statement[len("from "):].split(" import ")
            froms.setdefault(module, []).append(names)
        lines = plain + [f"from {m} import {', '.join(sorted(n))}" for m, n in sorted(froms.items())]
        constants = [f"{k} = {v!r}" for k, v in self.constants.items()]
        return "\n".join(lines) + "\n\n" + "".join(c + "\n" for c in constants) + "\n\n" + "\n\n\n".join(
            src for _, src in self.defs.values())


def _callables(table: Any) -> list[Any]:
    if isinstance(table, dict):
        return [c for v in table.values() for c in _callables(v)]
    if isinstance(table, tuple):
        return [table[0]]
    return [table]


def _is_plain(value: Any) -> bool:
    if isinstance(value, _PLAIN):
        return True
    if isinstance(value, (list, tuple)):
        return all(_is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, _PLAIN) and _is_plain(v) for k, v in value.items())
    return False


def _table_text(name: str, table: Any) -> str:
    def fmt(value: Any, indent: int) -> str:
        if isinstance(value, dict):
            if not value:
                return "{}"
            pad = " " * (indent + 4)
            items = ",\n".join(f"{pad}{k!r}: {fmt(v, indent + 4)}" for k, v in value.items())
            return "{\n" + items + "\n" + " " * indent + "}"
        if isinstance(value, tuple):
            return f"({value[0].__name__}, {value[1]!r})"
        return value.__name__

    return f"{name} = {fmt(table, 0)}"


def source_text(spec: ModelSpec, *, title: str = "", input_size: int | None = None) -> str:
    """The text of the exported ``model.py`` for ``spec``."""
    arch = export_arch(spec)
    ops = {}
    for op in arch_ops(arch):
        entry = get_op(op)
        ops[op] = (entry.factory, entry.params)
    tables: dict[str, Any] = {"OPS": ops, "create_op": None, "ARCH": None,
                              "HEADS": {arch["task"]: {arch["head"]: HEADS[arch["task"]][arch["head"]]}}
                              if arch["task"] != "classification" else {},
                              "BACKBONES": {arch["backbone"]["kind"]: BACKBONES[arch["backbone"]["kind"]]}
                              if "backbone" in arch else {}}
    writer = _Writer({k: v for k, v in tables.items() if v is not None})
    writer.tables.update({"create_op": {}, "ARCH": {}})
    writer.add(build)
    for factory, _ in ops.values():
        writer.add(factory)
    writer.add(load)
    body = writer.text()
    vision = any("torchvision" in s for s in writer.imports.values())
    return (_docstring(spec, title=title, input_size=input_size, vision=vision)
            + "from __future__ import annotations\n\n" + body + "\n\n\n"
            + _table_text("OPS", ops) + "\n\n\n" + _CREATE_OP + "\n\n\n"
            + _table_text("HEADS", tables["HEADS"]) + "\n" + _table_text("BACKBONES", tables["BACKBONES"]) + "\n"
            + "ARCH = " + pprint.pformat(arch, width=110, sort_dicts=False) + "\n")


def needs_torchvision(text: str) -> bool:
    """True when an exported ``model.py`` imports torchvision."""
    return any(line.startswith(("import torchvision", "from torchvision")) for line in text.splitlines())


def _docstring(spec: ModelSpec, *, title: str, input_size: int | None, vision: bool) -> str:
    needs = ("PyTorch and torchvision (imported below for the parts that live there)" if vision else "only PyTorch")
    size = input_size or spec.image_size or 32
    if spec.task == "detection":
        usage = (f"    detections = net([torch.rand(3, {size}, {size})])\n"
                 "    # one {\"boxes\" (x1, y1, x2, y2), \"scores\", \"labels\"} dict per image; images are float\n"
                 "    # tensors in [0, 1] of any size\n")
    elif spec.task == "segmentation":
        usage = f"    logits = net(torch.rand(1, 3, {size}, {size}))  # (1, {spec.num_classes}, H, W)\n"
    else:
        usage = f"    logits = net(torch.randn(1, {spec.in_channels}, {size}, {size}))\n"
    genotype = json.dumps(spec.genotype.to_dict(), separators=(",", ":")) if spec.genotype else spec.backbone
    what = spec.space.name if spec.space is not None else spec.backbone
    return (f'"""{title or what}: {spec.describe()}.\n\n'
            f"Exported by nas with torch {torch.__version__}. Standalone: this file needs {needs}.\n"
            "The classes below are nas's own, copied; ``ARCH`` (at the end) is the architecture and\n"
            f"``build(ARCH)`` makes the network with fresh weights. The weights are ``{SAFETENSORS_FILE}``\n"
            f"(read with safetensors when it is installed) or ``{STATE_DICT_FILE}``\n"
            "(``torch.load(weights_only=True)``) next to this file.\n\n"
            "    import torch\n    import model  # this file\n\n"
            "    net = model.load()  # eval mode, with the trained weights\n" + usage + "\n"
            "Training-only parts (auxiliary head, drop-path) are inactive in eval mode.\n\n"
            f"Genotype: {genotype}\n"
            '"""\n')


def write_source(spec: ModelSpec, state_dict: dict[str, torch.Tensor], out_dir: Path, *, title: str = "",
                 input_size: int | None = None) -> list[Path]:
    """Write ``model.py``, ``model.safetensors`` and ``model_state_dict.pt`` (each atomically); returns their paths."""
    from safetensors.torch import save

    state = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    files = [out_dir / SOURCE_FILE, out_dir / SAFETENSORS_FILE, out_dir / STATE_DICT_FILE]
    atomic_write(files[0], source_text(spec, title=title, input_size=input_size))
    atomic_write(files[1], save(state, metadata={"format": "pt"}))
    atomic_save(files[2], lambda f: torch.save(state, f))
    return files


def import_source(path: str | Path) -> types.ModuleType:
    """Import an exported ``model.py`` by path, under a fresh name (never cached as ``model``)."""
    spec = importlib.util.spec_from_file_location(f"nas_exported_{uuid.uuid4().hex}", path)
    if spec is None or spec.loader is None:
        raise NasError(f"cannot import {path}; is it an exported model.py?")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
