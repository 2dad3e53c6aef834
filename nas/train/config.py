"""Training settings: one dataclass for every task, and a recipe of defaults per data set and task.

The defaults of :class:`TrainConfig` are the DARTS evaluation recipe for CIFAR-10 (Liu et al.,
ICLR 2019, section A.2). :func:`recipe` returns them for CIFAR and image folders, a small,
fast schedule for the embedded ``digits`` set, and the detection / segmentation recipe (AdamW,
linear warm-up, per-step cosine; sizes that train on a laptop CPU in minutes). The module
imports no torch: the ``nas`` options and ``--trial-setting`` are generated from these fields.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from nas.config import SEED_MAX, TASKS, check, setting, to_dict
from nas.errors import NasError
from nas.export.formats import FORMATS, parse_formats

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# fields that only one kind of training reads (the others ignore them); the commands offer
# each only where it applies
CLASSIFICATION_ONLY = ("lr_min", "momentum", "auxiliary_weight", "drop_path", "cutout", "augment", "layers",
                       "train_subset", "val_subset")
TASK_ONLY = ("warmup_steps", "train_images", "val_images", "cells_per_stage", "fpn_channels")


@dataclass(frozen=True)
class TrainConfig:
    """How to train one model; every field can be overridden (``nas train --lr 0.05``).

    >>> import dataclasses
    >>> cfg = dataclasses.replace(recipe("cifar10"), epochs=50)
    >>> cfg.lr, cfg.epochs, cfg.cutout
    (0.025, 50, 16)
    >>> recipe("shapes", task="detection").lr
    0.002
    """

    epochs: int = setting(600, "training epochs", min=1)
    batch_size: int = setting(96, "images per step (batch norm needs at least 2)", min=2)
    lr: float = setting(0.025, "initial learning rate: SGD for classifiers, the peak AdamW rate after the warm-up "
                        "for detectors and segmenters", min=0, min_open=True)
    lr_min: float = setting(0.0, "learning rate the per-epoch cosine schedule ends at (classification)", min=0)
    momentum: float = setting(0.9, "SGD momentum (classification)", min=0, max=1, max_open=True)
    weight_decay: float = setting(3e-4, "weight decay: L2 for SGD, decoupled for AdamW", min=0)
    warmup_steps: int = setting(20, "steps of linear learning-rate warm-up from lr / 10 (detection, segmentation; "
                                "detectors trained from scratch diverge without)", min=0)
    grad_clip: float = setting(5.0, "maximum gradient norm per step, 0 for none", min=0)
    auxiliary_weight: float = setting(0.4, "loss weight of the auxiliary head at 2/3 depth of a cell network, 0 for "
                                      "no head (classification)", min=0)
    drop_path: float = setting(0.2, "final drop-path probability, grown linearly from 0 over the epochs "
                               "(classification)", min=0, max=1, max_open=True)
    cutout: int = setting(16, "side in pixels of the Cutout square on training images, 0 for none "
                          "(classification)", min=0)
    augment: bool = setting(True, "random crop (and flip where the data set allows it) on training images "
                            "(classification)")
    image_size: int | None = setting(None, "square input side in pixels; classification: unset takes the data "
                                     "set's own (32 for digits and CIFAR); detection and segmentation: a "
                                     "multiple of 32", min=1)
    init_channels: int | None = setting(None, "initial channels of the network; unset: a classifier takes the "
                                        "space's (darts.yaml: 36), a detection / segmentation backbone 8 or "
                                        "the --init-from run's", min=1)
    layers: int | None = setting(None, "cells of a cell classifier, two of them reductions; unset: the "
                                 "space's (darts.yaml: 20)", min=3)
    cells_per_stage: int = setting(1, "normal cells per resolution of a backbone (detection, segmentation)", min=1)
    fpn_channels: int = setting(64, "FPN width of a detector (fcos: a multiple of 32)", min=8)
    seed: int = setting(0, "seeds weights, data order, augmentation, drop-path and the detectors' sampling",
                        min=0, max=SEED_MAX)
    device: str = setting("auto", "auto (CUDA when present), cpu, cuda or cuda:N")
    precision: str = setting("auto", "auto: bf16 autocast on a GPU that has it, else fp16 + grad scaling; mixed "
                             "precision applies on CUDA only (fp32 on the CPU)", choices=PRECISIONS)
    channels_last: bool | None = setting(None, "NHWC memory layout; unset: on a GPU only")
    num_workers: int = setting(0, "DataLoader worker processes; 0 keeps the fast path for small data", min=0)
    train_subset: int | None = setting(None, "train on this many images, one fixed sample for any seed "
                                       "(benchmarks, smoke tests)", min=1)
    val_subset: int | None = setting(None, "evaluate on this many images, one fixed sample (benchmarks, "
                                     "smoke tests)", min=1)
    train_images: int = setting(240, "shapes scenes to train on (detection, segmentation)", min=1)
    val_images: int = setting(48, "shapes scenes to evaluate on (detection, segmentation)", min=1)
    val_fraction: float = setting(0.0, "classification: share of the training images held out (stratified, "
                                  "the same for every seed) to validate on, the test split then scored once at "
                                  "the end (0: validate on the test split); coco / voc: share of the images held "
                                  "out for evaluation (shapes has its own validation scenes)",
                                  min=0, max=1, max_open=True)
    max_train_batches: int | None = setting(None, "end every epoch after this many batches (smoke tests only)",
                                            min=1)
    export_formats: tuple[str, ...] = setting(("source",), "formats exported into <run>/export at the end: "
                                              "comma-separated names of source, pt2, torchscript, onnx (detectors: "
                                              "source and torchscript only), all or none",
                                              choices=("all", *FORMATS))

    def to_dict(self) -> dict:
        return to_dict(self)


def dataset_key(name: str) -> str:
    """``CIFAR-10`` -> ``cifar10``: the spelling the data layer accepts."""
    return name.lower().replace("-", "").replace("_", "")


CLASSIFICATION_DATASETS = ("digits", "cifar10", "cifar100", "imagefolder")
TASK_DATASETS = {"detection": ("shapes", "coco"), "segmentation": ("shapes", "voc")}


def recipe(dataset: str, task: str = "classification") -> TrainConfig:
    """Default settings for ``dataset`` and ``task``.

    Classification: the DARTS recipe for CIFAR-10/100 and image folders; for ``digits`` (1,437
    small training images) a network and schedule that train in about a minute on a laptop
    CPU. Detection and segmentation (``shapes``, ``coco``, ``voc``): AdamW with a linear
    warm-up, then a cosine schedule stepped per batch, on 96-pixel images.
    """
    if task not in TASKS:
        raise NasError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    key = dataset_key(dataset)
    if task != "classification":
        if key not in TASK_DATASETS[task]:
            raise NasError(f"unknown {task} dataset {dataset!r}; choose one of {', '.join(TASK_DATASETS[task])}")
        return TrainConfig(
            epochs=3,  # minutes on a 2-core CPU with the small sizes below
            batch_size=8,
            lr=2e-3,
            weight_decay=1e-4,
            grad_clip=10.0,  # detection losses spike early; 5 slows the first epoch down
            image_size=96,
            val_fraction=0.2,  # coco / voc: the held-out share (the shapes scenes have their own)
            export_formats=("source", "torchscript"),
        )
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
    raise NasError(f"--dataset {dataset}: unknown data set; choose one of {', '.join(CLASSIFICATION_DATASETS)}")


def check_config(config: TrainConfig, task: str = "classification") -> TrainConfig:
    """:func:`nas.config.check` plus what depends on the task; returns ``config`` with
    ``export_formats`` resolved for the task (``all``: every format the task can export)."""
    check(config)
    if config.export_formats:
        # which formats a task can export is the format registry's
        config = dataclasses.replace(config, export_formats=parse_formats(config.export_formats, task))
    if task != "classification":
        size = config.image_size
        if size is None or size < 32 or size % 32:
            raise NasError(f"image_size must be a multiple of 32 (the backbone's stride), at least 32, got {size}")
        if config.train_images < config.batch_size:
            raise NasError(f"train_images ({config.train_images}) must be at least one batch ({config.batch_size})")
    return config

