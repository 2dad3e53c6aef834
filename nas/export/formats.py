"""The registry of export formats: each one a name, the tasks it serves and its writer.

Light on purpose (no torch at import): settings and the ``nas`` command check format names
against :data:`FORMATS` before anything heavy loads. The writer is named as
``"module:function"`` and imported when the format is used (:mod:`nas.export.exporter`).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Callable

from nas.config import TASKS
from nas.errors import NasError


@dataclass(frozen=True)
class ExportFormat:
    name: str
    tasks: tuple[str, ...]
    writer: str | Callable[..., Any]  # "module:function" or the function: writer(job) -> Artifact
    description: str


FORMATS: dict[str, ExportFormat] = {}


def register_format(name: str, *, tasks: Sequence[str], writer: str | Callable[..., Any], description: str) -> None:
    """Add an export format; ``writer(job)`` writes its files and returns what loads them back."""
    if name in FORMATS or name == "all":
        raise RuntimeError(f"export format {name!r} registered twice")
    FORMATS[name] = ExportFormat(name, tuple(tasks), writer, description)


def formats_for(task: str) -> tuple[str, ...]:
    """The format names available for ``task``, in registration order."""
    return tuple(name for name, fmt in FORMATS.items() if task in fmt.tasks)


def parse_formats(formats: str | Sequence[str], task: str | None = "classification") -> tuple[str, ...]:
    """``"all"``, ``"source,onnx"`` or a list of names -> the formats of ``task`` (``None``: of any
    task), in order, once each."""
    allowed = tuple(FORMATS) if task is None else formats_for(task)
    names = [formats] if isinstance(formats, str) else list(formats)
    parsed: list[str] = []
    for name in (part.strip().lower() for item in names for part in str(item).split(",") if part.strip()):
        if name == "all":
            parsed += allowed
        elif name in allowed:
            parsed.append(name)
        elif name in FORMATS:
            why = (" (torchvision's detectors do not capture with torch.export / ONNX; use torchscript)"
                   if task == "detection" and name in ("pt2", "onnx") else "")
            raise NasError(f"export format {name!r} is not available for {task}{why}; choose from "
                           f"{', '.join(allowed)} or all")
        else:
            raise NasError(f"unknown export format {name!r}; choose from {', '.join(allowed)} or all")
    if not parsed:
        raise NasError(f"no export format given; choose from {', '.join(allowed)} or all")
    return tuple(dict.fromkeys(parsed))


register_format("source", tasks=TASKS, writer="nas.export.exporter:write_source_format",
                description="model.py (the model's own classes) + model.safetensors / model_state_dict.pt")
register_format("pt2", tasks=("classification", "segmentation"), writer="nas.export.exporter:write_pt2",
                description="torch.export program (model.pt2)")
register_format("torchscript", tasks=TASKS, writer="nas.export.exporter:write_torchscript",
                description="TorchScript (model.torchscript.pt): traced; detectors scripted around a traced backbone")
register_format("onnx", tasks=("classification", "segmentation"), writer="nas.export.exporter:write_onnx",
                description="ONNX (model.onnx, dynamo exporter), checked with onnxruntime when installed")
