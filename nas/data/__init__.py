"""Data sets for search and training: ``get_dataset("cifar10", "/data")``.

``digits`` (scikit-learn's handwritten digits) needs no files; ``cifar10``/``cifar100`` and
``imagefolder`` read a local folder or zip, never the network. Every set comes back as a
:class:`DatasetInfo` with normalised tensor items; :func:`search_split` halves a training set
for one-shot (DARTS) search.
"""
from __future__ import annotations

import os
from pathlib import Path

from nas.data.base import DatasetInfo, search_split
from nas.data.cifar import load_cifar
from nas.data.digits import load_digits
from nas.data.imagefolder import load_imagefolder
from nas.errors import NasError

DATASETS = ("digits", "cifar10", "cifar100", "imagefolder")
DEFAULT_ROOT = "./data"
ROOT_ENV = "NAS_DATA_ROOT"


def default_root() -> Path:
    """``$NAS_DATA_ROOT`` if set, else ``./data``."""
    return Path(os.environ.get(ROOT_ENV) or DEFAULT_ROOT)


def get_dataset(
    name: str,
    root: str | os.PathLike[str] | None = None,
    *,
    image_size: int | None = None,
    augment: bool = True,
    cutout: int = 0,
    val_fraction: float | None = None,
    seed: int = 0,
) -> DatasetInfo:
    """Load data set ``name`` (one of :data:`DATASETS`).

    root: folder or zip holding the data (default :func:`default_root`); ``digits`` ignores it.
    image_size: square side in pixels; default 32 (the native size of CIFAR).
    augment: random crop (+ horizontal flip except for digits) on training items; test items
        are never augmented.
    cutout: side of the Cutout square on training items, 0 for none (DARTS uses 16).
    val_fraction: share held out as ``test`` from data without a split of its own (``digits``,
        default 0.2; ``imagefolder`` without ``val/``/``test/``, default 0.1). An error for
        data that has its own split.
    seed: seeds that held-out split. Keep the default so every run evaluates on the same test
        set; a run's seed belongs in :func:`search_split` and the trainer.
    """
    key = name.lower().replace("-", "").replace("_", "")
    if key not in DATASETS:
        raise NasError(f"--dataset {name}: unknown data set; choose one of {', '.join(DATASETS)}")
    if image_size is not None and (not isinstance(image_size, int) or image_size < 8):
        raise NasError(f"image_size must be an integer of at least 8 pixels, got {image_size!r}")
    if cutout < 0:
        raise NasError(f"cutout must be 0 (off) or a positive side length in pixels, got {cutout}")
    if val_fraction is not None and not 0 < val_fraction < 1:
        raise NasError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    if key == "digits":
        return load_digits(image_size=image_size, augment=augment, cutout=cutout, test_fraction=val_fraction, seed=seed)
    path = (Path(root).expanduser() if root is not None else default_root()).resolve()
    if key == "imagefolder":
        return load_imagefolder(
            path, image_size=image_size, augment=augment, cutout=cutout, val_fraction=val_fraction, seed=seed
        )
    if val_fraction is not None:
        raise NasError(f"{key} comes with its own test split; drop val_fraction (it applies to digits and imagefolder)")
    return load_cifar(key, path, image_size=image_size, augment=augment, cutout=cutout)


__all__ = ["DATASETS", "DatasetInfo", "default_root", "get_dataset", "search_split"]
