"""Export any trained network to files that load without ``nas``, and prove they compute the same.

One :func:`export` for classifiers, detectors and segmenters; the formats are the registry of
:mod:`nas.export.formats`. Each artifact is loaded back and run on example inputs; its largest
absolute difference from the in-engine model (CPU, float32, eval mode) must stay within
:data:`TOLERANCE`. The differences are recorded in ``manifest.json``.
"""
from __future__ import annotations

import contextlib
import copy
import importlib
import importlib.util
import io
import json
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from nas.builders.spec import ModelSpec
from nas.checkpoint import load_model
from nas.data.tasks import ShapesDataset
from nas.errors import NasError
from nas.export.formats import FORMATS, parse_formats
from nas.export.source import (
    import_source,
    needs_torchvision,
    source_text,
    write_source,
)
from nas.io import atomic_json
from nas.run import check_destination, fresh_folder, may_overwrite, read_config

TOLERANCE = 1e-4  # max abs difference allowed between an artifact and the model (float32, CPU)
MANIFEST = "manifest.json"
RUN_KINDS = ("train", "detect", "segment")  # run folders that hold a trained model's checkpoints
EXAMPLE_SEED = 1  # the shapes scenes a detector is compared on (the validation seed of `nas detect`)
_DETECTION_LIMITS = ("torchscript: the backbone + FPN is traced (its Python control flow fixed) and the torchvision "
                     "detector scripted; the loaded module returns (losses, detections). pt2 and ONNX are not offered "
                     "for detectors.")


@dataclass
class ExportJob:
    """What a format writer gets: the inference copy of the model, its spec, the folder, and the
    example inputs (a tensor batch; for detectors a list of image lists)."""

    model: nn.Module
    spec: ModelSpec | None
    out: Path
    inputs: Any
    name: str = ""
    cache: dict[str, Any] = field(default_factory=dict)  # shared between writers (pt2's program, for onnx)

    @property
    def example(self) -> Any:
        return self.inputs[0] if self.task == "detection" else self.inputs

    @property
    def task(self) -> str:
        return self.spec.task if self.spec is not None else "classification"


@dataclass
class Artifact:
    """What a writer made: its files (main file first), how to run it, and how it was verified.

    ``run`` maps the model's input to its output; ``None`` when nothing can run the file here
    (it is then only checked). For detectors ``pyramid`` maps a batch tensor to the FPN maps.
    """

    files: list[Path]
    run: Callable[[Any], Any] | None
    verified_with: str
    pyramid: Callable[[torch.Tensor], dict[str, torch.Tensor]] | None = None


