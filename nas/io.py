"""Atomic file writes: a kill at any moment leaves either the old file or the new one.

Every file a run rewrites (checkpoints, ``config.json``, ``result.json``, genotypes, manifests,
plots) goes through :func:`atomic_write` or one of its wrappers: the bytes go to a temporary file
in the same folder, are flushed to disk (``fsync``), and the temporary file is renamed over the
target; the folder is synced too, so the rename itself survives a power cut.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO


def _sync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # not every platform opens folders
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_open(path: str | Path) -> Iterator[BinaryIO]:
    """``with atomic_open(path) as f: f.write(...)``: ``path`` appears whole when the block ends,
    and is left as it was when the block raises or the process dies inside it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _sync_dir(path.parent)


def atomic_write(path: str | Path, data: bytes | str) -> Path:
    """Write ``data`` (text is UTF-8) to ``path`` atomically."""
    with atomic_open(path) as f:
        f.write(data.encode() if isinstance(data, str) else data)
    return Path(path)


def atomic_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON (with a final newline) atomically."""
    return atomic_write(path, json.dumps(obj, indent=2) + "\n")


def atomic_save(path: str | Path, write: Callable[[BinaryIO], Any]) -> Path:
    """Atomically write what ``write(file)`` writes, e.g. ``atomic_save(p, lambda f: torch.save(obj, f))``
    or ``atomic_save(p, lambda f: fig.savefig(f, format="png"))``."""
    with atomic_open(path) as f:
        write(f)
    return Path(path)


def atomic_copy(source: str | Path, target: str | Path) -> Path:
    """Copy ``source`` over ``target`` atomically."""
    with atomic_open(target) as f, open(source, "rb") as src:
        shutil.copyfileobj(src, f)
    return Path(target)
