"""Score a genotype by training it briefly: the evaluator of real black-box searches, any task.

Each evaluation is one :func:`nas.train.train` run (its own run folder under the search's
``trials/NNNN``), so per-epoch curves, checkpoints and the trained weights of every trial stay
inspectable. Per-epoch reports go to the search (pruning). A diverged loss raises
:class:`~nas.errors.TrialDiverged`, which a search records as a failed trial.

* ``train`` (classification): the metrics are the last epoch's (``val_acc`` as a fraction,
  ``val_loss``, ``train_loss``, ``best_val_acc``), the test split's ``test_acc`` /
  ``test_loss``, and the network's ``params``, ``macs``, ``activation_mib``. A search selects
  on ``val_acc`` measured on a part of the training set held out from training
  (``val_fraction``, 20% by default, the same images for every trial); the test split is
  scored once per trial and never steers the search.
* ``detection`` / ``segmentation``: the genotype is the backbone of a detector or segmenter
  (``head``) trained on the embedded shapes data (or COCO / mask folders); the objective is
  COCO ``map`` or ``miou``, and the metrics also hold ``backbone_params`` / ``backbone_macs``.

``latency_ms`` is measured when asked for (one image, on the training device).

>>> evaluator = TrainingEvaluator("digits", epochs=1, init_channels=4, layers=3)  # doctest: +SKIP
>>> evaluator.evaluate(get_reference("DARTS_V2"))["val_acc"]  # doctest: +SKIP
>>> TrainingEvaluator(task="segmentation", head="fcn", epochs=1).objective  # doctest: +SKIP
'miou'
"""
from __future__ import annotations

import dataclasses
import json
import math
import tempfile
from pathlib import Path
from typing import Any

from nas import train as training
from nas.builders.spec import check_head
from nas.errors import NasError, TrialDiverged
from nas.evaluators.base import Evaluator, Report, register_evaluator
from nas.genotype import Genotype
from nas.measure import latency_ms
from nas.space import SearchSpace, load_space, space_from_dict
from nas.train.config import TrainConfig, check_config, recipe
from nas.train.engine import check_finite
from nas.train.tasks import data_spec, get_task

__all__ = ["TrainingEvaluator"]

NAMES = {"classification": "train", "detection": "detection", "segmentation": "segmentation"}
QUALITY = {"classification": ("val_acc", "best_val_acc", "val_loss", "train_acc"),
           "detection": ("map", "map50", "map75", "best_map"),
           "segmentation": ("miou", "pixel_accuracy", "best_miou")}
SIZE_METRICS = ("params", "macs", "activation_mib", "backbone_params", "backbone_macs")


