"""The one evaluator interface that black-box strategies share: genotype in, metrics out.

An evaluator may call ``report(epoch, metrics)`` after each epoch so that a pruner (Optuna) or a
scheduler (Ray Tune) can stop the trial early; ``report`` stops a trial by raising (for example
``optuna.TrialPruned``), which the evaluator lets propagate.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Callable

from nas.genotype import Genotype

Report = Callable[[int, dict[str, float]], None]


class Evaluator(ABC):
    """Scores genotypes of one space.

    ``objective`` names the metric a single-objective search maximises (for example
    ``"val_acc"``); the metrics dict returned by :meth:`evaluate` always contains it, plus any
    of ``params``, ``macs``, ``latency_ms`` that a multi-objective search may minimise.
    """

    objective: str = "val_acc"
    space: str = ""

    @abstractmethod
    def evaluate(self, genotype: Genotype, *, report: Report | None = None,
                 workdir: Path | None = None) -> dict[str, Any]:
        """Return the metrics of ``genotype``; call ``report`` after each epoch if given."""

    def config(self) -> dict[str, Any]:
        """Settings to record in the run folder (and to rebuild the evaluator in a worker)."""
        return {}
