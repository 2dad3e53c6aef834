"""Score a genotype as a detection or segmentation backbone: evaluators for black-box search.

Each evaluation is one short :func:`~nas.tasks.engine.train_detector` /
:func:`~nas.tasks.engine.train_segmenter` run on the embedded shapes data (or COCO / mask
folders), in its own run folder (the search's ``trials/NNNN`` when given). The objective is COCO
``map`` (detection) or ``miou`` (segmentation); the metrics also hold ``params`` / ``macs`` of
the whole model and ``backbone_params`` / ``backbone_macs`` for multi-objective searches, and
``latency_ms`` when asked for. Per-epoch reports go to the search (pruning).

Example::

    from nas.strategies.blackbox.optuna_search import search_blackbox
    evaluator = SegmentationEvaluator(head="fcn", epochs=1, train_images=64, val_images=16)
    result = search_blackbox("darts", evaluator, strategy="random", trials=3)
    result.metrics["miou"]
"""
from __future__ import annotations

import dataclasses
import json
import math
import tempfile
from pathlib import Path
from typing import Any

from nas.errors import NasError
from nas.evaluators.base import Evaluator, Report
from nas.genotype import Genotype
from nas.space import SearchSpace, load_space, space_from_dict
from nas.tasks.engine import (
    OBJECTIVES,
    DataSpec,
    TaskConfig,
    check_head,
    load_task_data,
    measure_task_model,
    train_detector,
    train_segmenter,
)

SIZE_METRICS = ("params", "macs", "backbone_params", "backbone_macs")
_QUALITY = {"detection": ("map", "map50", "map75", "best_map"), "segmentation": ("miou", "pixel_accuracy", "best_miou")}


