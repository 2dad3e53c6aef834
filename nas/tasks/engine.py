"""Train and evaluate detectors and segmenters whose backbone is a genotype, in run folders.

:func:`train_detector` and :func:`train_segmenter` build a genotype's multi-scale backbone
(:func:`nas.builders.build_backbone`), put a torchvision detector (Faster R-CNN, RetinaNet,
FCOS on an FPN) or a segmentation head (FCN, DeepLabV3, U-Net) on it, train it with AdamW
(linear warm-up, then a cosine schedule stepped per batch) and evaluate it after every epoch:
COCO box mAP / AP50 / AP75 (pycocotools) or mean IoU / pixel accuracy.

Each run gets a folder (:class:`nas.run.Run`): ``config.json`` (settings, seed, model),
``versions.json``, ``genotype.json``, ``model.json`` (size), ``metrics.jsonl`` + TensorBoard,
``checkpoints/last.pt`` (every epoch) and ``best.pt``, ``curves.png``, ``result.json`` and the
export under ``export/``. ``resume=RUN`` continues from the last checkpoint; on the CPU the
result equals that of an uninterrupted run with the same seed.

The default data is the embedded :class:`~nas.data.tasks.ShapesDataset` (generated, no
download) and the default sizes are small enough for a laptop CPU.

Example::

    result = train_detector("DARTS_V2", detector="fcos", config=TaskConfig(epochs=2))
    result.metrics["map50"], result.run
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from nas.builders import ModelSpec
from nas.builders.spec import backbone_cell_prefixes, check_head
from nas.checkpoint import copy_checkpoint, rng_state, save_checkpoint, set_rng_state
from nas.data.tasks import (
    CocoDetection,
    MaskFolderSegmentation,
    ShapesDataset,
    collate_detection,
)
from nas.errors import NasError
from nas.genotype import Genotype
from nas.run import Run, resolve_device, seed_everything
from nas.space import SearchSpace
from nas.train.config import settings_from_dict
from nas.train.metrics import evaluate_detector, evaluate_segmenter

Report = Callable[[int, dict[str, Any]], None]

TASKS = ("detection", "segmentation")
RUN_KINDS = {"detection": "detect", "segmentation": "segment"}
DATASETS = {"detection": ("shapes", "coco"), "segmentation": ("shapes", "voc")}
OBJECTIVES = {"detection": "map", "segmentation": "miou"}
EXPORT_FORMATS = {"detection": ("source", "torchscript"), "segmentation": ("source", "pt2", "torchscript", "onnx")}
# Scenes of the embedded shapes data: the training and validation images are fixed properties
# of the benchmark (not of the run's seed), and never overlap.
SHAPES_TRAIN_SEED, SHAPES_VAL_SEED = 0, 1
SPLIT_SEED = 0  # held-out validation images of COCO / mask folders
TASK_CHECKPOINT_KEY = "spec"  # the same key as classification checkpoints


# -- settings --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TaskConfig:
    """How to train a detector or segmenter; the defaults train on a 2-core CPU in minutes.

    Example::

        cfg = dataclasses.replace(TaskConfig(), epochs=10, image_size=160)
    """

    epochs: int = 3  # passes over the training images
    batch_size: int = 8  # images per step
    lr: float = 2e-3  # peak AdamW learning rate, reached after the warm-up
    weight_decay: float = 1e-4  # AdamW's decoupled weight decay
    warmup_steps: int = 20  # steps of linear warm-up from lr / 10; detectors from scratch diverge without
    grad_clip: float = 10.0  # maximum gradient norm per step; 0 turns clipping off
    image_size: int = 96  # side of the shapes images; COCO / mask-folder images are resized to it
    train_images: int = 240  # shapes scenes to train on (COCO / mask folders: all but the held-out part)
    val_images: int = 48  # shapes scenes to evaluate on
    val_fraction: float = 0.2  # COCO / mask folders: share of the images held out for evaluation
    seed: int = 0  # seeds the weights, the data order and the detectors' sampling
    device: str = "auto"  # auto (CUDA when present), cpu, cuda or cuda:N
    num_workers: int = 0  # DataLoader worker processes
    max_train_batches: int | None = None  # end every epoch after this many batches; smoke tests only
    export_formats: tuple[str, ...] = ("source", "torchscript")  # exported into the run folder at the end

    def check(self, task: str) -> TaskConfig:
        """Raise :class:`NasError` for a setting out of range; returns self."""

        def need(ok: bool, message: str) -> None:
            if not ok:
                raise NasError(message)

        need(self.epochs >= 1, f"epochs must be at least 1, got {self.epochs}")
        need(self.batch_size >= 2, f"batch_size must be at least 2 (batch norm needs 2 images), got {self.batch_size}")
        need(self.lr > 0, f"lr must be positive, got {self.lr}")
        need(self.weight_decay >= 0, f"weight_decay must not be negative, got {self.weight_decay}")
        need(self.warmup_steps >= 0, f"warmup_steps must not be negative, got {self.warmup_steps}")
        need(self.grad_clip >= 0, f"grad_clip must not be negative (0 turns it off), got {self.grad_clip}")
        need(self.image_size >= 32 and self.image_size % 32 == 0,
             f"image_size must be a multiple of 32 (the backbone's stride), at least 32, got {self.image_size}")
        need(self.train_images >= self.batch_size,
             f"train_images ({self.train_images}) must be at least one batch ({self.batch_size})")
        need(self.val_images >= 1, f"val_images must be at least 1, got {self.val_images}")
        need(0 < self.val_fraction < 1, f"val_fraction must be between 0 and 1, got {self.val_fraction}")
        need(self.num_workers >= 0, f"num_workers must not be negative, got {self.num_workers}")
        need(self.max_train_batches is None or self.max_train_batches >= 1,
             f"max_train_batches must be a positive integer (or unset), got {self.max_train_batches}")
        allowed = EXPORT_FORMATS[task]
        unknown = [f for f in self.export_formats if f not in allowed]
        need(not unknown, f"export format {', '.join(map(repr, unknown))} is not available for {task}; "
             f"choose from {', '.join(allowed)}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "export_formats": list(self.export_formats)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskConfig:
        return settings_from_dict(cls, data, "task")


def task_backbone(model: nn.Module) -> nn.Module:
    """The contract backbone inside a model built by :meth:`TaskSpec.build`."""
    backbone = model.backbone
    return backbone.body if hasattr(backbone, "fpn") else backbone


# -- transfer from a classification run ------------------------------------------------------------
@dataclass
class Transfer:
    """What :func:`init_backbone_from` copied: ``loaded`` backbone tensor names (with their
    classifier names in ``mapping``), and backbone tensors left as initialised."""

    source: Path
    loaded: list[str]
    skipped: list[str]
    mapping: dict[str, str]

    def summary(self) -> dict[str, Any]:
        return {"source": str(self.source), "loaded": len(self.loaded), "skipped": len(self.skipped)}


def classification_checkpoint(path: str | Path) -> Path:
    """The checkpoint of a ``nas train`` run folder (``best.pt``, else ``last.pt``) or the file itself."""
    path = Path(path)
    if path.is_dir():
        for name in ("best.pt", "last.pt"):
            if (path / "checkpoints" / name).is_file():
                return path / "checkpoints" / name
        raise NasError(f"{path} has no checkpoints/best.pt or last.pt; pass a `nas train` run folder that "
                       "finished an epoch, or its checkpoint file")
    if not path.is_file():
        raise NasError(f"--init-from {path}: no such run folder or checkpoint file")
    return path


def _stage_indices(plan: list[bool]) -> list[list[int]]:
    """Layer indices grouped by resolution: a reduction starts a new stage."""
    stages: list[list[int]] = [[]]
    for i, reduction in enumerate(plan):
        if reduction and stages[-1]:
            stages.append([])
        stages[-1].append(i)
    return stages


def backbone_weight_names(space: SearchSpace, *, classifier_layers: int | None, cells_per_stage: int,
                          chain_stages: int = 0) -> dict[str, str]:
    """Module prefixes ``{backbone prefix: classifier prefix}`` of the same cells.

    Cell spaces: the classifier's cells (``body.cells.i``, reductions at 1/3 and 2/3 of its
    depth) are matched stage by stage and position by position to the backbone's
    (``blocks.j``, ``cells_per_stage`` normal cells per stage and three reductions); the
    backbone's last stage (stride 32) has no counterpart. Chain spaces: ``body.stages.i`` is
    ``blocks.i``. The stems differ (one stride-1 conv vs two stride-2 convs) and are not mapped.
    """
    prefixes = backbone_cell_prefixes(space, cells_per_stage=cells_per_stage)
    if space.kind == "chain":
        return {prefixes[i]: f"body.stages.{i}." for i in range(chain_stages)}
    assert classifier_layers is not None
    r1, r2 = classifier_layers // 3, 2 * classifier_layers // 3
    classifier = _stage_indices([i in (r1, r2) for i in range(classifier_layers)])
    n = cells_per_stage
    backbone = _stage_indices(([False] * n + [True]) * 3 + [False] * n)
    return {prefixes[b]: f"body.cells.{c}."
            for b_stage, c_stage in zip(backbone, classifier) for b, c in zip(b_stage, c_stage)}


def init_backbone_from(model: nn.Module, spec: ModelSpec, source: str | Path) -> Transfer:
    """Copy the cells of a classification run's network into ``model``'s backbone.

    ``source`` is a ``nas train`` run folder or checkpoint of the same genotype and space.
    Weights and batch-norm statistics are copied where the mapped name exists with the same
    shape (the cells match when the initial channels match); raises :class:`NasError` when
    none does.

    Example::

        transfer = init_backbone_from(model, spec, "runs/train-DARTS_V2-...")
        len(transfer.loaded)
    """
    from nas.builders.spec import ModelSpec
    from nas.checkpoint import load_checkpoint

    if spec.genotype is None or spec.space is None:
        raise NasError("--init-from copies cells of a genotype; a torchvision backbone has none to receive them")
    path = classification_checkpoint(source)
    state = load_checkpoint(path)
    classifier = ModelSpec.from_dict(state["spec"], source=str(path))
    if classifier.genotype.to_dict() != spec.genotype.to_dict():
        raise NasError(f"{path} trained another genotype than this backbone's; pass a run of the same genotype "
                       "(or leave out --genotype to take the run's)")
    prefixes = backbone_weight_names(spec.space, classifier_layers=classifier.layers,
                                     cells_per_stage=spec.cells_per_stage, chain_stages=len(spec.space.stages))
    source_state = state["model"]
    target = task_backbone(model)
    target_state = target.state_dict()
    update, mapping, skipped = {}, {}, []
    for name, tensor in target_state.items():
        if name.endswith("num_batches_tracked"):
            continue  # a step counter, not a weight: its shape () matches anything
        prefix = next((p for p in prefixes if name.startswith(p)), None)
        other = prefixes[prefix] + name[len(prefix):] if prefix else None
        if other is not None and other in source_state and source_state[other].shape == tensor.shape:
            update[name] = source_state[other]
            mapping[name] = other
        else:
            skipped.append(name)
    if not update:
        raise NasError(f"no backbone tensor of {path} matches this backbone (classifier: {classifier.describe()}; "
                       f"backbone: {spec.describe()}); use the run's --init-channels")
    target.load_state_dict(update, strict=False)
    return Transfer(path, sorted(update), skipped, mapping)


# -- data ------------------------------------------------------------------------------------------
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


@dataclass(frozen=True)
class DataSpec:
    """Where the images come from: ``shapes`` (embedded), ``coco`` (``root`` + ``ann``) or
    ``voc`` (``images`` + ``masks`` folders of the same stems)."""

    name: str = "shapes"
    root: str | None = None
    ann: str | None = None
    images: str | None = None
    masks: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _split(dataset: Dataset, fraction: float) -> tuple[Dataset, Dataset]:
    n = len(dataset)  # type: ignore[arg-type]
    if n < 2:
        raise NasError(f"the data set has {n} image(s); at least 2 are needed (one to train, one to evaluate)")
    held_out = min(n - 1, max(1, round(n * fraction)))
    order = torch.randperm(n, generator=torch.Generator().manual_seed(SPLIT_SEED)).tolist()
    return Subset(dataset, sorted(order[held_out:])), Subset(dataset, sorted(order[:held_out]))


def load_task_data(task: str, data: DataSpec, cfg: TaskConfig, *, num_classes: int | None = None
                   ) -> tuple[Dataset, Dataset, int]:
    """``(train, val, num_classes)`` of ``data``; every problem with paths or files is a :class:`NasError`."""
    if data.name not in DATASETS[task]:
        raise NasError(f"unknown {task} dataset {data.name!r}; choose one of {', '.join(DATASETS[task])}")
    if data.name == "shapes":
        kind = "detection" if task == "detection" else "segmentation"
        train = ShapesDataset(cfg.train_images, image_size=cfg.image_size, seed=SHAPES_TRAIN_SEED, task=kind)
        val = ShapesDataset(cfg.val_images, image_size=cfg.image_size, seed=SHAPES_VAL_SEED, task=kind)
        return train, val, ShapesDataset.num_classes
    if data.name == "coco":
        if not data.root:
            raise NasError("--dataset coco needs --data-root FOLDER (the folder holding the images)")
        if not data.ann:
            raise NasError("--dataset coco needs --ann FILE (a COCO annotation JSON)")
        coco = CocoDetection(data.root, data.ann)
        train, val = _split(coco, cfg.val_fraction)
        return train, val, coco.num_classes
    if not data.images or not data.masks:
        raise NasError("--dataset voc needs --images DIR and --masks DIR (masks: PNGs of class ids, same stems)")
    classes = num_classes or 21
    folder = MaskFolderSegmentation(data.images, data.masks, num_classes=classes, transforms=ResizePair(cfg.image_size))
    train, val = _split(folder, cfg.val_fraction)
    return train, val, classes


# -- training --------------------------------------------------------------------------------------
@dataclass
class TaskResult:
    """What :func:`train_detector` / :func:`train_segmenter` return: the run folder, the last
    epoch's metrics (plus the best objective), the trained model (eval mode) and its exports."""

    run: Path
    metrics: dict[str, Any]
    model: nn.Module
    spec: ModelSpec
    exports: dict[str, Path] = field(default_factory=dict)
    transfer: Transfer | None = None


