"""Evaluators: genotype in, metrics out, for black-box strategies (Optuna, Ray Tune).

Registered names (:data:`EVALUATORS`, filled by :func:`register_evaluator`):

* ``train``: :class:`~nas.evaluators.training.TrainingEvaluator`, a short classification run
  per genotype; ``detection`` / ``segmentation``: the same class training a detector or
  segmenter with the genotype as backbone (mAP / mIoU).
* ``nb201``: :class:`~nas.evaluators.nb201_table.NB201TableEvaluator`, NAS-Bench-201 lookups
  (seconds per search).
* ``zc``: :class:`~nas.evaluators.zero_cost.ZeroCostEvaluator`, zero-cost proxies (NASWOT,
  synflow, snip, grad_norm, jacov, params) of the untrained network on one mini-batch (about a
  second per cell and proxy on a CPU).

``evaluator.config()`` is plain data; :func:`evaluator_from_config` rebuilds the evaluator from
it (to resume a run or to start one in another process):

>>> evaluator = evaluator_from_config({"name": "nb201", "dataset": "cifar100"})  # doctest: +SKIP
>>> evaluator.config()["dataset"]  # doctest: +SKIP
'cifar100'
"""
from __future__ import annotations

from nas.evaluators.base import (
    EVALUATORS,
    Evaluator,
    Report,
    create_evaluator,
    evaluator_from_config,
    register_evaluator,
)
from nas.evaluators.nb201_table import NB201TableEvaluator
from nas.evaluators.training import TrainingEvaluator
from nas.evaluators.zero_cost import PROXIES, ZeroCostEvaluator

__all__ = ["EVALUATORS", "PROXIES", "Evaluator", "NB201TableEvaluator", "Report", "TrainingEvaluator",
           "ZeroCostEvaluator", "create_evaluator", "evaluator_from_config", "register_evaluator"]
