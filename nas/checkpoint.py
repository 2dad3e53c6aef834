"""Checkpoints: everything a killed run needs to continue bit-identically, as plain data.

A checkpoint is a dict of tensors, numbers, strings, lists and tuples only, so it loads with
``torch.load(weights_only=True)``: no pickled project classes. It carries the model's
:class:`~nas.builders.spec.ModelSpec` as data, so :func:`load_model` rebuilds its own network.
"""
from __future__ import annotations

import pickle
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nas.builders.spec import ModelSpec
from nas.errors import NasError
from nas.io import atomic_copy, atomic_save

FORMAT = 1  # bumped when the layout changes


def rng_state(loader_generator: torch.Generator | None = None, *, cuda: bool = False) -> dict[str, Any]:
    """The state of every random generator a training step draws from (CUDA's when ``cuda``)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        # numpy's state holds an ndarray; as a list it stays loadable with weights_only=True
        "numpy": [kind, keys.tolist(), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if cuda else [],
    }
    if loader_generator is not None:
        state["loader"] = loader_generator.get_state()
    return state


def set_rng_state(state: dict[str, Any], loader_generator: torch.Generator | None = None) -> None:
    random.setstate(_as_tuple(state["python"]))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    if loader_generator is not None and "loader" in state:
        loader_generator.set_state(state["loader"])


def _as_tuple(obj: Any) -> Any:
    """``random.setstate`` wants tuples all the way down."""
    return tuple(_as_tuple(o) for o in obj) if isinstance(obj, (list, tuple)) else obj


def save_checkpoint(path: Path, state: dict[str, Any]) -> Path:
    """Write ``state`` atomically: a kill leaves the previous checkpoint intact."""
    return atomic_save(path, lambda f: torch.save({"format": FORMAT, **state}, f))


def copy_checkpoint(source: Path, target: Path) -> Path:
    return atomic_copy(source, target)


def read_weights_only(path: Path, *, map_location: str | torch.device = "cpu", remedy: str) -> Any:
    """``torch.load(path, weights_only=True)``, any failure a one-line :class:`NasError` naming the
    file; ``remedy`` says what to do when it holds pickled objects (which could run code)."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's weights-only unpickler names the global it refused: a pickled object, maybe a payload
        refused = re.search(r"GLOBAL ([\w.]+)", str(exc))
        if refused is None:
            raise NasError(f"{path} is not a readable checkpoint (UnpicklingError); it may be damaged or "
                           "from another program") from None
        raise NasError(f"{path}: refused to load: it holds pickled objects other than tensors and plain data "
                       f"({refused.group(1)}), which could run code; {remedy}") from None
    # A damaged file makes torch raise any of a dozen types (RuntimeError, EOFError, UnicodeDecodeError,
    # IndexError, AssertionError, struct.error, ...); whichever it is, the file is what is wrong.
    except Exception as exc:  # noqa: BLE001
        raise NasError(f"{path} is not a readable checkpoint ({type(exc).__name__}); it may be damaged or "
                       "from another program") from None


def load_checkpoint(path: str | Path, *, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by ``nas train``, ``nas detect`` or ``nas segment``; a damaged or
    foreign file is a :class:`NasError`."""
    path = Path(path)
    if not path.is_file():
        raise NasError(f"checkpoint {path} not found; pass a run folder of `nas train`, `nas detect` or "
                       "`nas segment`, or its checkpoints/*.pt")
    state = read_weights_only(path, map_location=map_location,
                              remedy="pass a checkpoint written by `nas train`, `nas detect` or `nas segment`")
    if not isinstance(state, dict) or "model" not in state or "spec" not in state:
        raise NasError(f"{path} is not a `nas train` / `nas detect` / `nas segment` checkpoint (no model "
                       "weights and spec)")
    if state.get("format") != FORMAT:
        raise NasError(f"{path} has checkpoint format {state.get('format')!r}; this version reads format {FORMAT}")
    return state


def load_model(path: str | Path) -> tuple[nn.Module, ModelSpec, dict[str, Any]]:
    """Rebuild the model of any task's checkpoint with its weights: ``(model in eval mode, spec, checkpoint)``.

    >>> model, spec, ckpt = load_model("runs/train-DARTS_V2/checkpoints/best.pt")  # doctest: +SKIP
    """
    state = load_checkpoint(path)
    spec = ModelSpec.from_dict(state["spec"], source=str(path))
    model = spec.build()
    try:
        model.load_state_dict(state["model"])
    except RuntimeError:
        raise NasError(f"{path}: the weights do not fit the network the checkpoint describes; "
                       "the file is damaged") from None
    return model.eval(), spec, state