@dataclass
class _Plan:
    spec: ModelSpec
    config: TaskConfig
    data: DataSpec
    train_set: Dataset
    val_set: Dataset
    label: str
    init_from: str | None = None


def train_detector(genotype: Genotype | str | None = None, *, detector: str = "fcos", backbone: str | None = None,
                   config: TaskConfig | None = None, space: SearchSpace | str | None = None,
                   dataset: str = "shapes", data_root: str | Path | None = None, ann: str | Path | None = None,
                   init_channels: int | None = None, cells_per_stage: int = 1, fpn_channels: int = 64,
                   init_from: str | Path | None = None, out: str | Path | None = None,
                   resume: str | Path | None = None, report: Report | None = None,
                   progress: bool = True) -> TaskResult:
    """Train a detector (``"fasterrcnn"``, ``"retinanet"``, ``"fcos"``) on a genotype backbone.

    genotype: a :class:`Genotype`, reference name, genotype.json or run folder; or leave it
        out and pass ``backbone="resnet18"`` / ``"mobilenet_v3_large"`` for a torchvision
        baseline, or ``init_from`` (the classification run's genotype is used).
    dataset: ``"shapes"`` (embedded) or ``"coco"`` with ``data_root`` (images) and ``ann``
        (annotation JSON); a held-out ``config.val_fraction`` of COCO images is evaluated.
    init_channels: cell-space width (default 8, or the ``init_from`` run's).
    init_from: a ``nas train`` run (or checkpoint) of the same genotype whose cells initialise
        the backbone.
    resume: a run folder to continue (its own settings are kept).
    report: called as ``report(epoch, metrics)`` after each epoch; raising in it stops training.

    Example::

        result = train_detector("DARTS_V2", detector="retinanet", config=TaskConfig(epochs=1))
        result.metrics["map"]
    """
    data = DataSpec(dataset, None if data_root is None else str(data_root), None if ann is None else str(ann))
    return _train("detection", detector, genotype, backbone=backbone, config=config, space=space, data=data,
                  init_channels=init_channels, cells_per_stage=cells_per_stage, fpn_channels=fpn_channels,
                  num_classes=None, init_from=init_from, out=out, resume=resume, report=report, progress=progress)


