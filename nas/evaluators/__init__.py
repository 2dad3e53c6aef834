"""Evaluators: genotype in, metrics out, for black-box strategies (Optuna, Ray Tune).

* :class:`~nas.evaluators.training.TrainingEvaluator`: a short training run per genotype.
* :class:`~nas.evaluators.nb201_table.NB201TableEvaluator`: NAS-Bench-201 lookups (seconds
  per search).
* :class:`~nas.tasks.evaluators.DetectionEvaluator` / ``SegmentationEvaluator``: a short
  detection or segmentation training run with the genotype as backbone (mAP / mIoU).

``evaluator.config()`` is plain data; :func:`evaluator_from_config` rebuilds the evaluator from
it (to resume a run or to start one in another process):

>>> evaluator = evaluator_from_config({"name": "nb201", "dataset": "cifar100"})  # doctest: +SKIP
>>> evaluator.config()["dataset"]  # doctest: +SKIP
'cifar100'
"""
from __future__ import annotations

from typing import Any

from nas.errors import NasError
from nas.evaluators.base import Evaluator, Report

EVALUATORS = ("train", "nb201", "detection", "segmentation")

__all__ = ["EVALUATORS", "Evaluator", "NB201TableEvaluator", "Report", "TrainingEvaluator",
           "evaluator_from_config"]


def evaluator_from_config(config: dict[str, Any], **overrides: Any) -> Evaluator:
    """The evaluator that ``config`` (an ``evaluator.config()``) describes; ``overrides``
    replace settings (for example ``device="cuda"`` on another machine)."""
    settings = {k: v for k, v in {**config, **overrides}.items() if k not in ("name", "class")}
    name = config.get("name")
    if name == "nb201":
        from nas.evaluators.nb201_table import NB201TableEvaluator

        return NB201TableEvaluator(**settings)
    if name == "train":
        from nas.evaluators.training import TrainingEvaluator

        settings.setdefault("val_fraction", 0.0)  # configs written before validation was held out
        return TrainingEvaluator(**settings)
    if name in ("detection", "segmentation"):
        from nas.tasks.evaluators import task_evaluator_from_config

        return task_evaluator_from_config(config, **overrides)
    raise NasError(f"unknown evaluator {name!r} in the run's config; known: {', '.join(EVALUATORS)}")


def __getattr__(name: str) -> Any:
    # imported on first use: the training evaluator pulls in the trainer and the data layer
    if name == "NB201TableEvaluator":
        from nas.evaluators.nb201_table import NB201TableEvaluator

        return NB201TableEvaluator
    if name == "TrainingEvaluator":
        from nas.evaluators.training import TrainingEvaluator

        return TrainingEvaluator
    raise AttributeError(f"module 'nas.evaluators' has no attribute {name!r}")
