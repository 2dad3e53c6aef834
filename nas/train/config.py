"""Training settings: one small dataclass, and a recipe of defaults per data set.

The defaults of :class:`TrainConfig` are the DARTS evaluation recipe for CIFAR-10 (Liu et al.,
ICLR 2019, section A.2); :func:`recipe` returns them for CIFAR and image folders, and a small,
fast schedule for the embedded ``digits`` set.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from nas.errors import NasError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
EXPORT_FORMATS = ("source", "pt2", "torchscript", "onnx")


@dataclass(frozen=True)
class TrainConfig:
    """How to train one genotype; every field can be overridden (``nas train --lr 0.05``).

    >>> cfg = dataclasses.replace(recipe("cifar10"), epochs=50)
    >>> cfg.lr, cfg.epochs, cfg.cutout
    (0.025, 50, 16)
    """

    epochs: int = 600  # DARTS trains its CIFAR-10 network for 600 epochs
    batch_size: int = 96  # DARTS' evaluation batch size
    lr: float = 0.025  # initial learning rate of SGD
    lr_min: float = 0.0  # the cosine schedule anneals the learning rate to this value at the last epoch
    momentum: float = 0.9  # SGD momentum
    weight_decay: float = 3e-4  # L2 penalty on all weights, as in DARTS
    grad_clip: float = 5.0  # maximum gradient norm per step; 0 turns clipping off
    auxiliary_weight: float = 0.4  # loss weight of the auxiliary head at 2/3 depth (cell spaces); 0: no head
    drop_path: float = 0.2  # drop-path probability reached at the end, grown linearly from 0 over the epochs
    cutout: int = 16  # side in pixels of the Cutout square on training images; 0: off
    augment: bool = True  # random crop (and horizontal flip where the data set allows it) on training images
    image_size: int | None = None  # square input side; None: the data set's own (32 for digits and CIFAR)
    init_channels: int | None = None  # None: the space's network (darts.yaml: 36, the DARTS evaluation network)
    layers: int | None = None  # cells incl. 2 reductions; None: the space's network (darts.yaml: 20)
    seed: int = 0  # seeds weights, data order, augmentation and drop-path
    device: str = "auto"  # auto (CUDA when present), cpu, cuda or cuda:N
    precision: str = "auto"  # auto: bf16 autocast on a GPU that has it, else fp16 + GradScaler; fp32 on the CPU
    channels_last: bool | None = None  # NHWC memory layout; None: on a GPU only
    num_workers: int = 0  # DataLoader worker processes; 0 keeps the CPU fast path for small data and tests
    train_subset: int | None = None  # train on this many images (one fixed sample for any seed); benchmarks, tests
    val_subset: int | None = None  # evaluate on this many images (one fixed sample); benchmarks, tests
    val_fraction: float = 0.0  # hold out this share of the training images (stratified, one fixed split) to
    # validate on, and score the test split once at the end (test_acc); 0: validate on the test split
    max_train_batches: int | None = None  # end every epoch after this many batches; for smoke tests only
    export_formats: tuple[str, ...] = ("source",)  # exported into the run folder at the end (see nas.export)

    def check(self) -> TrainConfig:
        """Raise :class:`NasError` for a setting out of range; returns self."""

        def need(ok: bool, message: str) -> None:
            if not ok:
                raise NasError(message)

        need(self.epochs >= 1, f"epochs must be at least 1, got {self.epochs}")
        need(self.batch_size >= 2, f"batch_size must be at least 2 (batch norm needs 2 images), got {self.batch_size}")
        need(self.lr > 0, f"lr must be positive, got {self.lr}")
        need(0 <= self.lr_min <= self.lr, f"lr_min must be between 0 and lr ({self.lr}), got {self.lr_min}")
        need(0 <= self.momentum < 1, f"momentum must be in [0, 1), got {self.momentum}")
        need(self.weight_decay >= 0, f"weight_decay must not be negative, got {self.weight_decay}")
        need(self.grad_clip >= 0, f"grad_clip must not be negative (0 turns it off), got {self.grad_clip}")
        need(self.auxiliary_weight >= 0, f"auxiliary_weight must not be negative, got {self.auxiliary_weight}")
        need(0 <= self.drop_path < 1, f"drop_path must be in [0, 1), got {self.drop_path}")
        need(self.cutout >= 0, f"cutout must be 0 (off) or a side in pixels, got {self.cutout}")
        need(0 <= self.val_fraction < 1, f"val_fraction must be in [0, 1) (0: validate on the test split), "
             f"got {self.val_fraction}")
        need(self.num_workers >= 0, f"num_workers must not be negative, got {self.num_workers}")
        need(self.precision in PRECISIONS, f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        for name in ("image_size", "init_channels", "layers", "train_subset", "val_subset", "max_train_batches"):
            value = getattr(self, name)
            need(value is None or value >= 1, f"{name} must be a positive integer (or unset), got {value}")
        unknown = [f for f in self.export_formats if f not in EXPORT_FORMATS]
        need(not unknown, f"unknown export format {', '.join(map(repr, unknown))}; choose from "
             f"{', '.join(EXPORT_FORMATS)}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "export_formats": list(self.export_formats)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        return settings_from_dict(cls, data, "training")


def settings_from_dict(cls: type, data: dict[str, Any], what: str) -> Any:
    """A settings dataclass (``TrainConfig``, ``TaskConfig``) from its ``to_dict()``: unknown
    names raise :class:`NasError`, missing ones keep their defaults."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise NasError(f"unknown {what} setting(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
    if "export_formats" in data:
        data = {**data, "export_formats": tuple(data["export_formats"])}
    return cls(**data)


def dataset_key(name: str) -> str:
    """``CIFAR-10`` -> ``cifar10``: the spelling the data layer accepts."""
    return name.lower().replace("-", "").replace("_", "")


def recipe(dataset: str) -> TrainConfig:
    """Default settings for ``dataset``: the DARTS recipe for CIFAR-10/100 and image folders; for
    ``digits`` (1,437 small training images) a network and schedule that train in about a minute
    on a laptop CPU."""
    key = dataset_key(dataset)
    if key in ("cifar10", "cifar100", "imagefolder"):
        return TrainConfig()
    if key == "digits":
        return TrainConfig(
            epochs=10,  # accuracy levels off after about 10 epochs on 1,437 images
            batch_size=64,
            lr=0.05,  # small network, few steps: a larger step than DARTS' 0.025
            auxiliary_weight=0.0,  # the auxiliary head (768 channels) would outweigh an 8-channel network
            drop_path=0.0,  # 10 epochs are too few to need the regulariser
            cutout=0,  # a 16-pixel hole erases most of a digit
            init_channels=8,
            layers=5,
        )
    raise NasError(f"unknown dataset {dataset!r}; choose one of digits, cifar10, cifar100, imagefolder")
