"""CIFAR-10 and CIFAR-100 from a local folder, never downloaded.

Accepted layouts under the data root (checked in this order):

* torchvision's: ``root/cifar-10-batches-py`` (``data_batch_1..5``, ``test_batch``,
  ``batches.meta``) or ``root/cifar-100-python`` (``train``, ``test``, ``meta``);
* class folders of images: ``train/<class>/*.jpg`` and ``test/<class>/*.jpg`` as folders,
  as ``train.zip`` + ``test.zip``, or as one zip holding both.

Both are also looked for in ``root/cifar10`` (and ``root/cifar10-jpeg``) or ``root/cifar100``,
so one data root can hold several data sets. Images are decoded once into a uint8
``(N, 3, 32, 32)`` tensor and kept in memory (and in a small in-process cache, so a search
and its retraining in one process decode once).
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torchvision.transforms.v2 import functional as TF

from nas.data.base import DatasetInfo, TensorImageDataset
from nas.data.files import decode_all, find_splits, scan_classes
from nas.data.transforms import train_transform
from nas.errors import NasError


@dataclass(frozen=True)
class _Spec:
    title: str
    folder: str  # torchvision's folder
    train_files: tuple[str, ...]
    test_file: str
    meta_file: str
    label_key: str
    names_key: str
    subfolders: tuple[str, ...]  # where in a shared data root to look as well
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


SPECS = {
    "cifar10": _Spec(
        "CIFAR-10", "cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)), "test_batch",
        "batches.meta", "labels", "label_names", ("cifar10", "cifar10-jpeg"),
        (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616),
    ),
    "cifar100": _Spec(
        "CIFAR-100", "cifar-100-python", ("train",), "test", "meta", "fine_labels", "fine_label_names",
        ("cifar100",), (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762),
    ),
}  # fmt: skip

NATIVE_SIZE = 32
Arrays = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, list[str]]


def _unpickle(path: Path, spec: _Spec) -> dict:
    if not path.is_file():
        raise NasError(
            f"{path.parent} is incomplete: {path.name} is missing; "
            f"re-download {spec.title} there (torchvision's {spec.title.replace('-', '')} with download=True)"
        )
    try:
        with path.open("rb") as f:
            # The archives are Python 2 pickles; latin1 reads their byte strings as torchvision does.
            return pickle.load(f, encoding="latin1")
    except (pickle.UnpicklingError, EOFError, ValueError) as err:
        raise NasError(f"{path} is not a {spec.title} batch file ({err}); re-download {spec.title}") from None


def _from_pickles(folder: Path, spec: _Spec) -> Arrays:
    def load(files: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        batches = [_unpickle(folder / f, spec) for f in files]
        try:
            data = np.concatenate([np.asarray(b["data"], dtype=np.uint8) for b in batches])
            labels = np.concatenate([np.asarray(b[spec.label_key], dtype=np.int64) for b in batches])
        except KeyError as err:
            raise NasError(f"{folder} has a batch file without the {err} entry; re-download {spec.title}") from None
        return torch.from_numpy(data.reshape(-1, 3, NATIVE_SIZE, NATIVE_SIZE)), torch.from_numpy(labels)

    train_x, train_y = load(spec.train_files)
    test_x, test_y = load((spec.test_file,))
    meta = _unpickle(folder / spec.meta_file, spec)
    if spec.names_key not in meta:
        raise NasError(f"{folder / spec.meta_file} lacks {spec.names_key!r}; re-download {spec.title}")
    return train_x, train_y, test_x, test_y, list(meta[spec.names_key])


def _from_image_folders(root: Path, spec: _Spec) -> Arrays | None:
    splits = find_splits(root)
    if "train" not in splits:
        return None
    test = splits.get("test") or splits.get("val")
    if test is None:
        raise NasError(
            f"{spec.title} under {root} has a train split but no test split; "
            "add test/<class>/*.jpg (folder or test.zip) next to train"
        )
    classes, train_names, train_labels = scan_classes(splits["train"])
    _, test_names, test_labels = scan_classes(test, classes)
    return (
        decode_all(splits["train"], train_names, NATIVE_SIZE),
        torch.tensor(train_labels),
        decode_all(test, test_names, NATIVE_SIZE),
        torch.tensor(test_labels),
        classes,
    )


def _find(root: Path, spec: _Spec) -> Arrays | None:
    if root.is_dir():
        if (root / spec.folder).is_dir():
            return _from_pickles(root / spec.folder, spec)
        if root.name == spec.folder:
            return _from_pickles(root, spec)
    return _from_image_folders(root, spec)


@lru_cache(maxsize=2)
def _load(name: str, root: Path) -> Arrays:
    spec = SPECS[name]
    if not root.exists():
        raise NasError(
            f"{spec.title} data root {root} does not exist; put {spec.folder}/ (torchvision layout) "
            "or train/ and test/ class folders (or zips of them) there, or pass --data-root (or set NAS_DATA_ROOT)"
        )
    for candidate in [root, *(root / sub for sub in spec.subfolders if (root / sub).exists())]:
        arrays = _find(candidate, spec)
        if arrays is not None:
            return arrays
    raise NasError(
        f"{spec.title} not found under {root}: expected {root / spec.folder} (torchvision layout) or an "
        f"ImageFolder tree/zip with train/ and test/; download it there or pass --data-root (or set NAS_DATA_ROOT)"
    )


def load_cifar(name: str, root: Path, *, image_size: int | None, augment: bool, cutout: int) -> DatasetInfo:
    """CIFAR with the standard recipe: random crop (padding 4 at 32 px) and horizontal flip for
    training, plus Cutout of ``cutout`` pixels when positive (DARTS uses 16)."""
    spec = SPECS[name]
    train_x, train_y, test_x, test_y, classes = _load(name, root)
    size = image_size or NATIVE_SIZE
    if size != NATIVE_SIZE:
        # Resized once here rather than per item; a 64 px CIFAR-10 is 0.7 GB as uint8.
        train_x = TF.resize(train_x, [size, size], antialias=True)
        test_x = TF.resize(test_x, [size, size], antialias=True)
    transform = train_transform(padding=size // 8, flip=True, cutout=cutout) if augment else None
    return DatasetInfo(
        name=name,
        train=TensorImageDataset(train_x, train_y, spec.mean, spec.std, transform),
        test=TensorImageDataset(test_x, test_y, spec.mean, spec.std),
        num_classes=len(classes),
        in_channels=3,
        image_size=size,
        mean=spec.mean,
        std=spec.std,
        classes=classes,
    )
