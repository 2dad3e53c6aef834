"""Any class-folder image set (torchvision ImageFolder layout), as a folder or a zip of one.

With ``train/`` and ``val/`` (or ``test/``) splits those are used; otherwise the single
``<class>/<image>`` tree is split, stratified, into train and a held-out ``val_fraction``.
Images are resized (shorter side, then centre crop) to ``image_size`` RGB squares. A set
whose decoded size fits :data:`IN_MEMORY_LIMIT` is decoded once up front, a larger one per
item as it is read (after :func:`~nas.data.files.check_files` has checked every file).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset

from nas.data.base import (
    DatasetInfo,
    Normalise,
    TensorImageDataset,
    channel_stats,
    stratified_split,
)
from nas.data.files import (
    CLASS_LAYOUT,
    FileTree,
    check_files,
    decode_all,
    decode_one,
    find_splits,
    fit,
    scan_classes,
)
from nas.data.transforms import Transform, train_transform
from nas.errors import NasError

DEFAULT_IMAGE_SIZE = 32
DEFAULT_VAL_FRACTION = 0.1
IN_MEMORY_LIMIT = 2 * 1024**3  # bytes of decoded uint8 images
STATS_SAMPLE = 1024  # images (a fixed random sample) decoded to estimate the mean/std of a set too large to hold


@dataclass(frozen=True)
class _Part:
    tree: FileTree
    names: list[str]
    labels: list[int]


def _load(tree: FileTree, name: str, size: int) -> torch.Tensor:
    return fit(decode_one(tree.read(name), tree.where(name)), size)


class LazyImageDataset(Dataset):
    """Reads and decodes each image when it is requested; for sets too large for memory."""

    def __init__(
        self,
        part: _Part,
        size: int,
        mean: Sequence[float],
        std: Sequence[float],
        transform: Transform | None = None,
    ) -> None:
        self.tree = part.tree
        self.names = part.names
        self.targets = part.labels
        self.size = size
        self.normalise = Normalise(mean, std)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        x = self.normalise(_load(self.tree, self.names[index], self.size))
        if self.transform is not None:
            x = self.transform(x)
        return x, self.targets[index]


def _split(root: Path, val_fraction: float | None, seed: int) -> tuple[_Part, _Part, list[str]]:
    """``(train, held_out, classes)`` of the layout at ``root``."""
    splits = find_splits(root)
    held_name = "val" if "val" in splits else "test"
    if "train" in splits and held_name in splits:
        if val_fraction is not None:
            raise NasError(
                f"{root} already has train and {held_name} splits; drop val_fraction, "
                "or point at a single class-folder tree to have it split"
            )
        classes, train_names, train_labels = scan_classes(splits["train"])
        _, held_names, held_labels = scan_classes(splits[held_name], classes)
        return (
            _Part(splits["train"], train_names, train_labels),
            _Part(splits[held_name], held_names, held_labels),
            classes,
        )
    if held_name in splits:
        raise NasError(
            f"{splits[held_name].where()} has no matching train split; add {root}/train/{CLASS_LAYOUT} (or train.zip)"
        )
    # A lone train split is the whole labelled set: split it like a plain tree.
    tree = splits["train"] if "train" in splits else FileTree.open(root).unwrap()
    classes, names, labels = scan_classes(tree)
    fraction = DEFAULT_VAL_FRACTION if val_fraction is None else val_fraction
    keep, out = stratified_split(labels, fraction, seed)
    return (
        _Part(tree, [names[i] for i in keep], [labels[i] for i in keep]),
        _Part(tree, [names[i] for i in out], [labels[i] for i in out]),
        classes,
    )


def load_imagefolder(
    root: Path, *, image_size: int | None, augment: bool, cutout: int, val_fraction: float | None, seed: int
) -> DatasetInfo:
    """Class folders at ``root``; augmentation as for CIFAR (crop padded by size/8, flip, Cutout)."""
    if not root.exists():
        raise NasError(
            f"image folder {root} does not exist; pass --data-root pointing at a folder (or zip) of "
            f"{CLASS_LAYOUT} class folders, optionally inside train/ and val/"
        )
    size = image_size or DEFAULT_IMAGE_SIZE
    train_part, test_part, classes = _split(root, val_fraction, seed)
    transform = train_transform(padding=size // 8, flip=True, cutout=cutout) if augment else None
    train: Dataset
    test: Dataset
    if (len(train_part.names) + len(test_part.names)) * 3 * size * size <= IN_MEMORY_LIMIT:
        train_x = decode_all(train_part.tree, train_part.names, size)
        test_x = decode_all(test_part.tree, test_part.names, size)
        mean, std = channel_stats(train_x)
        train = TensorImageDataset(train_x, torch.tensor(train_part.labels), mean, std, transform)
        test = TensorImageDataset(test_x, torch.tensor(test_part.labels), mean, std)
    else:
        check_files(train_part.tree, train_part.names)
        check_files(test_part.tree, test_part.names)
        order = torch.randperm(len(train_part.names), generator=torch.Generator().manual_seed(0))
        sample = [_load(train_part.tree, train_part.names[i], size) for i in order[:STATS_SAMPLE].tolist()]
        mean, std = channel_stats(torch.stack(sample))
        train = LazyImageDataset(train_part, size, mean, std, transform)
        test = LazyImageDataset(test_part, size, mean, std)
    return DatasetInfo(
        name="imagefolder",
        train=train,
        test=test,
        num_classes=len(classes),
        in_channels=3,
        image_size=size,
        mean=mean,
        std=std,
        classes=classes,
    )