def train_segmenter(genotype: Genotype | str | None = None, *, head: str = "unet", backbone: str | None = None,
                    config: TaskConfig | None = None, space: SearchSpace | str | None = None,
                    dataset: str = "shapes", images: str | Path | None = None, masks: str | Path | None = None,
                    num_classes: int | None = None, init_channels: int | None = None, cells_per_stage: int = 1,
                    init_from: str | Path | None = None, out: str | Path | None = None,
                    resume: str | Path | None = None, report: Report | None = None,
                    progress: bool = True) -> TaskResult:
    """Train a segmenter (``"fcn"``, ``"deeplabv3"``, ``"unet"``) on a genotype backbone.

    dataset: ``"shapes"`` (embedded) or ``"voc"``: an ``images`` folder and a ``masks``
        folder of PNG class-id masks with the same stems (255 = ignore), resized to
        ``config.image_size``; ``num_classes`` counts the background (default 21, as VOC).
    Other arguments as in :func:`train_detector`.

    Example::

        result = train_segmenter("DARTS_V2", head="unet", config=TaskConfig(epochs=1))
        result.metrics["miou"]
    """
    data = DataSpec(dataset, images=None if images is None else str(images),
                    masks=None if masks is None else str(masks))
    return _train("segmentation", head, genotype, backbone=backbone, config=config, space=space, data=data,
                  init_channels=init_channels, cells_per_stage=cells_per_stage, fpn_channels=64,
                  num_classes=num_classes, init_from=init_from, out=out, resume=resume, report=report,
                  progress=progress)


