"""What differs between tasks, as one small adapter each: classification, detection, segmentation.

An adapter says where the data comes from, how the model is built from a
:class:`~nas.builders.ModelSpec`, which optimizer and schedule its recipe uses, what one
training step's loss is (and its logged parts), how the model is evaluated, which metric is the
objective and which metrics the curves plot. The loop, the run folder, checkpoints, resume,
writers and export are the engine's (:mod:`nas.train.engine`) and the same for every task.
Adding a task is one adapter class and one :func:`register_task` line.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset, Subset

from nas.builders.spec import ModelSpec
from nas.data import get_dataset
from nas.data.base import TensorImageDataset, stratified_split
from nas.data.tasks import (
    CocoDetection,
    MaskFolderSegmentation,
    ShapesDataset,
    collate_detection,
)
from nas.errors import NasError
from nas.genotype import Genotype
from nas.space import SearchSpace
from nas.train.config import TASK_DATASETS, TrainConfig, dataset_key
from nas.train.metrics import evaluate_detector, evaluate_segmenter

SUBSET_SEED = 0  # data subsets are a property of the benchmark, not of the run: every seed sees the same images
# Scenes of the embedded shapes data: the training and validation images are fixed properties
# of the benchmark (not of the run's seed), and never overlap.
SHAPES_TRAIN_SEED, SHAPES_VAL_SEED = 0, 1
SPLIT_SEED = 0  # held-out validation images of COCO / mask folders
Autocast = Callable[[], AbstractContextManager]


@dataclass(frozen=True)
class DataSpec:
    """Where the images come from: a classification set (``digits``, ``cifar10``, ``cifar100``,
    ``imagefolder`` under ``root``), ``shapes`` (embedded), ``coco`` (``root`` + ``ann``) or
    ``voc`` (``images`` + ``masks`` folders of the same stems, ``num_classes`` with the background)."""

    name: str
    root: str | None = None
    ann: str | None = None
    images: str | None = None
    masks: str | None = None
    num_classes: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class Data:
    """The loaded data of a run: ``test`` is scored once at the end when validation is held out
    of the training set (classification with ``val_fraction``), else None."""

    train: Dataset
    val: Dataset
    test: Dataset | None
    num_classes: int
    in_channels: int
    image_size: int


class TaskAdapter:
    """The per-task part of training; the engine calls these in this order: :meth:`load_data`,
    :meth:`create_spec` (new runs), :meth:`optimizer` / :meth:`scheduler`, then per epoch
    :meth:`before_epoch`, :meth:`train_step` per batch and :meth:`evaluate`."""

    task = ""
    run_kind = ""  # the run folder's kind and the command's name
    objective = ""  # the validation metric a run keeps its best checkpoint by, and searches maximise
    shown: tuple[str, ...] = ()  # metrics of the per-epoch line
    curve_losses: tuple[str, ...] = ("train_loss",)
    curve_metrics: tuple[str, ...] = ()
    percent = False  # metrics are fractions shown as percentages
    default_dataset = ""
    default_head: str | None = None
    step_schedule = False  # the learning-rate schedule steps per batch (else per epoch)
    collate: Callable | None = None

    def load_data(self, data: DataSpec, cfg: TrainConfig) -> Data:
        raise NotImplementedError

    def create_spec(self, genotype: Genotype | None, space: SearchSpace | str | None, data: Data,
                    cfg: TrainConfig, *, head: str | None, backbone: str | None,
                    init_channels: int | None) -> ModelSpec:
        raise NotImplementedError

    def optimizer(self, model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
        raise NotImplementedError

    def scheduler(self, optimizer: torch.optim.Optimizer, cfg: TrainConfig,
                  steps: int) -> torch.optim.lr_scheduler.LRScheduler:
        raise NotImplementedError

    def before_epoch(self, model: nn.Module, epoch: int, cfg: TrainConfig) -> dict[str, Any]:
        """Per-epoch settings of the model; returns what to log (for example the drop-path rate)."""
        return {}

    def train_step(self, model: nn.Module, batch: Any, device: torch.device, memory_format: torch.memory_format,
                   autocast: Autocast, cfg: TrainConfig) -> tuple[Tensor, dict[str, Tensor], int]:
        """``(loss to minimise, {logged name: sum over the batch's images}, images)``."""
        raise NotImplementedError

    def evaluate(self, model: nn.Module, loader: Any, device: torch.device, memory_format: torch.memory_format,
                 autocast: Autocast, spec: ModelSpec) -> dict[str, float]:
        raise NotImplementedError

    def epoch_line(self, record: dict[str, Any]) -> str:
        return "  ".join(f"{k} {record[k]:.3f}" for k in ("train_loss", *self.shown))


TASK_ADAPTERS: dict[str, TaskAdapter] = {}


def register_task(cls: type[TaskAdapter]) -> type[TaskAdapter]:
    """Class decorator: make ``cls`` the adapter of ``cls.task``."""
    TASK_ADAPTERS[cls.task] = cls()
    return cls


def get_task(task: str) -> TaskAdapter:
    if task not in TASK_ADAPTERS:
        raise NasError(f"unknown task {task!r}; choose one of {', '.join(TASK_ADAPTERS)}")
    return TASK_ADAPTERS[task]


def _subset(dataset: Dataset, size: int | None) -> Dataset:
    n = len(dataset)  # type: ignore[arg-type]
    if size is None or size >= n:
        return dataset
    order = torch.randperm(n, generator=torch.Generator().manual_seed(SUBSET_SEED))[:size]
    return Subset(dataset, sorted(order.tolist()))


@register_task
class ClassificationTask(TaskAdapter):
    """Cross-entropy (plus the auxiliary head's), SGD with a per-epoch cosine schedule (the DARTS
    recipe), a linearly growing drop-path rate; objective validation accuracy."""

    task = "classification"
    run_kind = "train"
    objective = "val_acc"
    curve_losses = ("train_loss", "val_loss")
    curve_metrics = ("train_acc", "val_acc")
    percent = True

    def load_data(self, data: DataSpec, cfg: TrainConfig) -> Data:
        """With ``val_fraction`` the validation images are a stratified part of the training set
        (without augmentation; the same part for every seed) and ``test`` is the data set's test
        split; otherwise validation is the test split. The data layer raises for bad paths."""
        info = get_dataset(data.name, data.root, image_size=cfg.image_size, augment=cfg.augment, cutout=cfg.cutout)
        train_set, val_set, test_set = info.train, info.test, None
        if cfg.val_fraction > 0:
            if not isinstance(train_set, TensorImageDataset):
                raise NasError(f"val_fraction needs an in-memory training set; {data.name} has none")
            keep, held_out = stratified_split(train_set.targets, cfg.val_fraction, seed=SUBSET_SEED)
            if not keep or not held_out:
                raise NasError(f"val_fraction {cfg.val_fraction} of {len(train_set)} training images leaves one "
                               "side empty; use a fraction nearer 0.2")
            test_set, val_set = val_set, Subset(train_set.without_transform(), held_out)
            train_set = Subset(train_set, keep)
        train_set, val_set = _subset(train_set, cfg.train_subset), _subset(val_set, cfg.val_subset)
        if len(train_set) < cfg.batch_size:  # type: ignore[arg-type]
            raise NasError(f"the training set has {len(train_set)} images, fewer than one batch of "
                           f"{cfg.batch_size}; lower --batch-size or use more data")
        return Data(train_set, val_set, test_set, info.num_classes, info.in_channels, info.image_size)

    def create_spec(self, genotype, space, data, cfg, *, head, backbone, init_channels):
        if head is not None or backbone is not None:
            raise NasError("a classifier is built from a genotype alone; a head or torchvision backbone is for "
                           "detection and segmentation")
        return ModelSpec.create(genotype, space, num_classes=data.num_classes, in_channels=data.in_channels,
                                init_channels=cfg.init_channels, layers=cfg.layers,
                                auxiliary=cfg.auxiliary_weight > 0)

    def optimizer(self, model, cfg):
        return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)

    def scheduler(self, optimizer, cfg, steps):
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs, eta_min=cfg.lr_min)

    def before_epoch(self, model, epoch, cfg):
        drop_prob = cfg.drop_path * (epoch - 1) / cfg.epochs
        model.set_drop_path(drop_prob)
        return {"drop_path": drop_prob}

    def train_step(self, model, batch, device, memory_format, autocast, cfg):
        x, y = batch
        x = x.to(device, non_blocking=True, memory_format=memory_format)
        y = y.to(device, non_blocking=True)
        with autocast():
            out = model(x)
        logits, aux = out if isinstance(out, tuple) else (out, None)
        loss = F.cross_entropy(logits.float(), y)
        total = loss if aux is None else loss + cfg.auxiliary_weight * F.cross_entropy(aux.float(), y)
        correct = (logits.detach().argmax(1) == y).sum().float()
        return total, {"train_loss": loss.detach() * len(y), "train_acc": correct}, len(y)

    @torch.no_grad()
    def evaluate(self, model, loader, device, memory_format, autocast, spec):
        model.eval()
        total_loss = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        seen = 0
        for x, y in loader:
            x = x.to(device, non_blocking=True, memory_format=memory_format)
            y = y.to(device, non_blocking=True)
            with autocast():
                logits = model(x)
            total_loss += F.cross_entropy(logits.float(), y, reduction="sum")
            correct += (logits.argmax(1) == y).sum()
            seen += len(y)
        return {"val_loss": total_loss.item() / seen, "val_acc": correct.item() / seen}

    def epoch_line(self, record):
        return (f"train loss {record['train_loss']:.3f} acc {record['train_acc']:.1%}  "
                f"val loss {record['val_loss']:.3f} acc {record['val_acc']:.1%}")


