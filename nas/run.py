"""Run folders: every run writes into a new folder that is never overwritten.

A run folder holds ``config.json`` (resolved settings, seed), ``versions.json`` (library
versions and device), ``metrics.jsonl`` (one JSON object per epoch / trial), TensorBoard
events under ``tensorboard/``, checkpoints under ``checkpoints/``, genotypes, plots and exports.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import random
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nas.errors import NasError
from nas.io import atomic_json

DEFAULT_ROOT = Path(os.environ.get("NAS_RUNS", "runs"))


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) so a run is reproducible on the CPU."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def versions() -> dict[str, Any]:
    info: dict[str, Any] = {"python": sys.version.split()[0], "platform": platform.platform()}
    for pkg in ("nas", "torch", "torchvision", "numpy", "optuna", "ray", "networkx"):
        try:
            info[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            info[pkg] = None
    info["cuda"] = torch.version.cuda if torch.cuda.is_available() else None
    info["device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else cpu_name()
    info["cpus"] = os.cpu_count()
    return info


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux), else what :mod:`platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    return obj


class Run:
    """A run folder. ``Run.create`` makes a new one; ``Run.open`` reopens one to resume."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._writer = None

    @classmethod
    def create(cls, kind: str, config: dict[str, Any], *, out: str | Path | None = None,
               name: str | None = None) -> "Run":
        """Make ``out`` (which must not exist) or a fresh ``runs/<kind>-<name>-<time>`` folder."""
        if out is not None:
            path = Path(out)
            if path.exists() and not path.is_dir():
                raise NasError(f"{path} is a file, not a folder; choose a new --out")
            if path.exists() and any(path.iterdir()):
                raise NasError(f"run folder {path} already exists and is not empty; choose a new --out "
                               "or pass --resume to continue it")
            path.mkdir(parents=True, exist_ok=True)
        else:
            stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
            base = DEFAULT_ROOT / "-".join(p for p in (kind, name, stamp) if p)
            path = base
            for i in range(1, 1000):
                try:
                    path.mkdir(parents=True, exist_ok=False)
                    break
                except FileExistsError:
                    path = base.with_name(f"{base.name}-{i}")
        run = cls(path)
        run.write_json("config.json", {"kind": kind, **config})
        run.write_json("versions.json", versions())
        return run

    @classmethod
    def open(cls, path: str | Path) -> "Run":
        path = Path(path)
        if not (path / "config.json").is_file():
            raise NasError(f"{path} is not a run folder (no config.json); pass the folder a run printed")
        return cls(path)

    @property
    def config(self) -> dict[str, Any]:
        return json.loads((self.path / "config.json").read_text())

    def write_json(self, name: str, obj: Any) -> Path:
        return atomic_json(self.path / name, _jsonable(obj))  # a kill never leaves half a file

    def log(self, record: dict[str, Any], *, step: int | None = None, prefix: str = "") -> None:
        """Append one record to ``metrics.jsonl`` and its numbers to TensorBoard."""
        record = _jsonable(record)
        with open(self.path / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        if step is not None:
            writer = self.tensorboard()
            for key, value in record.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and key not in ("epoch", "step"):
                    writer.add_scalar(f"{prefix}{key}", value, step)
            writer.flush()

    def metrics(self) -> list[dict[str, Any]]:
        path = self.path / "metrics.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def truncate_metrics(self, keep: int) -> None:
        """Keep the first ``keep`` records (used on resume, to drop epochs after the checkpoint)."""
        self.truncate_records("metrics.jsonl", keep)

    def truncate_records(self, name: str, keep: int) -> None:
        """Keep the first ``keep`` lines of the JSON-lines file ``name`` (an empty file if it has none)."""
        path = self.path / name
        lines = [line for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
        path.write_text("".join(line + "\n" for line in lines[:keep]))

    def tensorboard(self):
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.path / "tensorboard"))
        return self._writer

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else the CPU; asking for CUDA without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise NasError(f"--device {name} asked for, but no CUDA GPU is available; use --device cpu or auto")
    try:
        return torch.device(name)
    except RuntimeError:
        raise NasError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
