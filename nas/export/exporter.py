"""Export a trained network to files that load without ``nas``, and prove they compute the same.

Formats: ``source`` (standalone Python file + safetensors / state-dict weights), ``pt2``
(``torch.export``), ``torchscript`` (``torch.jit.trace``) and ``onnx`` (the dynamo exporter,
checked with onnxruntime when installed). Each artifact is loaded back and run on the example
input; its largest absolute difference from the in-engine model (CPU, eval mode) must stay
within :data:`TOLERANCE`. The differences are recorded in ``manifest.json``.
"""
from __future__ import annotations

import contextlib
import copy
import io
import json
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from nas.builders.spec import ModelSpec
from nas.checkpoint import load_model
from nas.errors import NasError
from nas.export import source as source_export

FORMATS = ("source", "pt2", "torchscript", "onnx")
TOLERANCE = 1e-4  # max abs difference allowed between an artifact and the model (float32, CPU)
FILES = {"pt2": "model.pt2", "torchscript": "model.torchscript.pt", "onnx": "model.onnx"}
MANIFEST = "manifest.json"


def parse_formats(formats: str | Sequence[str]) -> tuple[str, ...]:
    """``"all"``, ``"source,onnx"`` or a list of names -> known format names, in order, once each."""
    names = [formats] if isinstance(formats, str) else list(formats)
    parsed: list[str] = []
    for name in (part.strip().lower() for item in names for part in str(item).split(",")):
        if name == "all":
            parsed += FORMATS
        elif name in FORMATS:
            parsed.append(name)
        else:
            raise NasError(f"unknown export format {name!r}; choose from {', '.join(FORMATS)} or all")
    if not parsed:
        raise NasError(f"no export format given; choose from {', '.join(FORMATS)} or all")
    return tuple(dict.fromkeys(parsed))


