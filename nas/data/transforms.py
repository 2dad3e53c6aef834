"""Training augmentations on normalised ``(C, H, W)`` float tensors.

They draw from torch's global generator (never ``random`` or numpy), so a seeded
``torch.manual_seed`` plus a seeded DataLoader reproduces the same batches, in the main
process and in workers (each worker's torch seed derives from the loader's generator).
They run after normalisation, so zero padding and the Cutout hole both equal the data mean.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

Transform = Callable[[torch.Tensor], torch.Tensor]


class RandomCrop:
    """Zero-pad by ``padding`` on every side, then crop back to the input size at a random offset."""

    def __init__(self, padding: int) -> None:
        self.padding = padding

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        p = self.padding
        _, h, w = x.shape
        padded = F.pad(x, (p, p, p, p))
        top, left = torch.randint(0, 2 * p + 1, (2,)).tolist()
        return padded[:, top : top + h, left : left + w]

    def __repr__(self) -> str:
        return f"RandomCrop(padding={self.padding})"


class RandomHorizontalFlip:
    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x.flip(-1) if torch.rand(()).item() < self.p else x

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class Cutout:
    """Zero a ``length`` x ``length`` square centred at a random pixel, clipped at the borders.

    Same as the DARTS recipe (DeVries & Taylor, 2017): the centre may lie near an edge, so the
    hole is sometimes partly outside the image.
    """

    def __init__(self, length: int) -> None:
        self.length = length

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        _, h, w = x.shape
        cy = int(torch.randint(0, h, ()).item())
        cx = int(torch.randint(0, w, ()).item())
        half = self.length // 2
        out = x.clone()
        out[:, max(0, cy - half) : min(h, cy + half), max(0, cx - half) : min(w, cx + half)] = 0
        return out

    def __repr__(self) -> str:
        return f"Cutout(length={self.length})"


class Compose:
    def __init__(self, transforms: Sequence[Transform]) -> None:
        self.transforms = list(transforms)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        for t in self.transforms:
            x = t(x)
        return x

    def __repr__(self) -> str:
        return f"Compose({self.transforms!r})"


def train_transform(*, padding: int, flip: bool, cutout: int) -> Compose:
    """Random crop with ``padding``, an optional horizontal flip, Cutout when ``cutout > 0``."""
    steps: list[Transform] = [RandomCrop(padding)] if padding > 0 else []
    if flip:
        steps.append(RandomHorizontalFlip())
    if cutout > 0:
        steps.append(Cutout(cutout))
    return Compose(steps)