def _label(genotype: Genotype | str | None, backbone: str | None, init_from: str | Path | None) -> str:
    from nas.train.trainer import genotype_label

    if genotype is not None:
        return genotype_label(genotype)
    return backbone or Path(str(init_from)).name


def _train(task: str, head: str, genotype: Genotype | str | None, *, backbone: str | None,
           config: TaskConfig | None, space: SearchSpace | str | None, data: DataSpec, init_channels: int | None,
           cells_per_stage: int, fpn_channels: int, num_classes: int | None, init_from: str | Path | None,
           out: str | Path | None, resume: str | Path | None, report: Report | None, progress: bool) -> TaskResult:
    if resume is not None:
        given = {"genotype": genotype, "backbone": backbone, "config": config, "space": space,
                 "init_from": init_from, "out": out, "init_channels": init_channels}
        extra = [name for name, value in given.items() if value is not None]
        if extra:
            raise NasError(f"a resumed run keeps its own settings; drop {', '.join(extra)}")
        run, plan, state = _plan_resume(Path(resume), task)
    else:
        plan = _plan_new(task, head, genotype, backbone=backbone, config=config, space=space, data=data,
                         init_channels=init_channels, cells_per_stage=cells_per_stage, fpn_channels=fpn_channels,
                         num_classes=num_classes, init_from=init_from)
        run, state = None, None
    cfg, spec = plan.config, plan.spec
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    model = spec.build()
    transfer = None
    if state is None and plan.init_from is not None:
        transfer = init_backbone_from(model, spec, plan.init_from)
    if run is None:
        run = _create_run(plan, model, out, transfer)
    model = model.to(device)

    loader_generator = torch.Generator().manual_seed(cfg.seed)
    detection = task == "detection"
    collate = collate_detection if detection else None
    cuda = device.type == "cuda"
    train_loader = DataLoader(plan.train_set, batch_size=cfg.batch_size, shuffle=True, drop_last=True,
                              generator=loader_generator, collate_fn=collate, num_workers=cfg.num_workers,
                              pin_memory=cuda)
    val_loader = DataLoader(plan.val_set, batch_size=cfg.batch_size, shuffle=False, collate_fn=collate,
                            num_workers=cfg.num_workers, pin_memory=cuda)
    steps = len(train_loader) if cfg.max_train_batches is None else min(len(train_loader), cfg.max_train_batches)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(cfg.warmup_steps, cfg.epochs * steps))
    objective = OBJECTIVES[task]
    start_epoch, best = 0, {objective: -1.0, "epoch": 0}
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"], loader_generator)
        start_epoch, best = int(state["epoch"]), dict(state["best"])
    run.truncate_metrics(start_epoch)  # drop epochs logged after the checkpoint of a killed run
    if progress:
        what = f"resuming {run.path} after epoch {start_epoch}" if start_epoch else f"training into {run.path}"
        tqdm.write(f"{what}: {plan.label} ({spec.describe()}) on {plan.data.name}, {len(plan.train_set)} train / "
                   f"{len(plan.val_set)} val images, {cfg.epochs} epochs x {steps} steps, device {device}")

    records = run.metrics()
    try:
        for epoch in range(start_epoch + 1, cfg.epochs + 1):
            started = time.perf_counter()
            lr = scheduler.get_last_lr()[0]
            losses, seen = _train_epoch(model, train_loader, optimizer, scheduler, device, cfg, steps, detection,
                                        desc=f"epoch {epoch}/{cfg.epochs}", progress=progress)
            train_time = time.perf_counter() - started
            if detection:
                scores = evaluate_detector(model, val_loader, device)
            else:
                scores = evaluate_segmenter(model, val_loader, device, spec.num_classes)
            record = {"epoch": epoch, **losses, **scores, "lr": lr, "epoch_time_s": time.perf_counter() - started,
                      "images_per_s": seen / train_time}
            run.log(record, step=epoch)
            records.append(record)
            improved = scores[objective] > best[objective]
            if improved:
                best = {objective: scores[objective], "epoch": epoch}
            last = save_checkpoint(run.path / "checkpoints" / "last.pt", {
                "epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "rng": rng_state(loader_generator),
                TASK_CHECKPOINT_KEY: spec.to_dict(), "train": cfg.to_dict(), "best": best})
            if improved:
                copy_checkpoint(last, run.path / "checkpoints" / "best.pt")
            plot_task_curves(records, run.path / "curves.png", task=task, title=f"{plan.label}: {spec.head}")
            if progress:
                shown = "  ".join(f"{k} {record[k]:.3f}" for k in _shown_metrics(task))
                tqdm.write(f"epoch {epoch}/{cfg.epochs}  loss {record['train_loss']:.3f}  {shown}  lr {lr:.3g}  "
                           f"{record['epoch_time_s']:.1f}s  {record['images_per_s']:.1f} img/s")
            if report is not None:
                report(epoch, record)
        return _finish(run, plan, model, records, best, transfer, progress)
    finally:
        run.close()


