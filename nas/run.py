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
from nas.io import atomic_json, atomic_write

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
        self.append_record("metrics.jsonl", record)
        if step is not None:
            writer = self.tensorboard()
            for key, value in record.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and key not in ("epoch", "step"):
                    writer.add_scalar(f"{prefix}{key}", value, step)
            writer.flush()

    def append_record(self, name: str, record: dict[str, Any]) -> None:
        """Append one JSON line to ``name``. A kill mid-write leaves a torn last line: the next
        append starts on a line of its own, and :meth:`read_records` skips the torn one."""
        with open(self.path / name, "a+b") as f:
            if f.tell() > 0:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    f.write(b"\n")
            f.write((json.dumps(_jsonable(record)) + "\n").encode())

    def read_records(self, name: str) -> list[dict[str, Any]]:
        """The records of the JSON-lines file ``name`` (none if it is missing); a line a kill
        tore (not JSON, or not an object) is skipped."""
        path = self.path / name
        if not path.exists():
            return []
        records = []
        for line in path.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                records.append(record)
        return records

    def write_records(self, name: str, records: list[dict[str, Any]]) -> Path:
        """Replace the JSON-lines file ``name`` with ``records``, atomically."""
        return atomic_write(self.path / name, "".join(json.dumps(_jsonable(r)) + "\n" for r in records))

    def metrics(self) -> list[dict[str, Any]]:
        return self.read_records("metrics.jsonl")

    def trim_epochs(self, name: str, last: int, *, key: str = "epoch") -> list[dict[str, Any]]:
        """Repair the per-epoch log ``name`` on resume: keep the records of epochs 1..``last``
        (by their ``key`` field, each epoch once, in order) and drop torn lines and the epochs a
        killed run logged after its checkpoint. Returns the records kept."""
        kept: dict[int, dict[str, Any]] = {}
        for record in self.read_records(name):
            epoch = record.get(key)
            if isinstance(epoch, int) and not isinstance(epoch, bool) and 1 <= epoch <= last:
                kept.setdefault(epoch, record)
        records = [kept[e] for e in sorted(kept)]
        self.write_records(name, records)
        return records

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