def export(model_or_run: nn.Module | str | Path, formats: str | Sequence[str] = "source",
           out_dir: str | Path | None = None, *, spec: ModelSpec | None = None, name: str = "",
           example_input: torch.Tensor | None = None, overwrite: bool | None = None) -> dict[str, Path]:
    """Write ``model_or_run`` in each of ``formats`` to ``out_dir``; returns ``{format: main file}``.

    model_or_run: a network built by ``nas`` (pass its ``spec`` for the ``source`` format and for
        detectors / segmenters), a ``nas train`` / ``nas detect`` / ``nas segment`` run folder
        (its ``checkpoints/last.pt``) or a checkpoint file.
    out_dir: default ``<run>/export`` for a run (``<run>/export-2``, ... when that holds an earlier
        export); required for a module. It must not exist or be
        empty, unless ``overwrite`` (``None``: :func:`nas.run.may_overwrite`): then the files of the
        same names are replaced, and an earlier export of the same model keeps its other formats
        in ``manifest.json``; no other file is touched.
    example_input: the input traced and compared on; default two seeded random images of the
        run's size (for detectors: two scenes of the shapes data, and one narrower image).
    name: the title of the standalone source.

    >>> from nas.builders import ModelSpec
    >>> spec = ModelSpec.create("NB201_RESNET", layers=5, init_channels=4)
    >>> paths = export(spec.build(), "all", "/tmp/nb201", spec=spec)  # doctest: +SKIP
    >>> sorted(paths)  # doctest: +SKIP
    ['onnx', 'pt2', 'source', 'torchscript']
    """
    if isinstance(model_or_run, nn.Module):
        model, default_out, size = model_or_run, None, None
    else:
        model, spec, default_out, size = _resolve(model_or_run)
    task = spec.task if spec is not None else "classification"
    names = parse_formats(formats, task)
    for fmt in names:  # a missing optional library fails before anything is written
        _check_available(fmt)
    if out_dir is None and default_out is None:
        raise NasError("pass out_dir: the folder to write the exported files to")
    out = Path(out_dir) if out_dir is not None else fresh_folder(default_out)
    if spec is None and ("source" in names or task != "classification"):
        raise NasError("the source export needs the architecture: pass spec=ModelSpec(...), a run folder or a "
                       "checkpoint")
    overwrite = may_overwrite(out) if overwrite is None else overwrite
    check_destination(out, overwrite=overwrite, hint=" (an earlier export's)")
    manifest_path = out / MANIFEST
    manifest = _read_manifest(manifest_path)
    model_data = spec.to_dict() if spec is not None else None
    if manifest.get("model") != model_data:
        manifest = {"formats": {}}  # another model's export is replaced, not added to
    model = _inference_copy(model)
    inputs = _inputs(spec, example_input, size)
    job = ExportJob(model, spec, out, inputs, name)
    with torch.no_grad():
        reference = _run_model(job)
    if task != "detection" and not isinstance(reference, torch.Tensor):
        raise NasError("export needs a model whose eval-mode forward returns one tensor (a classifier's logits)")
    vision = _needs_torchvision(spec, strict="source" in names)  # fails before anything is written
    if "source" in names:
        if task == "classification" and vision:
            warnings.warn("the standalone source imports torchvision (torchvision.ops.DeformConv2d for the "
                          "deform_conv_3x3 op); every other part needs only torch", stacklevel=2)
    out.mkdir(parents=True, exist_ok=True)
    shape = list(job.example.shape) if task != "detection" else [len(job.example), *job.example[0].shape]
    manifest.update({"task": task, "example_input_shape": shape, "tolerance": TOLERANCE, "torch": torch.__version__,
                     "requires": ["torch", "torchvision"] if vision else ["torch"], "model": model_data})
    if task == "detection":
        manifest["limits"] = _DETECTION_LIMITS
    _write_manifest(manifest_path, manifest)  # first, so that an interrupted export still marks its folder
    results: dict[str, Path] = {}
    for fmt in names:
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # jit / export deprecation notices, the deform-conv notice given above
            artifact = _writer(fmt)(job)
            with torch.no_grad():
                diff = _difference(job, reference, artifact)
        if diff is not None and not diff <= TOLERANCE:
            for f in artifact.files:
                f.unlink(missing_ok=True)
            manifest["formats"].pop(fmt, None)  # an earlier export's entry for these files no longer holds
            _write_manifest(manifest_path, manifest)
            raise NasError(f"the {fmt} export differs from the model by {diff:.2e} (more than {TOLERANCE:g}) on "
                           "the example input, so it was not kept; export another format")
        manifest["formats"][fmt] = {
            "file": artifact.files[0].name, "files": [f.name for f in artifact.files], "max_abs_diff": diff,
            "verified_with": artifact.verified_with, "seconds": round(time.perf_counter() - started, 2)}
        results[fmt] = artifact.files[0]
        # after every format, so that a later format's failure leaves no file the manifest does not vouch for
        _write_manifest(manifest_path, manifest)
    return results


def _write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    atomic_json(path, manifest)


def _needs_torchvision(spec: ModelSpec | None, *, strict: bool) -> bool:
    """Whether the model's source imports torchvision; the source export's errors (an op it
    cannot copy) are raised when ``strict``, else they only concern a format not asked for."""
    if spec is None:
        return False
    try:
        return needs_torchvision(source_text(spec))
    except NasError:
        if strict:
            raise
        return False


def _writer(fmt: str) -> Callable[[ExportJob], Artifact]:
    writer = FORMATS[fmt].writer
    if isinstance(writer, str):
        module, _, function = writer.partition(":")
        writer = getattr(importlib.import_module(module), function)
    return writer