class ResizePair:
    """Resize an ``(image, mask)`` pair to ``size`` x ``size``: bilinear image, nearest mask
    (so class ids, including the ignore value 255, stay class ids)."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, image: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        size = (self.size, self.size)
        image = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]
        mask = F.interpolate(mask[None, None].float(), size=size, mode="nearest")[0, 0].long()
        return image, mask


def _split(dataset: Dataset, fraction: float) -> tuple[Dataset, Dataset]:
    n = len(dataset)  # type: ignore[arg-type]
    if n < 2:
        raise NasError(f"the data set has {n} image(s); at least 2 are needed (one to train, one to evaluate)")
    if not 0 < fraction < 1:
        raise NasError(f"val_fraction must be between 0 and 1 (the share held out for evaluation), got {fraction}")
    held_out = min(n - 1, max(1, round(n * fraction)))
    order = torch.randperm(n, generator=torch.Generator().manual_seed(SPLIT_SEED)).tolist()
    return Subset(dataset, sorted(order[held_out:])), Subset(dataset, sorted(order[:held_out]))


def _warmup_cosine(warmup: int, total: int) -> Callable[[int], float]:
    """Linear warm-up from 1/10 to 1 over ``warmup`` steps, then cosine decay to 0 at ``total``."""

    def factor(step: int) -> float:
        if step < warmup:
            return 0.1 + 0.9 * step / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


class _DenseTask(TaskAdapter):
    """Detection and segmentation: a genotype (or torchvision) backbone under a head, AdamW with
    a linear warm-up and a cosine schedule stepped per batch."""

    default_dataset = "shapes"
    step_schedule = True

    def load_data(self, data: DataSpec, cfg: TrainConfig) -> Data:
        if data.name not in TASK_DATASETS[self.task]:
            raise NasError(f"unknown {self.task} dataset {data.name!r}; choose one of "
                           f"{', '.join(TASK_DATASETS[self.task])}")
        size = 96 if cfg.image_size is None else cfg.image_size
        if data.name == "shapes":
            train = ShapesDataset(cfg.train_images, image_size=size, seed=SHAPES_TRAIN_SEED, task=self.task)
            val = ShapesDataset(cfg.val_images, image_size=size, seed=SHAPES_VAL_SEED, task=self.task)
            return Data(train, val, None, ShapesDataset.num_classes, 3, size)
        if data.name == "coco":
            if not data.root:
                raise NasError("--dataset coco needs --data-root FOLDER (the folder holding the images)")
            if not data.ann:
                raise NasError("--dataset coco needs --ann FILE (a COCO annotation JSON)")
            coco = CocoDetection(data.root, data.ann)
            train, val = _split(coco, cfg.val_fraction)
            return Data(train, val, None, coco.num_classes, 3, size)
        if not data.images or not data.masks:
            raise NasError("--dataset voc needs --images DIR and --masks DIR (masks: PNGs of class ids, same stems)")
        classes = 21 if data.num_classes is None else data.num_classes
        folder = MaskFolderSegmentation(data.images, data.masks, num_classes=classes, transforms=ResizePair(size))
        train, val = _split(folder, cfg.val_fraction)
        return Data(train, val, None, classes, 3, size)

    def create_spec(self, genotype, space, data, cfg, *, head, backbone, init_channels):
        return ModelSpec.create(genotype, space, task=self.task, head=self.default_head if head is None else head, backbone=backbone,
                                num_classes=data.num_classes, image_size=data.image_size,
                                init_channels=8 if init_channels is None else init_channels, cells_per_stage=cfg.cells_per_stage,
                                fpn_channels=cfg.fpn_channels)

    def optimizer(self, model, cfg):
        params = [p for p in model.parameters() if p.requires_grad]
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)

    def scheduler(self, optimizer, cfg, steps):
        return torch.optim.lr_scheduler.LambdaLR(optimizer, _warmup_cosine(cfg.warmup_steps, cfg.epochs * steps))

    def epoch_line(self, record):
        return f"loss {record['train_loss']:.3f}  " + "  ".join(f"{k} {record[k]:.3f}" for k in self.shown)


@register_task
class DetectionTask(_DenseTask):
    """torchvision detectors (Faster R-CNN, RetinaNet, FCOS): the sum of the detector's own
    losses (each logged); objective COCO box mAP (pycocotools)."""

    task = "detection"
    run_kind = "detect"
    objective = "map"
    shown = ("map", "map50", "map75")
    curve_metrics = shown
    default_head = "fcos"
    collate = staticmethod(collate_detection)

    def train_step(self, model, batch, device, memory_format, autocast, cfg):
        images, targets = batch
        images = [image.to(device, non_blocking=True) for image in images]
        # masks and ids are not used by box detectors; moving them would only cost time
        targets = [{"boxes": t["boxes"].to(device), "labels": t["labels"].to(device)} for t in targets]
        with autocast():
            parts = model(images, targets)
        parts = {k: v.float() for k, v in parts.items()}
        loss = sum(parts.values())
        n = len(images)
        return loss, {"train_loss": loss.detach() * n, **{f"train_{k}": v.detach() * n for k, v in parts.items()}}, n

    def evaluate(self, model, loader, device, memory_format, autocast, spec):
        # in float32: box coordinates in bf16 are off by up to a pixel, which mAP@0.75 feels
        return evaluate_detector(model, loader, device)


@register_task
class SegmentationTask(_DenseTask):
    """FCN, DeepLabV3 or U-Net heads: per-pixel cross-entropy (255 = ignore); objective mean IoU."""

    task = "segmentation"
    run_kind = "segment"
    objective = "miou"
    shown = ("miou", "pixel_accuracy")
    curve_metrics = shown
    default_head = "unet"

    def train_step(self, model, batch, device, memory_format, autocast, cfg):
        images, masks = batch
        images = images.to(device, non_blocking=True, memory_format=memory_format)
        with autocast():
            logits = model(images)
        loss = F.cross_entropy(logits.float(), masks.to(device, non_blocking=True), ignore_index=255)
        return loss, {"train_loss": loss.detach() * len(images)}, len(images)

    def evaluate(self, model, loader, device, memory_format, autocast, spec):
        with autocast():
            return evaluate_segmenter(model, loader, device, spec.num_classes)


def data_spec(task: str, dataset: str | None, *, root: Any = None, ann: Any = None, images: Any = None,
              masks: Any = None, num_classes: int | None = None) -> DataSpec:
    """The :class:`DataSpec` of ``dataset`` (default: the task's own) with paths as strings."""
    adapter = get_task(task)
    name = dataset or adapter.default_dataset
    if not name:
        raise NasError("pass a dataset to train on (digits, cifar10, cifar100 or imagefolder)")
    if task == "classification":
        name = dataset_key(name)

    def text(value: Any) -> str | None:
        return None if value is None else str(value)

    return DataSpec(name, text(root), text(ann), text(images), text(masks), num_classes)