@register_evaluator("segmentation", task="segmentation")
@register_evaluator("detection", task="detection")
@register_evaluator("train")
class TrainingEvaluator(Evaluator):
    """Short training of each genotype, as a classifier or as the backbone of a detector or segmenter.

    dataset: classification: as for ``nas train`` (default ``digits``, embedded); detection /
        segmentation: ``shapes`` (embedded, default), ``coco`` with ``data_root`` and ``ann``,
        ``voc`` with ``images``, ``masks`` and ``num_classes``.
    task, head: ``classification`` (no head), ``detection`` (default head ``fcos``) or
        ``segmentation`` (default ``unet``).
    space: the space the genotypes belong to (default: each genotype's own).
    epochs (default 3; 2 for detection / segmentation), batch_size, init_channels, layers,
        device, seed: the training run; unset values come from the recipe
        (:func:`nas.train.recipe`).
    measure_latency: also measure ``latency_ms`` for a latency objective.
    val_fraction: classification: share of the training images held out to compute
        ``val_acc`` (default 0.2; 0 validates on the test split, which then steers the search);
        coco / voc: the share held out for evaluation.
    train_settings: any other :class:`nas.train.TrainConfig` field (``lr``, ``train_subset``,
        ``image_size``, ``train_images``, ...).
    """

    trial_settings = TrainConfig

    def __init__(self, dataset: str | None = None, *, task: str = "classification", head: str | None = None,
                 space: SearchSpace | str | dict[str, Any] | None = None, data_root: str | Path | None = None,
                 ann: str | None = None, images: str | None = None, masks: str | None = None,
                 num_classes: int | None = None, epochs: int | None = None, batch_size: int | None = None,
                 init_channels: int | None = None, layers: int | None = None, device: str = "auto", seed: int = 0,
                 measure_latency: bool = False, val_fraction: float = 0.2, **train_settings: Any) -> None:
        adapter = get_task(task)
        self.task = task
        self.head = head if task == "classification" or head is not None else adapter.default_head
        check_head(task, self.head)
        self.objective = adapter.objective
        if isinstance(space, dict):  # as written by config()
            space = space_from_dict(space, source="evaluator config")
        self.search_space = load_space(space) if space is not None else None
        self.space = self.search_space.name if self.search_space is not None else ""
        self.data = data_spec(task, dataset or (adapter.default_dataset or "digits"), root=data_root, ann=ann,
                              images=images, masks=masks, num_classes=num_classes)
        self.dataset = self.data.name
        self.measure_latency = measure_latency
        known = {f.name for f in dataclasses.fields(TrainConfig)}
        unknown = sorted(set(train_settings) - known)
        if unknown:
            raise NasError(f"unknown training setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        self.train_settings = dict(train_settings)
        overrides = {"epochs": (3 if task == "classification" else 2) if epochs is None else epochs, "batch_size": batch_size,
                     "init_channels": init_channels, "layers": layers, "device": device, "seed": seed,
                     "val_fraction": val_fraction, **train_settings}
        # a search trains hundreds of networks: no export beyond a classifier's standalone source
        self.train_config = check_config(dataclasses.replace(
            recipe(self.dataset, task), export_formats=(), **{k: v for k, v in overrides.items() if v is not None}),
            task)
        # open (and check) the data now: a wrong name, path or file fails before a search creates anything
        adapter.load_data(self.data, self.train_config)

    @classmethod
    def from_config(cls, settings: dict[str, Any]) -> TrainingEvaluator:
        if settings.get("task", "classification") == "classification":
            settings = {"val_fraction": 0.0, **settings}  # configs written before validation was held out
        return cls(**settings)

    @property
    def provides(self) -> tuple[str, ...]:
        held_out = ("test_acc", "test_loss") if self.task == "classification" and \
            self.train_config.val_fraction > 0 else ()
        sizes = SIZE_METRICS if self.task != "classification" else SIZE_METRICS[:3]
        return (QUALITY[self.task] + ("train_loss",) + sizes + held_out
                + (("latency_ms",) if self.measure_latency else ()))

    reports_epochs = True

    def can_continue(self, workdir: Path) -> bool:
        """A trial's training that wrote its settings and an epoch checkpoint continues from it."""
        return (Path(workdir) / "config.json").is_file() and (Path(workdir) / "checkpoints" / "last.pt").is_file()

    def evaluate(self, genotype: Genotype, *, report: Report | None = None,
                 workdir: Path | None = None) -> dict[str, Any]:
        if workdir is not None:
            return {**self._train(genotype, Path(workdir), report), "run": str(workdir)}
        with tempfile.TemporaryDirectory(prefix="nas-trial-") as tmp:
            return self._train(genotype, Path(tmp) / "run", report)

    def _train(self, genotype: Genotype, out: Path, report: Report | None) -> dict[str, Any]:
        def on_epoch(epoch: int, metrics: dict[str, Any]) -> None:
            check_finite(metrics, epoch)
            if report is not None:
                report(epoch, metrics)

        data = self.data
        if self.can_continue(out):  # an interrupted trial: its run continues from its last epoch
            result = training.train(genotype, resume=out, task=self.task, report=on_epoch, progress=False,
                                    data_root=data.root)
        else:
            result = training.train(genotype, data.name, task=self.task, head=self.head, config=self.train_config,
                                    space=self.search_space, out=out, report=on_epoch, progress=False,
                                    data_root=data.root, ann=data.ann, images=data.images, masks=data.masks,
                                    num_classes=data.num_classes)
        metrics = {k: v for k, v in result.metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        for name in ("train_loss", "val_loss", self.objective):
            value = metrics.get(name)
            if value is not None and not math.isfinite(value):
                raise TrialDiverged(f"{name} is {value} after training")
        size = json.loads((result.run / "model.json").read_text())
        metrics.update({k: size[k] for k in SIZE_METRICS if k in size})
        if self.measure_latency:
            metrics["latency_ms"] = latency_ms(result.model, tuple(size["input_size"]), task=self.task)
        return metrics

    def config(self) -> dict[str, Any]:
        cfg = self.train_config
        data = {k: v for k, v in (("ann", self.data.ann), ("images", self.data.images), ("masks", self.data.masks),
                                  ("num_classes", self.data.num_classes)) if v is not None}
        head = {} if self.task == "classification" else {"head": self.head}
        return {"name": NAMES[self.task], **head, "dataset": self.dataset, "data_root": self.data.root, **data,
                "space": self.search_space.to_dict() if self.search_space is not None else None,
                "epochs": cfg.epochs, "batch_size": cfg.batch_size, "init_channels": cfg.init_channels,
                "layers": cfg.layers, "device": cfg.device, "seed": cfg.seed, "val_fraction": cfg.val_fraction,
                "measure_latency": self.measure_latency, **self.train_settings}
