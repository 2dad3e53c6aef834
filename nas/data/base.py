"""What every data set returns, the in-memory image set, and the seeded splits."""
from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch.utils.data import Dataset, Subset

from nas.data.transforms import Transform
from nas.errors import NasError


@dataclass(frozen=True)
class DatasetInfo:
    """A loaded data set: items are ``(image, label)`` with ``image`` a normalised float tensor
    ``(in_channels, image_size, image_size)``; ``test`` is the held-out evaluation set."""

    name: str
    train: Dataset
    test: Dataset
    num_classes: int
    in_channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: list[str]


class Normalise:
    """uint8 (or [0, 1] float) ``(C, H, W)`` -> float, minus ``mean``, over ``std``."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float().div(255) if x.dtype == torch.uint8 else x.float()
        return (x - self.mean) / self.std


class TensorImageDataset(Dataset):
    """Images held in memory as one ``(N, C, H, W)`` tensor (uint8, or float in [0, 1]).

    Normalising per item keeps the stored copy compact (uint8 CIFAR-10 is 180 MB, float would
    be four times that) and lets train and test share one decoded array.
    """

    def __init__(
        self,
        images: torch.Tensor,
        targets: torch.Tensor,
        mean: Sequence[float],
        std: Sequence[float],
        transform: Transform | None = None,
    ) -> None:
        if len(images) != len(targets):
            raise ValueError(f"{len(images)} images but {len(targets)} targets")
        self.images = images
        self._targets = targets.long()
        self.normalise = Normalise(mean, std)
        self.transform = transform

    @property
    def targets(self) -> list[int]:
        return self._targets.tolist()

    def __len__(self) -> int:
        return len(self.images)

    def without_transform(self) -> TensorImageDataset:
        """The same images (shared, not copied) with no augmentation: for validating on a part
        of a training set."""
        plain = copy.copy(self)
        plain.transform = None
        return plain

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        x = self.normalise(self.images[index])
        if self.transform is not None:
            x = self.transform(x)
        return x, int(self._targets[index])


def channel_stats(images: torch.Tensor, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of ``(N, C, H, W)`` images (uint8 or [0, 1] float) on the [0, 1]
    scale; chunked so a large uint8 set is never copied to float all at once."""
    scale = 1 / 255 if images.dtype == torch.uint8 else 1.0
    c = images.shape[1]
    total = torch.zeros(c, dtype=torch.float64)
    total_sq = torch.zeros(c, dtype=torch.float64)
    for start in range(0, len(images), chunk):
        x = images[start : start + chunk].double() * scale
        total += x.sum(dim=(0, 2, 3))
        total_sq += x.square().sum(dim=(0, 2, 3))
    n = images.shape[0] * images.shape[2] * images.shape[3]
    mean = total / n
    std = (total_sq / n - mean.square()).clamp_min(1e-12).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())


def stratified_split(labels: Sequence[int], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices ``(keep, held_out)`` with about ``fraction`` of every class held out.

    Every class with at least two items keeps one on each side, so small sets still have all
    classes in both halves. Seeded with its own generator: the global torch state is untouched.
    """
    generator = torch.Generator().manual_seed(seed)
    by_class: dict[int, list[int]] = {}
    for index, label in enumerate(labels):
        by_class.setdefault(int(label), []).append(index)
    keep: list[int] = []
    held_out: list[int] = []
    for label in sorted(by_class):
        members = by_class[label]
        order = torch.randperm(len(members), generator=generator).tolist()
        n_out = round(len(members) * fraction)
        if len(members) >= 2:
            n_out = min(max(n_out, 1), len(members) - 1)
        held_out += [members[i] for i in order[:n_out]]
        keep += [members[i] for i in order[n_out:]]
    return sorted(keep), sorted(held_out)


def search_split(dataset: Dataset, fraction: float = 0.5, seed: int = 0) -> tuple[Subset, Subset]:
    """Split a training set for a one-shot search (DARTS protocol): weights train on the first
    part, architecture parameters on the second.

    ``fraction`` of the items (rounded down) go to the first part, in a permutation drawn from
    ``seed`` alone; the two parts are disjoint and together cover ``dataset``.
    """
    if not 0 < fraction < 1:
        raise NasError(f"search split fraction must be between 0 and 1 (exclusive), got {fraction}")
    n = len(dataset)  # type: ignore[arg-type]
    k = int(n * fraction)
    if k == 0 or k == n:
        raise NasError(
            f"search split of {n} items with fraction {fraction} leaves one part empty; "
            "use more data or a fraction nearer 0.5"
        )
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return Subset(dataset, order[:k]), Subset(dataset, order[k:])
