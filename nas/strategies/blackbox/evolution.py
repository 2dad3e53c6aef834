"""Regularized (aging) evolution as an Optuna sampler.

Real, Aggarwal, Huang, Le: "Regularized Evolution for Image Classifier Architecture Search",
AAAI 2019. The population is the ``population_size`` most recent COMPLETE trials of the study
(in trial-number order), so the oldest member leaves as each child joins. Each new trial
samples ``sample_size`` members at random, takes the best of them as the parent and applies
ONE mutation to the parent's parameters. Until the study holds ``population_size`` complete
trials, trials are sampled at random (the initial population).

The state lives in the study, not in the sampler: every call reads the study's trials, so the
sampler works with any storage (in memory, SQLite, a database server) and with several
workers searching one study.

>>> import optuna
>>> from nas.strategies.blackbox.sampling import suggest_genotype
>>> sampler = RegularizedEvolutionSampler(population_size=10, sample_size=3, seed=0)
>>> study = optuna.create_study(direction="maximize", sampler=sampler)
>>> study.optimize(lambda t: float(str(suggest_genotype(t, "nb201")).count("conv_3x3")), n_trials=30)
>>> study.best_value >= 3
True
"""
from __future__ import annotations

import random
from typing import Any, Callable, Sequence

from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState

from nas.errors import NasError
from nas.genotype import mutate
from nas.space import SearchSpace, load_space
from nas.strategies.blackbox.sampling import genotype_to_params, params_to_genotype

Params = dict[str, Any]
MutateParams = Callable[[Params, Sequence[FrozenTrial], random.Random], Params]


class RegularizedEvolutionSampler(BaseSampler):
    """Aging evolution over an Optuna study (single objective).

    population_size: P, the number of most recent complete trials that form the population
        (and the number of random trials before evolution starts).
    sample_size: S, the tournament size; the best of S random members is the parent.
    mutate: ``mutate(parent_params, population, rng) -> child_params``. The default changes
        one categorical parameter of the parent to another of its choices; pass
        :func:`genotype_mutation` to mutate at the genotype level instead (changes one op or
        one input of one edge, or one block or depth, as in the paper).
    seed: seeds the tournament, the mutation and the random initial population.
    """

    def __init__(self, *, population_size: int = 20, sample_size: int = 5, mutate: MutateParams | None = None,
                 seed: int | None = None) -> None:
        if population_size < 2:
            raise NasError(f"evolution needs a population of at least 2, got {population_size}")
        if not 1 <= sample_size <= population_size:
            raise NasError(f"evolution sample size must be between 1 and the population size "
                           f"({population_size}), got {sample_size}")
        self.population_size = population_size
        self.sample_size = sample_size
        self._mutate = mutate or mutate_one_param
        self._rng = random.Random(seed)
        self._random = RandomSampler(seed=seed)
        # trial number -> the child parameters planned for it (several workers may share a sampler)
        self._children: dict[int, Params] = {}

    def reseed_rng(self) -> None:
        self._rng = random.Random()
        self._random.reseed_rng()

    # -- Optuna's sampler interface -------------------------------------------------------------
    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        """The parameters every population member has: a child gets them jointly from its parent."""
        population = self._population(study)
        if len(population) < self.population_size:
            return {}
        shared = dict(population[0].distributions)
        for member in population[1:]:
            shared = {name: dist for name, dist in shared.items() if member.distributions.get(name) == dist}
        return {name: dist for name, dist in shared.items() if not dist.single()}

    def sample_relative(self, study: Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        child = self._child(study, trial)
        return {name: child[name] for name in search_space
                if name in child and _contains(search_space[name], child[name])}

    def sample_independent(self, study: Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        # parameters the parent did not have (a deeper stage after a depth mutation), or any
        # parameter while the initial population is still being sampled
        child = self._child(study, trial)
        if param_name in child and _contains(param_distribution, child[param_name]):
            return child[param_name]
        return self._random.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        self._children.pop(trial.number, None)

    def forget(self, number: int) -> None:
        """Plan trial ``number``'s child again (a new tournament and mutation)."""
        self._children.pop(number, None)

    # -- evolution ------------------------------------------------------------------------------
    def _population(self, study: Study) -> list[FrozenTrial]:
        if len(study.directions) != 1:
            raise NasError("evolution optimises one objective; use --strategy nsga2 for several")
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        return complete[-self.population_size:]

    def _child(self, study: Study, trial: FrozenTrial) -> Params:
        if trial.number in self._children:
            return self._children[trial.number]
        population = self._population(study)
        child: Params = {}
        if len(population) >= self.population_size and "fixed_params" not in trial.system_attrs:
            sample = self._rng.sample(population, self.sample_size)
            pick = max if study.direction == StudyDirection.MAXIMIZE else min
            parent = pick(sample, key=lambda t: t.value)
            child = self._mutate(dict(parent.params), population, self._rng)
        self._children[trial.number] = child
        return child


def mutate_one_param(params: Params, population: Sequence[FrozenTrial], rng: random.Random) -> Params:
    """Change one categorical parameter (one that has another choice) to a different value."""
    distributions: dict[str, BaseDistribution] = {}
    for member in population:
        distributions.update(member.distributions)
    names = sorted(name for name in params if isinstance(distributions.get(name), CategoricalDistribution)
                   and len(distributions[name].choices) > 1)
    if not names:
        return dict(params)
    name = rng.choice(names)
    others = [c for c in distributions[name].choices if c != params[name]]
    return {**params, name: rng.choice(others)}


def genotype_mutation(space: SearchSpace | str) -> MutateParams:
    """A ``mutate`` for :class:`RegularizedEvolutionSampler` that applies
    :func:`nas.genotype.mutate` (one op, one edge input, one block or one depth) to the
    genotype the parameters describe; the child stays inside ``space``."""
    return GenotypeMutation(load_space(space))


class GenotypeMutation:
    """:func:`genotype_mutation` as an object ``pickle`` can store (Ray Tune pickles its searcher)."""

    def __init__(self, space: SearchSpace) -> None:
        self.space = space

    def __call__(self, params: Params, population: Sequence[FrozenTrial], rng: random.Random) -> Params:
        parent = params_to_genotype(params, self.space)
        child = mutate(parent, self.space, rng)
        # a mutation may pick a choice that makes no difference (a single-input node): retry
        for _ in range(10):
            if child != parent:
                break
            child = mutate(parent, self.space, rng)
        return genotype_to_params(child, self.space)


def _contains(distribution: BaseDistribution, value: Any) -> bool:
    """Whether ``value`` is one of the choices (every parameter of a genotype is categorical)."""
    return isinstance(distribution, CategoricalDistribution) and value in distribution.choices
