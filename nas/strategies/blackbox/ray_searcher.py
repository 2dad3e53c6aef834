"""The searcher of a resumed Ray Tune search: Tune's ``OptunaSearch`` continuing a study that
was rebuilt from the run's trial log (see :func:`nas.strategies.blackbox.ray_tune.rebuilt_study`).

Kept apart from :mod:`nas.strategies.blackbox.ray_tune` because it imports Ray, which the
``nas`` command should not load just to parse its options.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ray.tune.search.optuna import OptunaSearch


class ResumedOptunaSearch(OptunaSearch):
    """``OptunaSearch`` whose first Tune trials take over ``resumed``, the study's trials that were
    running when the search stopped (Optuna trials asked again, in order, each with its own
    parameters and number); later Tune trials ask the study for new ones as usual."""

    def __init__(self, *args: Any, resumed: Sequence[Any] = (), **kwargs: Any) -> None:
        self._resumed = list(resumed)
        super().__init__(*args, **kwargs)

    def suggest(self, trial_id: str) -> dict | None:
        if trial_id not in self._ot_trials and self._resumed:
            self._ot_trials[trial_id] = self._resumed.pop(0)
        return super().suggest(trial_id)
