"""The one evaluator interface that black-box strategies share, and the registry of evaluators.

An evaluator may call ``report(epoch, metrics)`` after each epoch so that a pruner (Optuna) or a
scheduler (Ray Tune) can stop the trial early; ``report`` stops a trial by raising (for example
``optuna.TrialPruned``), which the evaluator lets propagate.

Adding an evaluator is one class and one :func:`register_evaluator` line; its ``config()``
names it, and :func:`evaluator_from_config` rebuilds it from that plain data.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nas.errors import NasError
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
    trial_settings: type | None = None  # the settings dataclass that ``--trial-setting NAME=VALUE`` sets, if any
    reports_epochs: bool = False  # whether evaluate calls ``report`` per epoch (what pruners and schedulers act on)

    @abstractmethod
    def evaluate(self, genotype: Genotype, *, report: Report | None = None,
                 workdir: Path | None = None) -> dict[str, Any]:
        """Return the metrics of ``genotype``; call ``report`` after each epoch if given.

        ``workdir`` is the trial's own folder. When :meth:`can_continue` says an interrupted
        evaluation left enough there, the evaluator continues it (reporting only the epochs it
        still runs) instead of starting over.
        """

    def can_continue(self, workdir: Path) -> bool:
        """Whether ``workdir`` holds an interrupted evaluation this evaluator continues; a search
        clears the folder of a trial that runs again when it does not."""
        return False

    def config(self) -> dict[str, Any]:
        """Settings to record in the run folder (and to rebuild the evaluator in a worker), with
        the registered ``name``."""
        return {}

    @classmethod
    def from_config(cls, settings: dict[str, Any]) -> Evaluator:
        """The evaluator of ``config()`` without its ``name``; override to read older configs."""
        return cls(**settings)


# name -> (class, keyword arguments the name fixes)
EVALUATORS: dict[str, tuple[type[Evaluator], dict[str, Any]]] = {}


def register_evaluator(name: str, **preset: Any) -> Callable[[type[Evaluator]], type[Evaluator]]:
    """Class decorator: ``@register_evaluator("train")``; ``preset`` are keyword arguments that
    the name fixes (one class may serve several names, e.g. ``task="detection"``)."""

    def register(cls: type[Evaluator]) -> type[Evaluator]:
        if name in EVALUATORS and EVALUATORS[name][0] is not cls:
            raise ValueError(f"evaluator {name!r} is already registered ({EVALUATORS[name][0].__name__})")
        EVALUATORS[name] = (cls, dict(preset))
        return cls

    return register


def create_evaluator(name: str, **settings: Any) -> Evaluator:
    """The registered evaluator ``name`` with ``settings`` (settings given as ``None`` keep the
    evaluator's defaults, so unset command-line options can be passed straight through)."""
    if name not in EVALUATORS:
        raise NasError(f"unknown evaluator {name!r}; choose one of {', '.join(EVALUATORS)}")
    cls, preset = EVALUATORS[name]
    return cls(**preset, **{k: v for k, v in settings.items() if v is not None and k not in preset})


def evaluator_from_config(config: dict[str, Any], **overrides: Any) -> Evaluator:
    """The evaluator that ``config`` (an ``evaluator.config()``) describes; ``overrides``
    replace settings (for example ``device="cuda"`` on another machine)."""
    name = config.get("name")
    if name not in EVALUATORS:
        raise NasError(f"unknown evaluator {name!r} in the run's config; known: {', '.join(EVALUATORS)}")
    cls, preset = EVALUATORS[name]
    settings = {k: v for k, v in {**config, **overrides}.items() if k not in ("name", "class")}
    try:
        return cls.from_config({**settings, **preset})
    except TypeError as exc:  # a setting the evaluator does not take: a damaged or hand-edited config
        raise NasError(f"evaluator {name!r}: {exc}; the run's config.json may be damaged") from None