def _resolve(target: str | Path) -> tuple[nn.Module, ModelSpec, Path | None, int | None]:
    """``(model, spec, default out folder, input size)`` of a run folder or checkpoint."""
    path = Path(target)
    if path.is_dir():
        kind = run_kind(path)
        if kind not in RUN_KINDS:
            raise NasError(f"{path} is a {kind!r} run, not a trained model; `nas export` exports its genotype "
                           "untrained, or pass a `nas train` / `nas detect` / `nas segment` run")
        checkpoint = path / "checkpoints" / "last.pt"
        if not checkpoint.is_file():
            raise NasError(f"{path} has no checkpoints/last.pt; pass a run folder that finished an epoch")
    else:
        checkpoint = path
    model, spec, _ = load_model(checkpoint)
    size = spec.image_size
    config = (path if path.is_dir() else path.parent.parent) / "config.json"
    if spec.task == "classification" and config.is_file():
        with contextlib.suppress(NasError, AttributeError):
            size = read_config(config).get("train", {}).get("image_size")
    return model, spec, (path / "export" if path.is_dir() else None), size


def run_kind(path: str | Path) -> str:
    """The ``kind`` in a run folder's ``config.json`` (``"train"``, ``"detect"``, a search strategy...);
    a :class:`NasError` when the folder is no run or its config is damaged (:func:`nas.run.read_config`)."""
    config = Path(path) / "config.json"
    if not config.is_file():
        raise NasError(f"{path} is not a run folder (no config.json); pass a run folder, a checkpoint or a genotype")
    return read_config(config)["kind"]


def _inference_copy(model: nn.Module) -> nn.Module:
    """A CPU float32 eval-mode copy without the auxiliary head (a training-only branch)."""
    model = copy.deepcopy(model).to("cpu", torch.float32).to(memory_format=torch.contiguous_format).eval()
    if getattr(model, "auxiliary", None) is not None:
        model.auxiliary = None
    if hasattr(model, "set_drop_path"):
        model.set_drop_path(0.0)
    return model