def _schedule(warmup: int, total: int) -> Callable[[int], float]:
    """Linear warm-up from 1/10 to 1 over ``warmup`` steps, then cosine decay to 0 at ``total``."""

    def factor(step: int) -> float:
        if step < warmup:
            return 0.1 + 0.9 * step / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def _shown_metrics(task: str) -> tuple[str, ...]:
    return ("map", "map50", "map75") if task == "detection" else ("miou", "pixel_accuracy")


def _train_epoch(model: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer,
                 scheduler: torch.optim.lr_scheduler.LRScheduler, device: torch.device, cfg: TaskConfig,
                 steps: int, detection: bool, *, desc: str, progress: bool) -> tuple[dict[str, float], int]:
    """One pass over ``steps`` batches; returns mean losses (total and, for detectors, each part)."""
    model.train()
    sums: dict[str, float] = {}
    seen = 0
    bar = tqdm(total=steps, desc=desc, leave=False, disable=not progress, dynamic_ncols=True)
    for step, batch in enumerate(loader):
        if step >= steps:
            break
        if detection:
            images, targets = batch
            images = [image.to(device) for image in images]
            # masks and ids are not used by box detectors; moving them would only cost time
            targets = [{"boxes": t["boxes"].to(device), "labels": t["labels"].to(device)} for t in targets]
            parts = model(images, targets)
            loss = sum(parts.values())
            n = len(images)
        else:
            images, masks = batch
            logits = model(images.to(device))
            loss = F.cross_entropy(logits, masks.to(device), ignore_index=255)
            parts = {}
            n = len(images)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"the training loss became {loss.item()} at {desc}, step {step + 1}; "
                                     "lower the learning rate or raise the warm-up")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        scheduler.step()
        for key, value in {"train_loss": loss, **{f"train_{k}": v for k, v in parts.items()}}.items():
            sums[key] = sums.get(key, 0.0) + float(value.detach()) * n
        seen += n
        bar.set_postfix(loss=f"{sums['train_loss'] / seen:.3f}")
        bar.update()
    bar.close()
    return {key: value / seen for key, value in sums.items()}, seen


