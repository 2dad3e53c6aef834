"""Run folders: every run writes into a new folder that is never overwritten.

A run folder holds ``config.json`` (resolved settings, seed), ``versions.json`` (library
versions and device), ``metrics.jsonl`` (one JSON object per epoch / trial), TensorBoard
events under ``tensorboard/``, checkpoints under ``checkpoints/``, genotypes, plots and exports.
"""
from __future__ import annotations

import contextvars
import datetime as _dt
import json
import os
import platform
import random
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nas.errors import NasError
from nas.io import atomic_json, atomic_write

DEFAULT_ROOT = Path(os.environ.get("NAS_RUNS", "runs"))
# what a new run replaces when it is created in the folder of an earlier one (``--overwrite``):
# the records it appends to and the state a ``--resume`` would read back; every other file stays
REPLACED_ON_OVERWRITE = ("metrics.jsonl", "genotypes.jsonl", "result.json", "study.db", "study.db-journal",
                         "study.db-wal", "study.db-shm", "checkpoints/last.pt", "checkpoints/best.pt")
_OVERWRITABLE: contextvars.ContextVar[tuple[Path, ...]] = contextvars.ContextVar("nas_overwritable", default=())


@contextmanager
def allow_overwrite(path: str | Path | None) -> Iterator[None]:
    """Within the block, a new run (:meth:`Run.create`) or export may write into the existing,
    non-empty folder ``path`` or a folder below it, replacing its files of the same names (the
    ``--overwrite`` of the ``nas`` commands); no other file is touched. ``None``: nothing."""
    if path is None:
        yield
        return
    token = _OVERWRITABLE.set((*_OVERWRITABLE.get(), Path(path).resolve()))
    try:
        yield
    finally:
        _OVERWRITABLE.reset(token)


def may_overwrite(path: str | Path) -> bool:
    """Whether ``path`` lies in a folder given to :func:`allow_overwrite`."""
    resolved = Path(path).resolve()
    return any(resolved == allowed or allowed in resolved.parents for allowed in _OVERWRITABLE.get())


def fresh_folder(path: str | Path) -> Path:
    """``path`` when it is missing or empty, else the first missing or empty ``path-2``,
    ``path-3``, ...: where a command writes by default without touching an earlier result."""
    path = Path(path)
    for i in range(1, 10_000):
        candidate = path if i == 1 else path.with_name(f"{path.name}-{i}")
        if not candidate.exists() or (candidate.is_dir() and not any(candidate.iterdir())):
            return candidate
    raise NasError(f"{path}: 10,000 earlier folders of this name; pass --out")


def check_destination(path: str | Path, *, overwrite: bool | None = None, option: str = "--out",
                      hint: str = "") -> Path:
    """Refuse ``path`` as a folder to write into, before anything is made: a file, a path below a
    file, a folder that cannot be written, or a non-empty folder (unless ``overwrite``; ``None``:
    :func:`may_overwrite`). ``option`` names the input in the message, ``hint`` adds what else
    the user may do. Returns ``path`` as a :class:`Path`; creates nothing."""
    path = Path(path)
    existing = _nearest_existing(path, option)
    if existing is None:
        return path
    if not existing.is_dir():
        where = "is a file" if existing == path else f"lies below {existing}, which is a file"
        raise NasError(f"{option} {path} {where}, not a folder; choose another {option}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise NasError(f"{option} {path}: {existing} cannot be written to (permission denied); choose another "
                       f"{option}")
    if existing == path:
        try:
            empty = not any(path.iterdir())
        except OSError as exc:
            raise NasError(f"{option} {path} cannot be read ({exc.strerror}); choose another {option}") from None
        if not empty and not (may_overwrite(path) if overwrite is None else overwrite):
            raise NasError(f"{option} {path} already exists and is not empty; choose a new {option}, or pass "
                           f"--overwrite to replace its files of the same names{hint}")
    return path


def _nearest_existing(path: Path, option: str) -> Path | None:
    """``path`` or its nearest ancestor that exists (``None`` if none does)."""
    for candidate in (path, *path.parents):
        try:
            candidate.stat()
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as exc:
            raise NasError(f"{option} {path}: {candidate} cannot be read ({exc.strerror}); choose another "
                           f"{option}") from None
        return candidate
    return None


