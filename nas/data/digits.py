"""scikit-learn's handwritten digits: 1,797 real 8x8 grey images of 0-9, shipped inside
scikit-learn, so it works on a fresh machine with no download."""
from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F

from nas.data.base import (
    DatasetInfo,
    TensorImageDataset,
    channel_stats,
    stratified_split,
)
from nas.data.transforms import train_transform

DEFAULT_IMAGE_SIZE = 32
DEFAULT_TEST_FRACTION = 0.2


@lru_cache(maxsize=4)
def _arrays(image_size: int, test_fraction: float, seed: int) -> tuple[torch.Tensor, ...]:
    from sklearn.datasets import (
        load_digits,  # scikit-learn imports slowly; only pay when used
    )

    digits = load_digits()
    # Pixel values are 0..16; bilinear upsampling once here, not per item.
    small = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16
    images = F.interpolate(small, size=(image_size, image_size), mode="bilinear", align_corners=False).clamp(0, 1)
    labels = torch.tensor(digits.target, dtype=torch.long)
    train_idx, test_idx = stratified_split(labels.tolist(), test_fraction, seed)
    return images[train_idx], labels[train_idx], images[test_idx], labels[test_idx]


def load_digits(
    *, image_size: int | None, augment: bool, cutout: int, test_fraction: float | None, seed: int
) -> DatasetInfo:
    """Digits upsampled to ``image_size`` (default 32) and split stratified into train/test.

    The grey channel is repeated three times (a stride-0 view, no copy) because the networks
    here default to RGB input, so a digits run exercises the same models as a CIFAR run.
    Training augmentation is a small random crop only: flipped digits are different digits.
    """
    size = image_size or DEFAULT_IMAGE_SIZE
    train_x, train_y, test_x, test_y = _arrays(size, test_fraction or DEFAULT_TEST_FRACTION, seed)
    (mean,), (std,) = channel_stats(train_x)
    mean3, std3 = (mean,) * 3, (std,) * 3
    transform = train_transform(padding=max(1, size // 16), flip=False, cutout=cutout) if augment else None
    return DatasetInfo(
        name="digits",
        train=TensorImageDataset(train_x.expand(-1, 3, -1, -1), train_y, mean3, std3, transform),
        test=TensorImageDataset(test_x.expand(-1, 3, -1, -1), test_y, mean3, std3),
        num_classes=10,
        in_channels=3,
        image_size=size,
        mean=mean3,
        std=std3,
        classes=[str(d) for d in range(10)],
    )
