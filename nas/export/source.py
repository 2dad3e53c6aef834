"""The ``source`` export: one standalone Python file (``standalone.py`` with the architecture
filled in) plus the weights as safetensors and as a ``weights_only`` state dict."""
from __future__ import annotations

import ast
import importlib.util
import json
import pprint
import types
import uuid
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nas.builders.spec import ModelSpec
from nas.errors import NasError
from nas.export import standalone

TEMPLATE = Path(standalone.__file__)
ARCH_LINE = "ARCH: dict[str, Any] = {}"
TORCHVISION_OPS = ("deform_conv_3x3",)  # ops that only torchvision implements
SOURCE_FILE, SAFETENSORS_FILE, STATE_DICT_FILE = "model.py", "model.safetensors", "model_state_dict.pt"


def architecture(spec: ModelSpec, *, input_size: int = 32) -> dict[str, Any]:
    """The plain-data description :func:`standalone.build` reads."""
    net = spec.space.network
    common = {"num_classes": spec.num_classes, "in_channels": spec.in_channels, "input_size": input_size}
    if spec.space.kind == "chain":
        return {"kind": "chain", **common, "stem_channels": int(net.get("stem_channels", 32)),
                "stem_stride": int(net.get("stem_stride", 1)), "head_channels": int(net.get("head_channels", 1280)),
                "dropout": 0.2,  # the builder's fixed rate; inactive in eval mode
                "stages": [{"channels": st.channels, "stride": st.stride, "blocks": list(blocks)}
                           for blocks, st in zip(spec.genotype.stages, spec.space.stages)]}
    return {"kind": "cell", **common, "init_channels": spec.init_channels, "layers": spec.layers,
            "stem_multiplier": int(net.get("stem_multiplier", 3)), "inputs": spec.space.inputs,
            "reduction": net.get("reduction", "cell"), "head": net.get("head"),
            "cells": {name: {"nodes": [[[op, src] for op, src in node] for node in cell.nodes],
                             "concat": list(cell.concat)} for name, cell in spec.genotype.cells}}


def genotype_ops(spec: ModelSpec) -> set[str]:
    if spec.space.kind == "chain":
        return {op for stage in spec.genotype.stages for op in stage}
    return {op for _, cell in spec.genotype.cells for node in cell.nodes for op, _ in node}


def needs_torchvision(spec: ModelSpec) -> list[str]:
    return sorted(genotype_ops(spec) & set(TORCHVISION_OPS))


def standalone_network(spec: ModelSpec, state_dict: dict[str, torch.Tensor], *, input_size: int = 32) -> nn.Module:
    """The standalone definition built in this process with ``state_dict`` loaded: proves the
    export can express the architecture before any file is written."""
    arch = architecture(spec, input_size=input_size)
    try:
        network = standalone.build(arch)
    except ValueError as exc:  # an op registered in nas.ops but not mirrored in standalone.py
        raise NasError(f"the source export cannot express this network ({exc}); export it as pt2, torchscript "
                       "or onnx instead") from None
    missing, unexpected = network.load_state_dict(state_dict, strict=False)
    if missing or unexpected:
        raise NasError(f"the source export's network does not match the model (missing {missing[:3]}, unexpected "
                       f"{unexpected[:3]}); export it as pt2, torchscript or onnx instead")
    return network.eval()


def source_text(spec: ModelSpec, *, input_size: int = 32, title: str = "") -> str:
    """``standalone.py`` with a docstring for this network and ``ARCH`` filled in."""
    text = TEMPLATE.read_text()
    body_start = ast.parse(text).body[0].end_lineno  # the template's own docstring ends here
    body = "\n".join(text.splitlines()[body_start:]) + "\n"
    if body.count(ARCH_LINE) != 1:
        raise RuntimeError(f"{TEMPLATE} must hold exactly one line {ARCH_LINE!r}")
    arch = pprint.pformat(architecture(spec, input_size=input_size), width=110, sort_dicts=False)
    body = body.replace(ARCH_LINE, f"ARCH: dict[str, Any] = {arch}")
    return _docstring(spec, input_size=input_size, title=title) + body


def _docstring(spec: ModelSpec, *, input_size: int, title: str) -> str:
    try:
        version = metadata.version("nas")
    except metadata.PackageNotFoundError:
        version = "(source tree)"
    vision = needs_torchvision(spec)
    needs = ("PyTorch and torchvision: " + ", ".join(vision) + " is torchvision.ops.DeformConv2d, which torch\n"
             "alone cannot express; every other part is plain torch" if vision else "only PyTorch")
    if spec.space.kind == "chain":
        shape = f"{spec.space.name} chain of {sum(len(s) for s in spec.genotype.stages)} blocks"
    else:
        shape = f"{spec.space.name} cells, {spec.init_channels} initial channels, {spec.layers} layers"
    genotype = json.dumps(spec.genotype.to_dict(), separators=(",", ":"))
    return (f'"""{title or spec.space.name}: {shape}, {spec.num_classes} classes.\n\n'
            f"Exported by nas {version} with torch {torch.__version__}. Standalone: this file needs {needs}.\n"
            f"The architecture is the ``ARCH`` dict below; the weights are ``{SAFETENSORS_FILE}`` (read with\n"
            f"safetensors when it is installed) or ``{STATE_DICT_FILE}`` (read with\n"
            "``torch.load(weights_only=True)``) next to this file.\n\n"
            "    import torch\n"
            "    import model  # this file\n\n"
            "    net = model.load()  # eval mode, with the trained weights\n"
            f"    logits = net(torch.randn(1, {spec.in_channels}, {input_size}, {input_size}))\n\n"
            "``build()`` makes the same network with fresh weights. Training-only parts (auxiliary head,\n"
            "drop-path) are left out.\n\n"
            f"Genotype: {genotype}\n"
            '"""\n')


def write_source(spec: ModelSpec, state_dict: dict[str, torch.Tensor], out_dir: Path, *, input_size: int = 32,
                 title: str = "") -> list[Path]:
    """Write ``model.py``, ``model.safetensors`` and ``model_state_dict.pt``; returns their paths."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    source = out_dir / SOURCE_FILE
    _write_text(source, source_text(spec, input_size=input_size, title=title))
    tensors = out_dir / SAFETENSORS_FILE
    save_file(state, str(_tmp(tensors)), metadata={"format": "pt"})
    _tmp(tensors).replace(tensors)
    state_file = out_dir / STATE_DICT_FILE
    torch.save(state, _tmp(state_file))
    _tmp(state_file).replace(state_file)
    return [source, tensors, state_file]


def import_source(path: Path) -> types.ModuleType:
    """Import an exported ``model.py`` by path, under a fresh name (never cached as ``model``)."""
    spec = importlib.util.spec_from_file_location(f"nas_exported_{uuid.uuid4().hex}", path)
    if spec is None or spec.loader is None:
        raise NasError(f"cannot import {path}; is it an exported model.py?")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tmp(path: Path) -> Path:
    return path.with_name(path.name + ".tmp")


def _write_text(path: Path, text: str) -> None:
    _tmp(path).write_text(text)
    _tmp(path).replace(path)