def read_config(path: str | Path) -> dict[str, Any]:
    """A run's ``config.json``, checked: a file that cannot be read, is no JSON object or names
    no run ``kind`` is a one-line :class:`NasError` naming it. A setting the file lacks is one
    too (``config["model"]`` of a damaged file), at every level of the file."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
        config = json.loads(text, object_hook=lambda items: _RunConfig(items, path))
    except OSError as exc:
        raise NasError(f"{path} cannot be read ({exc.strerror}); pass a run folder that nas made") from None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        reason = f"{exc.msg} at line {exc.lineno} column {exc.colno}" if isinstance(exc, json.JSONDecodeError) \
            else "not UTF-8 text" \
            if isinstance(exc, UnicodeDecodeError) else "nested too deeply"
        raise NasError(f"{path} is damaged ({reason}); the run folder cannot be read") from None
    if not isinstance(config, dict):
        raise NasError(f"{path} is damaged (a JSON {type(config).__name__}, not an object of settings); the run "
                       "folder cannot be read")
    if not isinstance(config.get("kind"), str):
        raise NasError(f"{path} names no run kind; the run folder is damaged or was not made by nas")
    return config


class _RunConfig(dict):
    """A mapping of a run's ``config.json`` whose missing keys are one-line errors naming the file."""

    def __init__(self, items: Any, path: Path) -> None:
        super().__init__(items)
        self._path = path

    def __missing__(self, key: str) -> Any:
        raise NasError(f"{self._path} has no setting {key!r}; the run folder is damaged or was made by another "
                       "version of nas")


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
               name: str | None = None, overwrite: bool | None = None) -> Run:
        """Make ``out`` (which must not exist or be empty) or a fresh ``runs/<kind>-<name>-<time>``
        folder. ``overwrite`` (``None``: :func:`may_overwrite`) lets a new run take the folder of an
        earlier one: it replaces the files :data:`REPLACED_ON_OVERWRITE` and those it writes itself,
        and leaves every other file as it is."""
        if out is not None:
            path = check_destination(out, overwrite=overwrite, hint=" (or --resume to continue it)")
            try:
                path.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise NasError(f"--out {path} cannot be created ({exc.strerror}); choose another --out") from None
            for replaced in REPLACED_ON_OVERWRITE:  # present only in a folder the user let the run take
                if (path / replaced).is_file():
                    (path / replaced).unlink()
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
                except OSError as exc:  # the runs folder is a file, or cannot be written
                    raise NasError(f"cannot create the run folder {path} ({exc.strerror}); pass --out, or set "
                                   "NAS_RUNS to a folder that can be written") from None
        run = cls(path)
        run.write_json("config.json", {"kind": kind, **config})
        run.write_json("versions.json", versions())
        return run

    @classmethod
    def open(cls, path: str | Path, *, kinds: Iterable[str] | None = None, what: str = "") -> Run:
        """Reopen the run folder ``path`` to resume or read it; its ``config.json`` is checked
        (:func:`read_config`), and with ``kinds`` its kind too (``what`` says what was expected and
        what to do: "a `nas train` run; pass one of those")."""
        path = Path(path)
        if not (path / "config.json").is_file():
            raise NasError(f"{path} is not a run folder (no config.json); pass the folder a run printed")
        run = cls(path)
        kind = run.config["kind"]
        if kinds is not None and kind not in set(kinds):
            raise NasError(f"{path} is a {kind!r} run, not {what or 'a run of kind ' + ' or '.join(kinds)}")
        return run

    @property
    def config(self) -> dict[str, Any]:
        """``config.json``, read anew each time (:func:`read_config`)."""
        return read_config(self.path / "config.json")

    def write_json(self, name: str, obj: Any) -> Path:
        return atomic_json(self.path / name, _jsonable(obj))  # a kill never leaves half a file

    def log(self, record: dict[str, Any], *, step: int | None = None, prefix: str = "") -> None:
        """Append one record to ``metrics.jsonl`` and its numbers to TensorBoard."""
        record = _jsonable(record)
        self.append_record("metrics.jsonl", record)
        if step is not None:
            self.scalars(record, step, prefix=prefix)

    def scalars(self, record: dict[str, Any], step: int, *, prefix: str = "",
                skip: tuple[str, ...] = ("epoch", "step")) -> None:
        """The numbers of ``record`` (but its ``skip`` keys) as TensorBoard scalars at ``step``."""
        writer = self.tensorboard()
        for key, value in record.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and key not in skip:
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

    def tensorboard(self, *, purge_step: int | None = None):
        """The run's ``SummaryWriter`` (``tensorboard/``), opened on first use; ``purge_step``: the
        step the run (re)starts at. Open it so in a new run and on every resume: TensorBoard then
        hides what a stopped run logged from that step on (it ignores a run's first such mark)."""
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.path / "tensorboard"), purge_step=purge_step)
        return self._writer

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else the CPU; ``cpu``, ``cuda`` and ``cuda:N`` name one.
    Any other name, or CUDA without a GPU (or without GPU N), is a one-line error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    kind, _, index = name.partition(":")
    if kind not in ("cpu", "cuda") or (index and (kind != "cuda" or not index.isdigit())):
        raise NasError(f"--device {name}: unknown device; use auto, cpu, cuda or cuda:N")
    if kind == "cuda" and not torch.cuda.is_available():
        raise NasError(f"--device {name} asked for, but no CUDA GPU is available; use --device cpu or auto")
    if index and int(index) >= torch.cuda.device_count():
        raise NasError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA GPU(s), numbered from 0")
    return torch.device(name)