def export(model_or_run: nn.Module | str | Path, formats: str | Sequence[str] = "source",
           out_dir: str | Path | None = None, *, example_input: torch.Tensor | None = None,
           spec: ModelSpec | None = None, name: str = "") -> dict[str, Path]:
    """Write ``model_or_run`` in each of ``formats`` to ``out_dir``; returns ``{format: main file}``.

    model_or_run: a network built by ``nas`` (pass ``spec`` for the ``source`` format), a
        ``nas train`` run folder (its ``checkpoints/last.pt``) or a checkpoint file.
    out_dir: default ``<run>/export`` for a run; required for a module. Files of other formats
        already there stay, and ``manifest.json`` keeps their entries.
    example_input: the input traced and compared on; default two seeded random images of the
        run's size (32 x 32 for a module).
    name: the title of the standalone source (default: the space name).

    >>> from nas.builders import ModelSpec
    >>> from nas.genotype import get_reference
    >>> spec = ModelSpec.create(get_reference("NB201_RESNET"), layers=5, init_channels=4)
    >>> paths = export(spec.build(), "all", "/tmp/nb201", spec=spec)  # doctest: +SKIP
    >>> sorted(paths)  # doctest: +SKIP
    ['onnx', 'pt2', 'source', 'torchscript']
    """
    names = parse_formats(formats)
    model, spec, input_size, default_out = _resolve(model_or_run, spec)
    if out_dir is None and default_out is None:
        raise NasError("pass out_dir: the folder to write the exported files to")
    out = Path(out_dir) if out_dir is not None else default_out
    if example_input is None:
        channels = spec.in_channels if spec is not None else 3
        example_input = torch.randn(2, channels, input_size, input_size, generator=torch.Generator().manual_seed(0))
    x = example_input.detach().to("cpu", torch.float32).contiguous()
    model = _inference_copy(model)
    with torch.no_grad():
        reference = model(x)
    if not isinstance(reference, torch.Tensor):
        raise NasError("export needs a model whose eval-mode forward returns one tensor (a classifier's logits)")

    state = model.state_dict()
    if "source" in names:
        if spec is None:
            raise NasError("the source export needs the architecture: pass spec=ModelSpec(...), a run folder or a "
                           "checkpoint")
        source_export.standalone_network(spec, state, input_size=x.shape[-1])  # fails before writing anything
        vision_ops = source_export.needs_torchvision(spec)
        if vision_ops:
            warnings.warn(f"the standalone source imports torchvision for {', '.join(vision_ops)} "
                          "(torchvision.ops.DeformConv2d); every other part needs only torch", stacklevel=2)
    out.mkdir(parents=True, exist_ok=True)

    writers: dict[str, Callable[[], tuple[list[Path], Callable[[], torch.Tensor]]]] = {
        "source": lambda: _source(spec, state, out, x, name),
        "pt2": lambda: _pt2(programs, model, x, out),
        "torchscript": lambda: _torchscript(model, x, out),
        "onnx": lambda: _onnx(programs, model, x, out),
    }
    programs: dict[str, torch.export.ExportedProgram] = {}  # pt2's program, reused by onnx
    manifest_path = out / MANIFEST
    manifest = _read_manifest(manifest_path)
    results: dict[str, Path] = {}
    for fmt in names:
        started = time.perf_counter()
        files, run_artifact = writers[fmt]()
        with torch.no_grad():
            output = run_artifact()
        diff = None if output is None else (output.float() - reference).abs().max().item()
        if diff is not None and not diff <= TOLERANCE:
            for f in files:
                f.unlink(missing_ok=True)
            raise NasError(f"the {fmt} export differs from the model by {diff:.2e} (more than {TOLERANCE:g}) on "
                           "the example input, so it was not kept; export another format")
        manifest["formats"][fmt] = {
            "file": files[0].name, "files": [f.name for f in files], "max_abs_diff": diff,
            "verified_with": _VERIFIED_WITH[fmt] if output is not None else "onnx.checker (onnxruntime not installed)",
            "seconds": round(time.perf_counter() - started, 2)}
        results[fmt] = files[0]
    vision = spec is not None and bool(source_export.needs_torchvision(spec))
    manifest.update({
        "example_input_shape": list(x.shape), "tolerance": TOLERANCE, "torch": torch.__version__,
        "requires": ["torch", "torchvision"] if vision else ["torch"],
        "model": spec.to_dict() if spec is not None else None})
    tmp = manifest_path.with_name(MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    tmp.replace(manifest_path)
    return results


_VERIFIED_WITH = {"source": "the written model.py imported and run with model.safetensors",
                  "pt2": "torch.export.load(...).module()", "torchscript": "torch.jit.load",
                  "onnx": "onnxruntime CPUExecutionProvider"}


def _resolve(target: nn.Module | str | Path, spec: ModelSpec | None
             ) -> tuple[nn.Module, ModelSpec | None, int, Path | None]:
    """``(model, spec, input size, default out folder)`` of a module, run folder or checkpoint."""
    if isinstance(target, nn.Module):
        return target, spec, 32, None
    path = Path(target)
    checkpoint = path / "checkpoints" / "last.pt" if path.is_dir() else path
    if path.is_dir() and not checkpoint.is_file():
        raise NasError(f"{path} has no checkpoints/last.pt; pass a `nas train` run folder that finished an epoch")
    model, saved_spec, _ = load_model(checkpoint)
    input_size = 32
    config = (path if path.is_dir() else path.parent.parent) / "config.json"
    if config.is_file():
        image_size = json.loads(config.read_text()).get("train", {}).get("image_size")
        input_size = image_size or input_size
    return model, saved_spec, input_size, (path / "export" if path.is_dir() else None)


def _inference_copy(model: nn.Module) -> nn.Module:
    """A CPU float32 eval-mode copy without the auxiliary head (a training-only branch)."""
    model = copy.deepcopy(model).to("cpu", torch.float32).to(memory_format=torch.contiguous_format).eval()
    if getattr(model, "auxiliary", None) is not None:
        model.auxiliary = None
    if hasattr(model, "set_drop_path"):
        model.set_drop_path(0.0)
    return model


def _read_manifest(path: Path) -> dict[str, Any]:
    if path.is_file():
        try:
            data = json.loads(path.read_text())
            if isinstance(data, dict) and isinstance(data.get("formats"), dict):
                return data
        except json.JSONDecodeError:
            pass  # a damaged manifest is rewritten from scratch
    return {"formats": {}}


def _source(spec: ModelSpec, state: dict[str, torch.Tensor], out: Path, x: torch.Tensor, title: str):
    files = source_export.write_source(spec, state, out, input_size=x.shape[-1], title=title)
    module = source_export.import_source(files[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the deform-conv notice was given once already
        network = module.load(files[1])
    return files, lambda: network(x)


def _dynamic_batch() -> tuple[dict[int, Any]]:
    # AUTO lets the batch stay dynamic where the graph allows it, without failing on batch 1
    return ({0: torch.export.Dim.AUTO},)


def _program(programs: dict[str, torch.export.ExportedProgram], model: nn.Module, x: torch.Tensor,
             fmt: str) -> torch.export.ExportedProgram:
    if "program" not in programs:
        try:
            programs["program"] = torch.export.export(model, (x,), dynamic_shapes=_dynamic_batch())
        except Exception as exc:  # torch.export raises many internal types
            raise NasError(f"{fmt} export failed: torch.export cannot capture the model ({type(exc).__name__}: "
                           f"{str(exc).splitlines()[0][:200]}); try --format source or torchscript") from None
    return programs["program"]


def _pt2(programs: dict[str, torch.export.ExportedProgram], model: nn.Module, x: torch.Tensor, out: Path):
    path = out / FILES["pt2"]
    torch.export.save(_program(programs, model, x, "pt2"), path)
    loaded = torch.export.load(path).module()
    return [path], lambda: loaded(x)


def _torchscript(model: nn.Module, x: torch.Tensor, out: Path):
    path = out / FILES["torchscript"]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # jit is deprecated in favour of torch.export; still widely deployed
            traced = torch.jit.trace(model, (x,), check_trace=False)
            traced.save(str(path))
            loaded = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        raise NasError(f"torchscript export failed ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
                       "try --format pt2 or source") from None
    return [path], lambda: loaded(x)


def _onnx(programs: dict[str, torch.export.ExportedProgram], model: nn.Module, x: torch.Tensor, out: Path):
    path = out / FILES["onnx"]
    program = _program(programs, model, x, "onnx")
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            torch.onnx.export(program, (x,), str(path), dynamo=True, input_names=["images"],
                              output_names=["logits"], external_data=False, verbose=False)
    except Exception as exc:
        raise NasError(f"onnx export failed ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
                       "try --format pt2 or source") from None
    try:
        import onnxruntime
    except ImportError:
        import onnx

        onnx.checker.check_model(str(path))
        return [path], lambda: None
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    return [path], lambda: torch.from_numpy(session.run(None, {input_name: x.numpy()})[0])
