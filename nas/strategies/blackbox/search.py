"""A black-box search from its settings: resume, backend and the checks that span both backends.

:func:`search` hands the search to :func:`~nas.strategies.blackbox.optuna_search.search_blackbox`
(backend ``optuna``) or :func:`~nas.strategies.blackbox.ray_tune.search_ray` (backend ``ray``);
a resumed run keeps the strategy, backend, space and evaluator it was started with.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from nas.config import check
from nas.errors import NasError
from nas.evaluators import Evaluator, evaluator_from_config
from nas.run import Run
from nas.space import SearchSpace, load_space
from nas.strategies.blackbox.optuna_search import (
    check_budget,
    check_pruner,
    load_space_definition,
    make_sampler,
    parse_objectives,
    search_blackbox,
)
from nas.strategies.blackbox.settings import (
    BUDGET_TRIALS,
    DEFAULT_POPULATION,
    DEFAULT_TRIALS,
    WARM_TOP,
    BlackboxSettings,
)
from nas.strategies.blackbox.warm import WarmStart, proxy_scorer, warm_start


def search(strategy: str, space: SearchSpace | str | None, settings: BlackboxSettings, *,
           evaluator: Evaluator | None = None, out: str | Path | None = None, resume: str | Path | None = None,
           seed: int = 0, progress: bool = True) -> Any:
    """Search ``space`` with the black-box ``strategy`` (random, tpe, evolution, nsga2).

    resume: a run folder to continue; its ``config.json`` gives the strategy, backend, space
        and (unless ``evaluator`` is given) the evaluator; ``settings.trials`` is then the new
        total (``None``: the run's own).
    """
    settings = check(settings)
    backend = settings.backend
    trials = settings.trials
    if resume is not None:
        config = Run.open(resume).config
        if "evaluator" not in config:
            raise NasError(f"{resume} is not a black-box search run (its config names no evaluator)")
        strategy, backend = config["strategy"], config.get("backend", "optuna")
        space = load_space_definition(config)
        evaluator = evaluator or evaluator_from_config(config["evaluator"])
        trials = trials if trials is not None else int(config.get("trials") or DEFAULT_TRIALS)
    if evaluator is None:
        raise NasError("a black-box search scores genotypes with an evaluator; pass one "
                       "(nas.evaluators.evaluator_from_config({'name': 'train', ...}))")
    if trials is None:  # with an epoch budget, the budget ends the search
        trials = BUDGET_TRIALS if settings.budget_epochs is not None else DEFAULT_TRIALS
    objectives = list(settings.objectives) if settings.objectives else None
    if backend != "ray":  # a Ray search refuses --pruner below: it has --scheduler
        check_pruner(settings.pruner, evaluator)
    if backend == "ray" and resume is None and settings.scheduler not in ("auto", "none") \
            and not (objectives and len(objectives) > 1):
        check_pruner(settings.scheduler, evaluator, "--scheduler")  # before a warm start takes its time
    check_budget(settings.budget_epochs, evaluator)
    distinct = "off" if backend == "ray" and settings.ray_search == "basic" else settings.distinct
    sampler = {"population": settings.population, "sample_size": settings.sample_size, "distinct": distinct}
    given = [name for name, on in (("keep-ray", settings.keep_ray), ("no-ray-job", not settings.ray_job),
                                   ("reuse-actors", settings.reuse_actors)) if on]
    if backend != "ray" and given:
        raise NasError(f"--{given[0]} belongs to --backend ray; add --backend ray or drop it")
    if backend == "ray":
        if settings.pruner != "none":
            raise NasError("--pruner belongs to --backend optuna; with --backend ray use --scheduler asha|hyperband")
        if settings.budget_epochs is not None:
            raise NasError("--budget-epochs belongs to --backend optuna; with --backend ray set --trials")
        if settings.storage or settings.study_name:
            raise NasError("--storage and --study-name belong to --backend optuna; a Ray Tune search keeps its "
                           "trials in <run>/tune-trials.jsonl (resume it with --resume RUN)")
        try:
            from nas.strategies.blackbox.ray_tune import search_ray
        except ImportError as exc:
            raise NasError(f"the Ray backend is not available ({exc}); install ray[tune] or use --backend optuna") \
                from None
        enqueue, warm = _warm_start(strategy, space, evaluator, settings, sampler, trials=trials, seed=seed,
                                    resume=resume, progress=progress)
        return search_ray(space, evaluator, strategy=strategy, trials=trials, out=out, resume=resume, seed=seed,
                          address=settings.ray_address, cpus_per_trial=settings.cpus_per_trial,
                          gpus_per_trial=settings.gpus_per_trial, max_concurrent=settings.max_concurrent,
                          scheduler=settings.scheduler, grace_period=settings.grace_period,
                          reduction_factor=settings.reduction_factor, objectives=objectives,
                          ray_search=settings.ray_search, enqueue=enqueue, **sampler,
                          warm=warm.record() if warm else None,
                          dashboard_host=settings.dashboard_host, dashboard_port=settings.dashboard_port,
                          job=settings.ray_job, keep_ray=settings.keep_ray, reuse_actors=settings.reuse_actors,
                          progress=progress)
    enqueue, warm = _warm_start(strategy, space, evaluator, settings, sampler, trials=trials, seed=seed, resume=resume,
                                progress=progress)
    return search_blackbox(space, evaluator, strategy=strategy, trials=trials, out=out, resume=resume, seed=seed,
                           storage=settings.storage, study_name=settings.study_name, objectives=objectives,
                           enqueue=enqueue, pruner=settings.pruner, progress=progress,
                           budget_epochs=settings.budget_epochs, warm=warm.record() if warm else None, **sampler)


def _warm_start(strategy: str, space: SearchSpace | str | None, evaluator: Evaluator, settings: BlackboxSettings,
                sampler: dict[str, Any], *, trials: int, seed: int, resume: str | Path | None,
                progress: bool) -> tuple[list[Any], WarmStart | None]:
    """The genotypes to evaluate first (``--enqueue``, then a new search's warm start) and the
    warm start; local search then climbs from the last of them (``sampler["start"]``)."""
    enqueue: list[Any] = list(settings.enqueue)
    if settings.warm_start is None or resume is not None:
        return enqueue, None
    space = load_space(space)
    # what the search would refuse, refused before the ranking takes its time
    multi = len(parse_objectives(settings.objectives, evaluator)) > 1 or strategy == "nsga2"
    make_sampler(strategy, space, population=settings.population, sample_size=settings.sample_size,
                 multi_objective=multi, distinct=sampler["distinct"])
    population = settings.population or DEFAULT_POPULATION
    top = settings.warm_top or (population if strategy == "evolution" else WARM_TOP)
    score = proxy_scorer(settings.warm_start, evaluator, space, data=settings.warm_data)
    warm = warm_start(space, score, proxy=settings.warm_start, sample=settings.warm_sample, top=top, seed=seed,
                      distinct=sampler["distinct"])
    enqueue += warm.genotypes
    if strategy == "local":
        sampler["start"] = len(enqueue)
    if progress:
        print(warm.line(trials), flush=True)
    return enqueue, warm
