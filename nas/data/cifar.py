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

The batch files are pickles, so they are read with :class:`_BatchUnpickler`, which rebuilds
only numpy arrays, numbers, strings, lists and dicts: a file that asks for anything else (a
planted ``__reduce__`` payload) is refused before any of it runs.
"""
from __future__ import annotations

import codecs
import io
import pickle
import struct
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


def _latin1_bytes(text: str, encoding: str) -> bytes:
    """How protocol-2 pickles written by Python 3 spell a bytes object: ``_codecs.encode(text, "latin1")``."""
    if encoding != "latin1":
        raise pickle.UnpicklingError(f"bytes encoded as {encoding!r}")
    return codecs.encode(text, "latin1")


# Everything a CIFAR batch file needs: numpy's own rebuilders of arrays and scalars (spelled
# numpy.core by the original Python 2 files and numpy 1, numpy._core by numpy 2; _frombuffer by
# protocol 5), and bytes as Python 3 writes them at protocol 2. None of these runs user code.
_ALLOWED_GLOBALS = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    **{(f"numpy.{core}.multiarray", "_reconstruct"): np.zeros(1).__reduce__()[0] for core in ("core", "_core")},
    **{(f"numpy.{core}.multiarray", "scalar"): np.int64(0).__reduce__()[0] for core in ("core", "_core")},
    **{(f"numpy.{core}.numeric", "_frombuffer"): np.zeros(1).__reduce_ex__(5)[0] for core in ("core", "_core")},
    ("_codecs", "encode"): _latin1_bytes,
}


class _Refused(pickle.UnpicklingError):
    pass


class _BatchUnpickler(pickle.Unpickler):
    """Admits only the globals of :data:`_ALLOWED_GLOBALS`; anything else is refused unimported."""

    def find_class(self, module: str, name: str) -> object:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise _Refused(f"{module}.{name}") from None


def _unpickle(path: Path, spec: _Spec) -> dict:
    try:
        # The archives are Python 2 pickles; latin1 reads their byte strings as torchvision does.
        content = _BatchUnpickler(io.BytesIO(path.read_bytes()), encoding="latin1").load()
    except _Refused as err:
        raise NasError(
            f"{path}: refused to load: it asks to run {err}, which a {spec.title} batch file never does "
            f"(the file may have been tampered with); delete it and re-download {spec.title}"
        ) from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError,
            OverflowError, MemoryError, RecursionError, struct.error) as err:
        raise NasError(f"{path}: not a {spec.title} batch file ({type(err).__name__}: {_first_line(err)}); "
                       f"re-download {spec.title}") from None
    except OSError as err:
        raise NasError(f"{path}: cannot be read ({err.strerror or err}); check its permissions") from None
    if not isinstance(content, dict):
        raise NasError(f"{path}: not a {spec.title} batch file (it holds a {type(content).__name__}, not a dict); "
                       f"re-download {spec.title}")
    return content


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else "no details"


def _batch(path: Path, content: dict, spec: _Spec) -> tuple[np.ndarray, np.ndarray]:
    """The images ``(N, 3072)`` and labels ``(N,)`` of one batch file, checked."""
    missing = [k for k in ("data", spec.label_key) if k not in content]
    if missing:
        raise NasError(f"{path}: a {spec.title} batch file without the {missing[0]!r} entry; re-download {spec.title}")
    data, labels = content["data"], content[spec.label_key]
    size = 3 * NATIVE_SIZE * NATIVE_SIZE
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != size:
        shape = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise NasError(f"{path}: 'data' is {shape}, not uint8 (N, {size}) images; re-download {spec.title}")
    try:
        labels = np.asarray(labels)
    except (ValueError, TypeError):
        labels = np.asarray([], dtype=object)
    if labels.ndim != 1 or len(labels) != len(data) or (len(labels) and labels.dtype.kind not in "iu"):
        raise NasError(f"{path}: {spec.label_key!r} is not one integer label per image ({len(data)} images); "
                       f"re-download {spec.title}")
    return data, labels.astype(np.int64)


def _from_pickles(folder: Path, spec: _Spec) -> Arrays:
    for name in (*spec.train_files, spec.test_file, spec.meta_file):
        if not (folder / name).is_file():
            raise NasError(
                f"{folder} is incomplete: {name} is missing; "
                f"re-download {spec.title} there (torchvision's {spec.title.replace('-', '')} with download=True)"
            )
    # The meta file first: its class names bound the labels of every batch.
    meta_path = folder / spec.meta_file
    meta = _unpickle(meta_path, spec)
    names = meta.get(spec.names_key)
    if not isinstance(names, (list, tuple)) or not names or not all(isinstance(n, str) for n in names):
        raise NasError(f"{meta_path}: lacks the class names {spec.names_key!r}; re-download {spec.title}")

    def load(files: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        parts = [_batch(folder / f, _unpickle(folder / f, spec), spec) for f in files]
        for f, (_, labels) in zip(files, parts, strict=True):
            if len(labels) and not 0 <= labels.min() <= labels.max() < len(names):
                raise NasError(f"{folder / f}: has labels outside 0..{len(names) - 1} (the {len(names)} classes of "
                               f"{spec.meta_file}); re-download {spec.title}")
        data = np.concatenate([d for d, _ in parts])
        labels = np.concatenate([y for _, y in parts])
        return torch.from_numpy(data.reshape(-1, 3, NATIVE_SIZE, NATIVE_SIZE)), torch.from_numpy(labels)

    train_x, train_y = load(spec.train_files)
    test_x, test_y = load((spec.test_file,))
    return train_x, train_y, test_x, test_y, list(names)


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
