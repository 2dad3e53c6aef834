"""The black-box strategies: ``random``, ``tpe``, ``evolution`` (regularized, aging), ``local``
(local search) and ``nsga2``, each an Optuna sampler over define-by-run genotypes; ``backend`` runs the trials in
this process (Optuna) or as Ray Tune trials. The search itself is
:func:`nas.strategies.blackbox.search.search`.

>>> from nas.strategies import get_strategy
>>> from nas.evaluators import evaluator_from_config
>>> tpe = get_strategy("tpe")
>>> result = tpe.search("nb201", BlackboxSettings(trials=20),  # doctest: +SKIP
...                     evaluator=evaluator_from_config({"name": "nb201"}))
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from nas.strategies.base import SearchData, Strategy, register_strategy
from nas.strategies.blackbox.settings import BlackboxSettings


class BlackboxStrategy(Strategy):
    """A black-box strategy: its name picks the sampler (:func:`~.optuna_search.make_sampler`)."""

    kind = "blackbox"
    Settings = BlackboxSettings
    description = ("each trial samples one genotype and scores it with the evaluator (--evaluator); the study "
                   "is stored in <run>/study.db unless --storage says otherwise (backend optuna), or runs as "
                   "Ray Tune trials under <run>/tune/ (backend ray)")

    def search(self, space: Any, settings: BlackboxSettings | None, *, evaluator: Any = None,
               data: SearchData | None = None, out: str | Path | None = None, resume: str | Path | None = None,
               seed: int = 0, progress: bool = True) -> Any:
        # Optuna (and Ray, for backend ray) load only when a search runs, not for `nas search --help`
        from nas.strategies.blackbox.search import search

        return search(self.name, space, settings or BlackboxSettings(), evaluator=evaluator, out=out,
                      resume=resume, seed=seed, progress=progress)


@register_strategy
class RandomSearch(BlackboxStrategy):
    name = "random"


@register_strategy
class TPE(BlackboxStrategy):
    name = "tpe"


@register_strategy
class Evolution(BlackboxStrategy):
    name = "evolution"


@register_strategy
class LocalSearch(BlackboxStrategy):
    name = "local"


@register_strategy
class NSGA2(BlackboxStrategy):
    name = "nsga2"