class TaskEvaluator(Evaluator):
    """Short training of each genotype as the backbone of a detector or segmenter.

    head: the detector kind (``fasterrcnn``, ``retinanet``, ``fcos``) or segmentation head
        (``fcn``, ``deeplabv3``, ``unet``).
    space: the space the genotypes belong to (default: each genotype's own).
    dataset: ``shapes`` (embedded, default); ``coco`` with ``data_root`` and ``ann``
        (detection); ``voc`` with ``images``, ``masks`` and ``num_classes`` (segmentation).
    epochs, init_channels, cells_per_stage, device, seed: the training run.
    measure_latency: also measure ``latency_ms`` (one image, on the training device).
    task_settings: any other :class:`~nas.tasks.engine.TaskConfig` field (``lr``,
        ``image_size``, ``train_images``, ``val_images``, ``batch_size``, ...).
    """

    task = ""

    def __init__(self, head: str, *, space: SearchSpace | str | dict[str, Any] | None = None,
                 dataset: str = "shapes", data_root: str | None = None, ann: str | None = None,
                 images: str | None = None, masks: str | None = None, num_classes: int | None = None,
                 epochs: int = 2, init_channels: int = 8, cells_per_stage: int = 1, device: str = "auto",
                 seed: int = 0, measure_latency: bool = False, **task_settings: Any) -> None:
        if isinstance(space, dict):  # as written by config()
            space = space_from_dict(space, source="evaluator config")
        self.search_space = load_space(space) if space is not None else None
        self.space = self.search_space.name if self.search_space is not None else ""
        check_head(self.task, head)
        self.head = head
        self.data = {"dataset": dataset, "data_root": data_root, "ann": ann, "images": images, "masks": masks,
                     "num_classes": num_classes}
        self.epochs = epochs
        self.init_channels = init_channels
        self.cells_per_stage = cells_per_stage
        self.measure_latency = measure_latency
        known = {f.name for f in dataclasses.fields(TaskConfig)}
        unknown = sorted(set(task_settings) - known)
        if unknown:
            raise NasError(f"unknown task setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        self.task_settings = dict(task_settings)
        # a search trains many networks: no export per trial
        self.task_config = TaskConfig(**{**task_settings, "epochs": epochs, "device": device, "seed": seed,
                                         "export_formats": ()}).check(self.task)
        # open the data now: a wrong name or path fails before a search creates anything
        load_task_data(self.task, DataSpec(dataset, data_root, ann, images, masks), self.task_config,
                       num_classes=num_classes)
        self.objective = OBJECTIVES[self.task]

    @property
    def provides(self) -> tuple[str, ...]:
        return _QUALITY[self.task] + ("train_loss",) + SIZE_METRICS + (("latency_ms",) if self.measure_latency else ())

    def evaluate(self, genotype: Genotype, *, report: Report | None = None,
                 workdir: Path | None = None) -> dict[str, Any]:
        if workdir is not None:
            return {**self._train(genotype, Path(workdir), report), "run": str(workdir)}
        with tempfile.TemporaryDirectory(prefix="nas-task-trial-") as tmp:
            return self._train(genotype, Path(tmp) / "run", report)

    def _train(self, genotype: Genotype, out: Path, report: Report | None) -> dict[str, Any]:
        common = dict(config=self.task_config, space=self.search_space, init_channels=self.init_channels,
                      cells_per_stage=self.cells_per_stage, out=out, report=report, progress=False)
        data = self.data
        if self.task == "detection":
            result = train_detector(genotype, detector=self.head, dataset=data["dataset"], data_root=data["data_root"],
                                    ann=data["ann"], **common)
        else:
            result = train_segmenter(genotype, head=self.head, dataset=data["dataset"], images=data["images"],
                                     masks=data["masks"], num_classes=data["num_classes"], **common)
        metrics = {k: v for k, v in result.metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        loss = metrics.get("train_loss")
        if loss is not None and not math.isfinite(loss):
            raise FloatingPointError(f"the training loss is {loss} after training")
        size = json.loads((result.run / "model.json").read_text())
        metrics.update({k: size[k] for k in SIZE_METRICS})
        if self.measure_latency:
            metrics["latency_ms"] = measure_task_model(result.model, result.spec)["latency_ms"]
        return metrics

    def config(self) -> dict[str, Any]:
        cfg = self.task_config
        return {"name": self.task, "head": self.head,
                "space": self.search_space.to_dict() if self.search_space is not None else None,
                **{k: v for k, v in self.data.items() if v is not None},
                "epochs": cfg.epochs, "init_channels": self.init_channels, "cells_per_stage": self.cells_per_stage,
                "device": cfg.device, "seed": cfg.seed, "measure_latency": self.measure_latency, **self.task_settings}


class DetectionEvaluator(TaskEvaluator):
    """:class:`TaskEvaluator` of a detector; objective ``map`` (COCO AP@[.50:.95]).

    Example::

        evaluator = DetectionEvaluator(detector="fcos", epochs=2)
        evaluator.evaluate(get_reference("DARTS_V2"))["map50"]
    """

    task = "detection"

    def __init__(self, detector: str = "fcos", **settings: Any) -> None:
        settings.pop("head", None)  # config() writes the detector as "head"
        super().__init__(detector, **settings)


class SegmentationEvaluator(TaskEvaluator):
    """:class:`TaskEvaluator` of a segmenter; objective ``miou`` (mean IoU over present classes).

    Example::

        evaluator = SegmentationEvaluator(head="unet", epochs=2)
        evaluator.evaluate(get_reference("DARTS_V2"))["miou"]
    """

    task = "segmentation"

    def __init__(self, head: str = "unet", **settings: Any) -> None:
        super().__init__(head, **settings)


def task_evaluator_from_config(config: dict[str, Any], **overrides: Any) -> TaskEvaluator:
    """The evaluator an ``evaluator.config()`` of this module describes (to resume a search or
    to rebuild it in a worker); ``overrides`` replace settings (e.g. ``device="cuda"``)."""
    settings = {k: v for k, v in {**config, **overrides}.items() if k not in ("name", "class")}
    name = config.get("name")
    if name == "detection":
        return DetectionEvaluator(detector=settings.pop("head", "fcos"), **settings)
    if name == "segmentation":
        return SegmentationEvaluator(**settings)
    raise NasError(f"unknown task evaluator {name!r}; known: detection, segmentation")


def make_task_evaluator(task: str, *, head: str | None = None, **settings: Any) -> TaskEvaluator:
    """A :class:`DetectionEvaluator` (``task="detection"``) or :class:`SegmentationEvaluator`;
    ``head`` defaults to ``fcos`` / ``unet`` and settings given as ``None`` keep their defaults
    (so command-line options that were not set can be passed straight through).

    Example::

        evaluator = make_task_evaluator("segmentation", head="fcn", epochs=1, image_size=None)
    """
    given = {k: v for k, v in settings.items() if v is not None}
    if task == "detection":
        return DetectionEvaluator(detector=head or "fcos", **given)
    if task == "segmentation":
        return SegmentationEvaluator(head=head or "unet", **given)
    raise NasError(f"unknown task {task!r}; choose detection or segmentation")
