"""Local search as an Optuna sampler: hill climbing over one-decision neighbours, with restarts.

White, Nolen, Ravi, Savani, Berg: "Exploring the Loss Landscape in Neural Architecture Search",
UAI 2021 (local search is a strong baseline on NAS-Bench-201 and the DARTS space). The
incumbent is the best complete trial since the last restart (the first ``start`` trials, which
are random or enqueued, e.g. by a zero-cost warm start). Each new trial evaluates a neighbour
of the incumbent (the incumbent with one decision changed, in random order) that the study does
not hold yet; a better neighbour becomes the incumbent at once (first improvement). When every
neighbour is evaluated the incumbent is a local optimum and the next trial restarts from a
random cell not yet evaluated (marked with the system attribute ``nas:restart``).

The state lives in the study, as for evolution: any storage, several workers, resume.
"""
from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState

from nas.errors import NasError
from nas.genotype import Genotype
from nas.space import SearchSpace, load_space
from nas.strategies.blackbox.distinct import EvaluatedCells
from nas.strategies.blackbox.sampling import param_choices

RESTART = "nas:restart"


class LocalSearchSampler(BaseSampler):
    """Local search (single objective).

    space: the searched space; a neighbour changes one of its decisions
        (:func:`~nas.strategies.blackbox.sampling.param_choices`).
    key: names a genotype's cell (:func:`~nas.strategies.blackbox.distinct.cell_key`): a
        neighbour with the key of an evaluated trial counts as evaluated.
    start: random (or enqueued) trials before the first climb.
    seed: seeds the neighbour order and the random cells.
    """

    def __init__(self, space: SearchSpace | str, key: Callable[[Genotype], str], *, start: int = 1,
                 seed: int | None = None) -> None:
        if start < 1:
            raise NasError(f"local search starts from at least one cell, got start={start}")
        self.space = load_space(space)
        self.cells = EvaluatedCells(self.space, key)
        self.start = start
        self._choices = param_choices(self.space)
        self._rng = random.Random(seed)
        self._random = RandomSampler(seed=seed)
        self._plans: dict[int, dict[str, Any]] = {}  # trial number -> its neighbour (empty: random)

    def reseed_rng(self) -> None:
        self._rng = random.Random()
        self._random.reseed_rng()

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(self, study: Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return {}

    def sample_independent(self, study: Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        plan = self._plan(study, trial)
        if param_name in plan and param_name in self._choices:
            return plan[param_name]
        return self._random.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState, values: Any) -> None:
        self._plans.pop(trial.number, None)

    def forget(self, number: int) -> None:
        self._plans.pop(number, None)

    def incumbent(self, study: Study) -> FrozenTrial | None:
        """The best complete trial since the last restart (``None`` while fewer than ``start``
        trials are complete)."""
        if len(study.directions) != 1:
            raise NasError("local search optimises one objective; use --strategy nsga2 for several")
        trials = study.get_trials(deepcopy=False)
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        if len(complete) < self.start:
            return None
        restarts = [t.number for t in trials if t.system_attrs.get(RESTART)]
        since = max(restarts) if restarts else -1
        climb = [t for t in complete if t.number >= since] or complete
        pick = max if study.direction == StudyDirection.MAXIMIZE else min
        return pick(climb, key=lambda t: t.value)

    def _plan(self, study: Study, trial: FrozenTrial) -> dict[str, Any]:
        if trial.number in self._plans:
            return self._plans[trial.number]
        plan: dict[str, Any] = {}
        best = None if trial.system_attrs.get("fixed_params") else self.incumbent(study)
        if best is not None:
            taken = self.cells.taken(study, but=trial.number)
            neighbours = [(name, value) for name, choices in self._choices.items() if name in best.params
                          for value in choices if value != best.params[name]]
            self._rng.shuffle(neighbours)
            for name, value in neighbours:
                params = {**best.params, name: value}
                if self.cells.of_params(params) not in taken:
                    plan = params
                    break
            else:  # a local optimum: start again from a random cell
                study._storage.set_trial_system_attr(trial._trial_id, RESTART, True)
        self._plans[trial.number] = plan
        return plan