def plot_task_curves(records: list[dict[str, Any]], path: str | Path, *, task: str, title: str = "") -> Path:
    """Training loss and the validation metrics per epoch, as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    path = Path(path)
    epochs = [r["epoch"] for r in records]
    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(10, 3.8))
    for key in sorted(k for k in records[-1] if k.startswith("train_")):
        ax_loss.plot(epochs, [r.get(key) for r in records], "-o", ms=3, label=key.removeprefix("train_"))
    ax_loss.set_ylabel("training loss")
    for key in _shown_metrics(task):
        ax_metric.plot(epochs, [r.get(key) for r in records], "-s", ms=3, label=key)
    ax_metric.set_ylabel("validation")
    for ax in (ax_loss, ax_metric):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)  # an interrupted plot never leaves a half-written PNG
    return path


def _plan_new(task: str, head: str, genotype: Genotype | str | None, *, backbone: str | None,
              config: TaskConfig | None, space: SearchSpace | str | None, data: DataSpec, init_channels: int | None,
              cells_per_stage: int, fpn_channels: int, num_classes: int | None,
              init_from: str | Path | None) -> _Plan:
    check_head(task, head)
    cfg = (config or TaskConfig()).check(task)
    resolve_device(cfg.device)
    label = _label(genotype, backbone, init_from)
    if init_from is not None:
        from nas.checkpoint import load_checkpoint

        classifier = load_checkpoint(classification_checkpoint(init_from))["spec"]
        if genotype is None and backbone is None:
            genotype = Genotype.from_dict(classifier["genotype"], source=str(init_from))
        if init_channels is None:
            init_channels = classifier.get("init_channels")
    train_set, val_set, classes = load_task_data(task, data, cfg, num_classes=num_classes)
    spec = ModelSpec.create(task=task, head=head, num_classes=classes, genotype=genotype, backbone=backbone, space=space,
                           image_size=cfg.image_size, init_channels=init_channels or 8,
                           cells_per_stage=cells_per_stage, fpn_channels=fpn_channels)
    return _Plan(spec, cfg, data, train_set, val_set, label, None if init_from is None else str(init_from))


def _create_run(plan: _Plan, model: nn.Module, out: str | Path | None, transfer: Transfer | None) -> Run:
    spec = plan.spec
    run = Run.create(RUN_KINDS[spec.task], {
        "task": spec.task, "label": plan.label, "data": plan.data.to_dict(), "seed": plan.config.seed,
        "train": plan.config.to_dict(), "model": spec.to_dict(), "init_from": plan.init_from,
        "transfer": transfer.summary() if transfer else None}, out=out, name=plan.label)
    if spec.genotype is not None:
        spec.genotype.save(run.path / "genotype.json")
    run.write_json("model.json", {**measure_task_model(model, spec, latency=False), "description": spec.describe()})
    return run


def _plan_resume(path: Path, task: str) -> tuple[Run, _Plan, dict[str, Any] | None]:
    run = Run.open(path)
    saved = run.config
    if saved.get("kind") != RUN_KINDS[task]:
        raise NasError(f"{path} is a {saved.get('kind')!r} run, not a `nas {RUN_KINDS[task]}` run; pass one of those")
    spec = ModelSpec.from_dict(saved["model"], source=str(path / "config.json"))
    cfg = TaskConfig.from_dict(saved["train"])
    data = DataSpec(**saved["data"])
    state = None
    last = run.path / "checkpoints" / "last.pt"
    if last.exists():
        state = load_task_checkpoint(last)
        if state[TASK_CHECKPOINT_KEY] != spec.to_dict() or state.get("train") != cfg.to_dict():
            raise NasError(f"{last} holds another model or settings than {path / 'config.json'}; "
                           "it cannot be resumed here, start a new run")
    train_set, val_set, classes = load_task_data(task, data, cfg, num_classes=spec.num_classes)
    if classes != spec.num_classes:
        raise NasError(f"the data of run {path} now has {classes} classes, the model {spec.num_classes}")
    return run, _Plan(spec, cfg, data, train_set, val_set, saved.get("label", spec.head), saved.get("init_from")), state


def load_task_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint of ``nas detect`` / ``nas segment``; a foreign file is a :class:`NasError`."""
    path = Path(path)
    if not path.is_file():
        raise NasError(f"checkpoint {path} not found; pass a `nas detect` / `nas segment` run folder")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a truncated or foreign file
        raise NasError(f"{path} is not a readable checkpoint ({type(exc).__name__}); it may be damaged") from None
    if not isinstance(state, dict) or TASK_CHECKPOINT_KEY not in state or "model" not in state:
        raise NasError(f"{path} is not a `nas detect` / `nas segment` checkpoint")
    return state


