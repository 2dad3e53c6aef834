"""Samplers whose every suggestion is a function of (seed, the study's history, the trial's index).

A sampler seeded once draws from one random stream: the n-th trial's suggestion depends on how
many suggestions this sampler object made before, so a resumed run (a new process, a new
sampler) or a second worker draws other genotypes than one uninterrupted process would.
:class:`TrialSeededSampler` gives each trial a sampler of its own, seeded from the search's seed
and the trial's *evaluation index*: its number, less the earlier trials that ended without an
evaluation (interrupted by Ctrl-C, or failed by a stale heartbeat). Every strategy reads only
finished trials, so a trial re-run after a kill (under its own number, see
:func:`nas.strategies.blackbox.optuna_search.requeue_interrupted_trials`) or the next trial after an
interrupted one gets exactly the suggestion an uninterrupted search made there.

>>> import optuna
>>> sampler = TrialSeededSampler(lambda seed: optuna.samplers.RandomSampler(seed=seed), seed=0)
>>> study = optuna.create_study(sampler=sampler)
>>> first = study.ask().suggest_int("x", 0, 10**9)
>>> again = optuna.create_study(sampler=TrialSeededSampler(lambda seed: optuna.samplers.RandomSampler(seed=seed), 0))
>>> again.ask().suggest_int("x", 0, 10**9) == first
True
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState


def trial_seed(seed: int, index: int) -> int:
    """The seed of the trial with evaluation index ``index`` in a search seeded with ``seed``."""
    return int(np.random.SeedSequence([seed % 2**32, index]).generate_state(1)[0])


def not_evaluated(trial: FrozenTrial) -> bool:
    """A trial that ended without an evaluation: failed, but not by the evaluator (interrupted,
    or failed by another worker because its heartbeat stopped)."""
    return trial.state == TrialState.FAIL and ("fail_reason" not in trial.user_attrs
                                               or bool(trial.user_attrs.get("interrupted")))


def evaluation_index(study: Study, trial: FrozenTrial) -> int:
    """``trial.number`` less the earlier trials that ended without an evaluation."""
    trials = study._storage.get_all_trials(study._study_id, deepcopy=False)  # all of them, even in a pruner's bracket
    return trial.number - sum(1 for t in trials if t.number < trial.number and not_evaluated(t))


class TrialSeededSampler(BaseSampler):
    """A sampler per trial, made by ``make(seed)`` with the trial's own seed (:func:`trial_seed`).

    make: builds the underlying sampler (Optuna's ``RandomSampler``, ``TPESampler``,
        ``NSGAIISampler``, :class:`~nas.strategies.blackbox.evolution.RegularizedEvolutionSampler`);
        it must keep no state between trials beyond what the study stores, which holds for all of
        these. Picklable when ``make`` is (Ray Tune stores its searcher with ``pickle``).
    seed: the search's seed; ``None`` draws fresh seeds (not reproducible).
    """

    def __init__(self, make: Callable[[int | None], BaseSampler], seed: int | None) -> None:
        self._make = make
        self._seed = seed
        self._samplers: dict[int, BaseSampler] = {}  # trial number -> its sampler, while it runs
        self._relative: dict[int, dict[str, Any]] = {}  # trial number -> its relative sample, once replayed

    def __getstate__(self) -> dict[str, Any]:
        # the per-trial samplers are rebuilt on demand, with the same seeds
        return {"_make": self._make, "_seed": self._seed, "_samplers": {}, "_relative": {}}

    def sampler_for(self, study: Study, trial: FrozenTrial) -> BaseSampler:
        sampler = self._samplers.get(trial.number)
        if sampler is None:
            seed = None if self._seed is None else trial_seed(self._seed, evaluation_index(study, trial))
            sampler = self._samplers[trial.number] = self._make(seed)
        return sampler

    def _replay(self, sampler: BaseSampler, study: Study, trial: FrozenTrial) -> None:
        """A trial re-run after a kill in the middle of its suggestions keeps the decisions it had
        stored. Make the draws of the first run again, in its order (the relative sample, then each
        stored decision drawn alone, values discarded), so that the sampler's random stream stands
        where the first run's stood for the decisions still to come."""
        space = sampler.infer_relative_search_space(study, trial)
        relative = self._relative[trial.number] = sampler.sample_relative(study, trial, space)
        for name, distribution in trial.distributions.items():
            if name not in relative:
                sampler.sample_independent(study, trial, name, distribution)

    def reseed_rng(self) -> None:
        """Nothing to do: every trial's sampler has its own seed already."""

    def redraw(self, study: Study, trial: FrozenTrial) -> None:
        """Let the trial's sampler propose again (the next draws of its random stream); a sampler
        that plans a trial's proposal once (evolution's child) forgets that plan."""
        forget = getattr(self.sampler_for(study, trial), "forget", None)
        if forget is not None:
            forget(trial.number)

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        sampler = self.sampler_for(study, trial)
        sampler.before_trial(study, trial)
        if trial.params and not trial.system_attrs.get("fixed_params"):
            self._replay(sampler, study, trial)

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return self.sampler_for(study, trial).infer_relative_search_space(study, trial)

    def sample_relative(self, study: Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        if trial.number in self._relative:
            return self._relative[trial.number]
        return self.sampler_for(study, trial).sample_relative(study, trial, search_space)

    def sample_independent(self, study: Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return self.sampler_for(study, trial).sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        try:
            self.sampler_for(study, trial).after_trial(study, trial, state, values)
        finally:
            self._samplers.pop(trial.number, None)
            self._relative.pop(trial.number, None)
