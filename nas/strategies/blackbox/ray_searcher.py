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
    parameters and number); later Tune trials ask the study for new ones as usual.

    Each config it proposes carries the trial's number under ``number_key``: ``numbers`` is
    (the numbers of the resumed trials, the first new number); then one more per proposal.
    """

    def __init__(self, *args: Any, resumed: Sequence[Any] = (), numbers: tuple[Sequence[int], int] = ((), 0),
                 number_key: str = "nas_trial", **kwargs: Any) -> None:
        self._resumed = list(resumed)
        self._numbers = list(numbers[0])
        self._next = numbers[1]
        self._number_key = number_key
        super().__init__(*args, **kwargs)

    def suggest(self, trial_id: str) -> dict | None:
        if trial_id not in self._ot_trials and self._resumed:
            self._ot_trials[trial_id] = self._resumed.pop(0)
        config = super().suggest(trial_id)
        if isinstance(config, dict):
            if self._numbers:
                number = self._numbers.pop(0)
            else:
                number, self._next = self._next, self._next + 1
            config = {**config, self._number_key: number}
        return config