def load_task_model(path: str | Path) -> tuple[nn.Module, ModelSpec, dict[str, Any]]:
    """``(model in eval mode, spec, checkpoint)`` of a task checkpoint file."""
    state = load_task_checkpoint(path)
    spec = ModelSpec.from_dict(state[TASK_CHECKPOINT_KEY], source=str(path))
    model = spec.build()
    model.load_state_dict(state["model"])
    return model.eval(), spec, state


def _finish(run: Run, plan: _Plan, model: nn.Module, records: list[dict[str, Any]], best: dict[str, Any],
            transfer: Transfer | None, progress: bool) -> TaskResult:
    from nas.export import export

    model.eval()
    spec = plan.spec
    objective = OBJECTIVES[spec.task]
    exports: dict[str, Path] = {}
    if plan.config.export_formats:
        exports = export(model, plan.config.export_formats, run.path / "export", spec=spec, name=plan.label)
    metrics = {**records[-1], f"best_{objective}": best[objective], "best_epoch": best["epoch"]}
    run.write_json("result.json", {"metrics": metrics, "exports": {k: str(v) for k, v in exports.items()}})
    if progress:
        tqdm.write(f"done: {objective} {metrics[objective]:.3f} (best {best[objective]:.3f} at epoch "
                   f"{best['epoch']}); run folder {run.path}" + (f", export {run.path / 'export'}" if exports else ""))
    return TaskResult(run.path, metrics, model, spec, exports, transfer)


