"""Search without evaluating a cell twice: a sampler wrapper that redraws a proposal whose cell
the study already holds.

``distinct`` says when two genotypes are the same cell:

* ``function`` (default): they compute the same function. For NAS-Bench-201 cells this is
  :func:`nas.genotype.nb201.nb201_function` (dead edges dropped, isomorphic layer graphs
  equal: 15,625 cells, 5,605 functions); for other spaces the same genotype.
* ``same``: the same genotype.
* ``off``: every proposal is evaluated, repeats included (as the published benchmarks of
  random search and evolution count them).

Each trial is then an evaluation actually made, so ``--trials`` counts evaluations. The
wrapper asks the strategy's sampler for its whole proposal at once (relative sampling over
every decision), looks the cell up among the study's trials, and asks again, up to
:data:`PROPOSALS` times, then draws uniformly among the cells not yet evaluated. How many
proposals a trial redrew is stored with the trial (system attribute ``nas:redrawn``).
Enqueued trials (``--enqueue``, a warm start) are evaluated as given.
"""
from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.samplers import BaseSampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from nas.errors import NasError
from nas.genotype import Genotype, random_genotype
from nas.genotype.nb201 import nb201_function
from nas.space import SearchSpace, load_space
from nas.strategies.blackbox.sampling import genotype_to_params, param_choices, params_to_genotype, short_form
from nas.strategies.blackbox.seeded import not_evaluated
from nas.strategies.blackbox.settings import DISTINCT

PROPOSALS = 50  # proposals of the strategy per trial before a uniform draw among the cells left
UNIFORM_DRAWS = 5000
REDRAWN = "nas:redrawn"


def cell_key(mode: str) -> Callable[[Genotype], str]:
    """The function that names a genotype's cell under ``mode`` (``function`` or ``same``)."""
    if mode not in DISTINCT:
        raise NasError(f"unknown --distinct {mode!r}; choose one of {', '.join(DISTINCT)}")
    return function_key if mode == "function" else short_form


def function_key(genotype: Genotype) -> str:
    """What a genotype computes (NAS-Bench-201 cells), or the genotype itself (other spaces)."""
    return nb201_function(genotype) if genotype.space == "nb201" else short_form(genotype)


class EvaluatedCells:
    """The cells a study's trials hold, by key; keys are cached per trial number."""

    def __init__(self, space: SearchSpace, key: Callable[[Genotype], str]) -> None:
        self.space = space
        self.key = key
        self._keys: dict[int, str | None] = {}

    def of_params(self, params: dict[str, Any]) -> str | None:
        try:
            return self.key(params_to_genotype(params, self.space))
        except NasError:  # a trial stopped before all its decisions were stored
            return None

    def taken(self, study: Study, but: int | None = None) -> set[str]:
        """Keys of every trial of ``study`` that was or is being evaluated, except trial ``but``."""
        keys: set[str] = set()
        for trial in study._storage.get_all_trials(study._study_id, deepcopy=False):
            if trial.number == but or not_evaluated(trial) or trial.state == TrialState.WAITING:
                continue
            if self._keys.get(trial.number) is None:  # new, or its decisions were not all stored yet
                self._keys[trial.number] = self.of_params(trial.params) if trial.params else None
            if self._keys[trial.number] is not None:
                keys.add(self._keys[trial.number])
        return keys

    def __getstate__(self) -> dict[str, Any]:
        return {"space": self.space, "key": self.key, "_keys": {}}


class DistinctSampler(BaseSampler):
    """``inner`` (a :class:`~nas.strategies.blackbox.seeded.TrialSeededSampler`) with no cell
    proposed twice, under ``key`` (see the module docstring)."""

    def __init__(self, inner: BaseSampler, space: SearchSpace | str, key: Callable[[Genotype], str]) -> None:
        self.inner = inner
        self.space = load_space(space)
        self.cells = EvaluatedCells(self.space, key)
        self._full = {name: CategoricalDistribution(list(choices))
                      for name, choices in param_choices(self.space).items()}

    def _own(self, trial: FrozenTrial) -> bool:
        """Whether this wrapper picks the trial's cell (not an enqueued or replayed trial)."""
        return not trial.system_attrs.get("fixed_params") and not trial.params

    def reseed_rng(self) -> None:
        self.inner.reseed_rng()

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self.inner.before_trial(study, trial)

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        if not self._own(trial):
            return self.inner.infer_relative_search_space(study, trial)
        return dict(self._full)

    def sample_relative(self, study: Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        if not self._own(trial):
            return self.inner.sample_relative(study, trial, search_space)
        taken = self.cells.taken(study, but=trial.number)
        params: dict[str, Any] = {}
        for attempt in range(PROPOSALS):
            if attempt:
                redraw = getattr(self.inner, "redraw", None)
                if redraw is not None:
                    redraw(study, trial)
            params = self._proposal(study, trial)
            if self.cells.of_params(params) not in taken:
                self._note(study, trial, attempt)
                return params
        rng = random.Random(repr((trial.number, sorted(taken))))
        for draw in range(UNIFORM_DRAWS):
            genotype = random_genotype(self.space, rng)
            if self.cells.key(genotype) not in taken:
                self._note(study, trial, PROPOSALS + draw)
                return {**params, **genotype_to_params(genotype, self.space)}
        self._note(study, trial, PROPOSALS + UNIFORM_DRAWS)
        return params  # (almost) every cell is evaluated: this one runs again

    def _proposal(self, study: Study, trial: FrozenTrial) -> dict[str, Any]:
        """One whole proposal of the inner sampler: its relative sample, the rest drawn alone."""
        space = self.inner.infer_relative_search_space(study, trial)
        params = dict(self.inner.sample_relative(study, trial, space))
        for name, distribution in self._full.items():
            if name not in params:
                params[name] = self.inner.sample_independent(study, trial, name, distribution)
        return params

    @staticmethod
    def _note(study: Study, trial: FrozenTrial, redrawn: int) -> None:
        if redrawn:
            study._storage.set_trial_system_attr(trial._trial_id, REDRAWN, redrawn)

    def sample_independent(self, study: Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return self.inner.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        self.inner.after_trial(study, trial, state, values)