def _inputs(spec: ModelSpec | None, example: torch.Tensor | None, size: int | None) -> Any:
    task = spec.task if spec is not None else "classification"
    if task == "detection":
        if example is not None:
            images = [image.detach().to("cpu", torch.float32) for image in example]
        else:
            data = ShapesDataset(2, image_size=spec.image_size, seed=EXAMPLE_SEED)
            images = [data[i][0] for i in range(2)]
        # one batch, and one narrower image alone (another padded shape)
        return [images, [images[0][:, :, : images[0].shape[-1] * 3 // 4]]]
    if example is not None:
        return example.detach().to("cpu", torch.float32).contiguous()
    channels = spec.in_channels if spec is not None else 3
    size = size or (spec.image_size if spec is not None else None) or 32
    return torch.randn(2, channels, size, size, generator=torch.Generator().manual_seed(0))


def _run_model(job: ExportJob) -> Any:
    return [job.model(images) for images in job.inputs] if job.task == "detection" else job.model(job.inputs)


def _difference(job: ExportJob, reference: Any, artifact: Artifact) -> float | None:
    if artifact.run is None:
        return None
    if job.task != "detection":
        return (artifact.run(job.inputs).float() - reference).abs().max().item()
    return _detection_difference(job, reference, artifact)


def _detection_difference(job: ExportJob, reference: list[list[dict[str, torch.Tensor]]], artifact: Artifact) -> float:
    """Largest difference of boxes, scores and FPN maps over the inputs; infinite when the
    detections themselves differ (count or labels)."""
    worst = 0.0
    for images, expected_all in zip(job.inputs, reference):
        for expected, got in zip(expected_all, artifact.run(images)):
            if len(expected["boxes"]) != len(got["boxes"]) or not torch.equal(expected["labels"], got["labels"]):
                return float("inf")
            for key in ("boxes", "scores"):
                if len(expected[key]):
                    worst = max(worst, (expected[key] - got[key]).abs().max().item())
        # the pyramid is compared too: an untrained model may detect nothing at all
        tensors = job.model.transform(images)[0].tensors
        maps = job.model.backbone(tensors)
        for key, value in artifact.pyramid(tensors).items():
            worst = max(worst, (value - maps[key]).abs().max().item())
    return worst


def _read_manifest(path: Path) -> dict[str, Any]:
    if path.is_file():
        try:
            data = json.loads(path.read_text())
            if isinstance(data, dict) and isinstance(data.get("formats"), dict):
                return data
        except (ValueError, RecursionError):
            pass  # a damaged manifest (not JSON, not UTF-8, nested too deeply) is rewritten from scratch
    return {"formats": {}}


# -- the writers of the built-in formats (registered in nas.export.formats) --------------------------------
def write_source_format(job: ExportJob) -> Artifact:
    size = job.example.shape[-1] if job.task == "classification" else None
    files = write_source(job.spec, job.model.state_dict(), job.out, title=job.name, input_size=size)
    network = import_source(files[0]).load(files[1])
    return Artifact(files, network, "the written model.py imported and run with model.safetensors",
                    pyramid=network.backbone if job.task == "detection" else None)


def _program(job: ExportJob, fmt: str) -> torch.export.ExportedProgram:
    if "program" not in job.cache:
        try:
            # AUTO lets the batch stay dynamic where the graph allows it, without failing on batch 1
            job.cache["program"] = torch.export.export(job.model, (job.inputs,),
                                                       dynamic_shapes=({0: torch.export.Dim.AUTO},))
        except Exception as exc:  # torch.export raises many internal types
            raise NasError(f"{fmt} export failed: torch.export cannot capture the model ({type(exc).__name__}: "
                           f"{str(exc).splitlines()[0][:200]}); try --format source or torchscript") from None
    return job.cache["program"]


def write_pt2(job: ExportJob) -> Artifact:
    path = job.out / "model.pt2"
    torch.export.save(_program(job, "pt2"), path)
    return Artifact([path], torch.export.load(path).module(), "torch.export.load(...).module()")


def write_torchscript(job: ExportJob) -> Artifact:
    path = job.out / "model.torchscript.pt"
    try:
        if job.task == "detection":
            script_detector(job.model, job.inputs[0]).save(str(path))
        else:
            torch.jit.trace(job.model, (job.inputs,), check_trace=False).save(str(path))
        loaded = torch.jit.load(str(path), map_location="cpu")
    except NasError:
        raise
    except Exception as exc:  # jit raises many internal types
        raise NasError(f"torchscript export failed ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
                       "try --format source") from None
    if job.task == "detection":
        # scripted detectors return (losses, detections)
        return Artifact([path], lambda images: loaded(images)[1], "torch.jit.load; detections compared on two batches",
                        pyramid=loaded.backbone)
    return Artifact([path], loaded, "torch.jit.load")


def script_detector(model: nn.Module, images: Sequence[torch.Tensor]) -> torch.jit.ScriptModule:
    """TorchScript of a torchvision detector on any backbone: the backbone + FPN is traced on the
    padded batch the detector's transform makes of ``images`` (the cells' Python control flow is
    then fixed; the ops stay shape-generic), and the detector around it is scripted."""
    model = copy.deepcopy(model).eval()
    with torch.no_grad():
        batch, _ = model.transform(list(images))
    model.backbone = torch.jit.trace(model.backbone, (batch.tensors,), strict=False, check_trace=False)
    return torch.jit.script(model)


def _check_available(fmt: str) -> None:
    """Raise :class:`NasError` when a format's optional libraries are not installed."""
    missing = [name for name in _OPTIONAL.get(fmt, ()) if importlib.util.find_spec(name) is None]
    if missing:
        raise NasError(f"the {fmt} export needs {' and '.join(missing)}, which is not installed: "
                       f"pip install {' '.join(missing)} (or the project's [onnx] extra), or choose another format")


_OPTIONAL = {"onnx": ("onnx", "onnxscript")}  # onnxruntime, when present, checks the file too


def write_onnx(job: ExportJob) -> Artifact:
    path = job.out / "model.onnx"
    program = _program(job, "onnx")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            torch.onnx.export(program, (job.inputs,), str(path), dynamo=True, input_names=["images"],
                              output_names=["logits"], external_data=False, verbose=False)
    except Exception as exc:
        raise NasError(f"onnx export failed ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
                       "try --format pt2 or source") from None
    try:
        import onnxruntime
    except ImportError:
        import onnx

        onnx.checker.check_model(str(path))
        return Artifact([path], None, "onnx.checker (onnxruntime not installed)")
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    return Artifact([path], lambda x: torch.from_numpy(session.run(None, {input_name: x.numpy()})[0]),
                    "onnxruntime CPUExecutionProvider")