# -- measuring -------------------------------------------------------------------------------------
@torch.no_grad()
def measure_task_model(model: nn.Module, spec: ModelSpec, *, latency: bool = True, repeats: int = 10
                       ) -> dict[str, Any]:
    """Parameters, MACs and (optionally) median latency of one ``image_size`` image, eval mode.

    ``macs`` covers the whole model as run in eval mode (for detectors: the list input through
    torchvision's transform, heads and box predictor on its proposals); ``backbone_macs`` the
    genotype or torchvision backbone alone. MACs count convolutions and matrix products
    (``torch.utils.flop_counter``); RoI align, NMS and element-wise ops are not counted.
    """
    import statistics

    from torch.utils.flop_counter import FlopCounterMode

    from nas.measure import count_parameters

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    size = spec.image_size
    image = torch.rand(3, size, size, generator=torch.Generator().manual_seed(0)).to(device)

    def forward() -> Any:
        return model([image]) if spec.task == "detection" else model(image[None])

    backbone = task_backbone(model)
    try:
        counter = FlopCounterMode(display=False)
        with counter:
            forward()
        macs = counter.get_total_flops() // 2
        counter = FlopCounterMode(display=False)
        with counter:
            backbone(image[None])
        result: dict[str, Any] = {"params": count_parameters(model), "backbone_params": count_parameters(backbone),
                                  "macs": macs, "backbone_macs": counter.get_total_flops() // 2,
                                  "input_size": [3, size, size], "device": str(device)}
        if latency:
            times = []
            for i in range(repeats + 2):  # two warm-up passes
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                started = time.perf_counter()
                forward()
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                if i >= 2:
                    times.append((time.perf_counter() - started) * 1000)
            result["latency_ms"] = statistics.median(times)
    finally:
        model.train(was_training)
    return result
