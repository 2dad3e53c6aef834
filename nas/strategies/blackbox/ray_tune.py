"""Black-box search as Ray Tune trials: parallel or distributed, with early stopping.

The strategies of :mod:`nas.strategies.blackbox.optuna_search` (random, TPE, regularized
evolution, NSGA-II) run through ``ray.tune.search.optuna.OptunaSearch``: a define-by-run
function samples each trial's genotype with the shared
:func:`~nas.strategies.blackbox.sampling.suggest_genotype`. ``ray_search="basic"`` instead
draws random genotypes with Tune's own ``BasicVariantGenerator`` over one ``tune.choice`` per
decision. Each trial is one ``evaluator.evaluate``; its per-epoch reports go to Tune (with a
checkpoint) so that ASHA, or asynchronous Hyperband, stops poor trials early.

The run folder holds ``config.json``, ``versions.json``, the Tune experiment under ``tune/``
(one ``trial_<id>/`` per trial with Tune's ``result.json``, ``progress.csv``, TensorBoard
events, checkpoints, and the evaluator's own folder ``train/``), and at the end
``genotype.json`` + ``best.json`` (best trial), ``trials.csv``, ``metrics.jsonl`` (one record per
trial), ``history.png`` (best so far) and, for several objectives, ``pareto.json`` +
``pareto/`` + ``pareto.png``.

>>> from nas.evaluators import evaluator_from_config
>>> table = evaluator_from_config({"name": "nb201"})  # doctest: +SKIP
>>> result = search_ray("nb201", table, strategy="tpe", trials=50)  # doctest: +SKIP
>>> result.genotype, result.trials.head()  # doctest: +SKIP
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import optuna
import pandas as pd

from nas.config import check_value
from nas.errors import NasError, TrialDiverged
from nas.evaluators.base import Evaluator
from nas.genotype import Genotype, resolve_genotype
from nas.run import Run
from nas.space import SearchSpace, load_space
from nas.strategies.blackbox.evolution import GenotypeMutation  # noqa: F401  (experiments pickled it from here)
from nas.strategies.blackbox.optuna_search import (
    STRATEGIES,
    load_space_definition,
    make_sampler,
    objective_directions,
    parse_objectives,
)
from nas.strategies.blackbox.ray_cluster import RayConnection, connect_ray
from nas.strategies.blackbox.results import (
    TrialRecord,
    plain,
    print_best,
    table_rows,
    write_results,
)
from nas.strategies.blackbox.sampling import (
    genotype_to_params,
    param_choices,
    params_to_genotype,
    short_form,
    suggest_genotype,
)
from nas.strategies.blackbox.settings import BlackboxSettings

EXPERIMENT = "tune"  # the Tune experiment's folder inside the run folder
HYPERBAND_BRACKETS = 3
# keys Tune adds to every result; trials.csv keeps the evaluator's metrics only
_TUNE_KEYS = {"timestamp", "done", "training_iteration", "time_this_iter_s", "time_total_s", "pid", "hostname",
              "node_ip", "time_since_restore", "iterations_since_restore", "date", "checkpoint_dir_name",
              "should_checkpoint", "config", "trial_id", "experiment_tag", "completed"}


@dataclass
class RaySearchResult:
    """What a Ray Tune search found.

    path: the run folder.
    genotype: the best genotype among trials that ran to the end (several objectives: the
        Pareto member best in the first objective); ``None`` when no trial finished.
    metrics: that trial's final metrics.
    pareto: the Pareto set of finished trials (one objective: just the best), as
        (genotype, metrics) pairs.
    trials: one row per trial (also written to ``trials.csv``): trial number and id, status
        (``complete``, ``stopped`` early by the scheduler, ``error``), last epoch, metrics,
        genotype, error.
    connection: how the search reached Ray and its dashboard.
    """

    path: Path
    genotype: Genotype | None
    metrics: dict[str, Any] = field(default_factory=dict)
    pareto: list[tuple[Genotype, dict[str, Any]]] = field(default_factory=list)
    trials: pd.DataFrame | None = None
    connection: RayConnection | None = None


# -- pieces Ray pickles: module-level so that a restored experiment finds them again --------------
class GenotypeSpace:
    """The define-by-run search space handed to ``OptunaSearch``: one genotype per trial.

    Ray saves its searcher with ``pickle``, so this is a class rather than a closure.
    """

    def __init__(self, space: SearchSpace) -> None:
        self.space = space

    def __call__(self, trial: Any) -> None:
        suggest_genotype(trial, self.space)  # the suggestions become the trial's config


def trial_dirname(trial: Any) -> str:
    """Tune trial folder name: short and stable, so a trial can find its own folder."""
    return f"trial_{trial.trial_id}"


def nas_trial(config: dict[str, Any], *, evaluator: Evaluator, space: SearchSpace, objectives: list[str],
              run_path: str) -> None:
    """One Tune trial: evaluate the genotype that ``config`` describes, reporting every epoch.

    Each per-epoch report carries ``epoch`` (the scheduler's clock) and a checkpoint that
    records the epoch; a trial restarted from its checkpoint (after a resume) skips the epochs
    it already reported. The evaluator's folder is ``tune/trial_<id>/train`` in the run folder
    (``train-2``, ``train-3``, ... for a restarted trial: evaluators start from scratch in a
    new folder). A NaN or infinite objective raises
    :class:`~nas.errors.TrialDiverged`. The last report holds the evaluator's
    final metrics and ``completed = 1``.
    """
    from ray import tune

    genotype = params_to_genotype(config, space)
    trial_dir = Path(run_path) / EXPERIMENT / f"trial_{tune.get_context().get_trial_id()}"
    checkpoint = tune.get_checkpoint()
    reported_epoch = _checkpoint_epoch(checkpoint) if checkpoint is not None else None
    last_epoch: list[int] = []

    def report(epoch: int, metrics: dict[str, float]) -> None:
        _check_finite(metrics, objectives, f"at epoch {epoch}")
        last_epoch[:] = [epoch]
        if reported_epoch is not None and epoch <= reported_epoch:
            return  # reported before this trial was restarted
        values = {**plain(metrics), "epoch": epoch}
        with tempfile.TemporaryDirectory() as staging:
            Path(staging, "progress.json").write_text(json.dumps({"epoch": epoch, "metrics": values,
                                                                  "genotype": genotype.to_dict()}))
            tune.report(values, checkpoint=tune.Checkpoint.from_directory(staging))

    workdir = trial_dir / "train"
    attempt = 1
    while workdir.exists():
        attempt += 1
        workdir = trial_dir / f"train-{attempt}"
    metrics = evaluator.evaluate(genotype, report=report, workdir=workdir)
    missing = [name for name in objectives if name not in metrics]
    if missing:
        raise NasError(f"objective {missing[0]!r} is not among the evaluator's metrics "
                       f"({', '.join(sorted(metrics))}); choose --objectives from those")
    _check_finite(metrics, objectives, "at the end")
    final = {**plain(metrics), "completed": 1}
    if last_epoch and "epoch" not in final:
        final["epoch"] = last_epoch[0]
    tune.report(final)


def _checkpoint_epoch(checkpoint: Any) -> int | None:
    with checkpoint.as_directory() as folder:
        progress = Path(folder, "progress.json")
        return json.loads(progress.read_text())["epoch"] if progress.is_file() else None


def _check_finite(metrics: dict[str, Any], objectives: Sequence[str], when: str) -> None:
    for name in objectives:
        value = metrics.get(name)
        if isinstance(value, (int, float)) and not math.isfinite(value):
            raise TrialDiverged(f"{name} is {value} {when}: training diverged")


# -- the search ------------------------------------------------------------------------------------
def search_ray(space: SearchSpace | str, evaluator: Evaluator, *, strategy: str, trials: int,
               out: str | Path | None = None, resume: str | Path | None = None, seed: int = 0,
               address: str | None = None, cpus_per_trial: float = 1, gpus_per_trial: float | None = None,
               max_concurrent: int | None = None, scheduler: str = "asha", grace_period: int = 1,
               reduction_factor: float = 2, objectives: str | Sequence[str] | None = None,
               ray_search: str = "optuna", population: int | None = None, sample_size: int | None = None,
               enqueue: Iterable[str | Genotype] = (), max_epochs: int | None = None,
               dashboard_host: str = "127.0.0.1", dashboard_port: int | None = None,
               progress: bool = True) -> RaySearchResult:
    """Search ``space`` with ``trials`` Ray Tune trials, each one ``evaluator.evaluate``.

    strategy: ``random``, ``tpe``, ``evolution`` or ``nsga2`` (an Optuna sampler inside
        ``OptunaSearch``); with ``ray_search="basic"`` only ``random``, drawn by Tune's
        ``BasicVariantGenerator`` from ``tune.choice`` per decision.
    resume: run folder of a stopped search: finished trials are kept, unfinished ones restart
        from their last checkpoint, errored ones stay errored; settings come from its config.
    address: Ray cluster to attach to (default ``$RAY_ADDRESS``; none: start a local Ray, with
        its dashboard on ``dashboard_host``:``dashboard_port`` behind token authentication).
    cpus_per_trial, gpus_per_trial: resources of one trial (fractions allowed); GPUs default
        to 1 per trial when the cluster has GPUs, else 0.
    max_concurrent: at most this many trials at once (default: as many as resources allow).
    scheduler: ``asha`` (default), ``hyperband`` (asynchronous Hyperband: ASHA with
        several brackets, which never pauses trials) or ``none``; it compares the first
        objective at epochs ``grace_period``, ``grace_period * reduction_factor``, ... below
        the last epoch. With several objectives there is no scheduler: stopping by one
        objective would cut small models that belong to the Pareto front.
    objectives: metric names (``"val_acc,params"``); several make a multi-objective search.
    population, sample_size: evolution's P and S, NSGA-II's population.
    enqueue: reference names, genotype files or genotypes evaluated first.
    max_epochs: epochs a trial trains (default: the evaluator's ``epochs``); places the
        scheduler's rungs.
    """
    space = load_space(space)
    _check_options(trials=trials, cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial,
                   max_concurrent=max_concurrent, scheduler=scheduler, grace_period=grace_period,
                   reduction_factor=reduction_factor, ray_search=ray_search, strategy=strategy)
    run: Run | None = None
    if resume is not None:
        run = Run.open(resume)
        config = run.config
        if config.get("backend") != "ray":
            raise NasError(f"run {run.path} is not a Ray Tune search; resume it without --backend ray")
        from ray import tune

        if not tune.Tuner.can_restore(str((run.path / EXPERIMENT).resolve())):
            raise NasError(f"run {run.path} holds no Tune experiment state to resume (no {EXPERIMENT}/ folder "
                           "with experiment_state-*.json); start a new search")
        if trials != config["trials"]:
            raise NasError(f"a resumed Ray Tune search finishes its own {config['trials']} trials (Tune cannot add "
                           f"more); drop --trials, or start a new search for {trials}")
        space = load_space_definition(config)
        enqueued: list[dict[str, Any]] = []
    else:
        objective_names = parse_objectives(objectives, evaluator)
        if strategy == "nsga2" and len(objective_names) == 1 and "params" in getattr(evaluator, "provides", ()):
            objective_names.append("params")  # NSGA-II is a multi-objective method
        multi = len(objective_names) > 1
        if multi and strategy == "evolution":
            raise NasError("evolution optimises one objective; use --strategy nsga2 (or random/tpe) "
                           "for several objectives")
        config = {"backend": "ray", "strategy": strategy, "ray_search": ray_search, "space": space.name,
                  "space_definition": space.to_dict(),
                  "evaluator": {"class": f"{type(evaluator).__module__}.{type(evaluator).__name__}",
                                **evaluator.config()},
                  "objectives": objective_names, "directions": objective_directions(objective_names, evaluator),
                  "trials": trials, "seed": seed,
                  "scheduler": "none" if multi else scheduler, "grace_period": grace_period,
                  "reduction_factor": reduction_factor,
                  "max_epochs": max_epochs or getattr(evaluator, "epochs", None),
                  "cpus_per_trial": cpus_per_trial, "gpus_per_trial": gpus_per_trial,
                  "max_concurrent": max_concurrent, "sampler": {"population": population, "sample_size": sample_size},
                  "enqueue": [g if isinstance(g, str) else short_form(g) for g in enqueue]}
        enqueued = [genotype_to_params(g if isinstance(g, Genotype) else resolve_genotype(str(g)), space)
                    for g in enqueue]

    _quiet_tune()
    # trials' own output stays in Ray's logs (the dashboard shows it): parallel trials would interleave
    connection = connect_ray(address, dashboard_host=dashboard_host, dashboard_port=dashboard_port,
                             log_to_driver=False)
    try:
        import ray
        from ray import tune

        gpus = config["gpus_per_trial"]
        if gpus is None:
            gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
        _check_cluster_fits(config["cpus_per_trial"], gpus)
        if run is None:  # created only now, so that a refused setting leaves no folder behind
            run = Run.create(f"ray-{strategy}", config, out=out, name=space.name)
        if progress:
            print(connection.instructions(), flush=True)
        trainable = tune.with_resources(
            tune.with_parameters(nas_trial, evaluator=evaluator, space=space, objectives=list(config["objectives"]),
                                 run_path=str(run.path.resolve())),
            {"cpu": config["cpus_per_trial"], "gpu": gpus})
        if resume is not None:
            tuner = tune.Tuner.restore(str((run.path / EXPERIMENT).resolve()), trainable, resume_unfinished=True,
                                       resume_errored=False, restart_errored=False)
            if progress:
                print(f"resuming {run.path}: finished and errored trials are kept, unfinished ones continue",
                      flush=True)
        else:
            tuner = _new_tuner(trainable, run, space, config, enqueued, progress=progress)
            if progress:
                goals = ", ".join(f"{d} {o}" for o, d in zip(config["objectives"], config["directions"]))
                print(f"run folder {run.path}; {strategy} on {space.name} as Ray Tune trials: {goals}; "
                      f"scheduler {config['scheduler']}; {config['cpus_per_trial']:g} CPU + {gpus:g} GPU per trial",
                      flush=True)
        grid = tuner.fit()
        result = write_outputs(run, grid, space, config)
        result.connection = connection
    finally:
        if run is not None:
            run.close()
        if connection.started_here:
            import ray

            ray.shutdown()
    if progress:
        _print_summary(result, config)
    return result


def _check_options(*, trials: int, strategy: str, ray_search: str, **settings: Any) -> None:
    """The Ray options by :class:`BlackboxSettings`' own ranges and choices, then what only Ray asks."""
    if trials < 1:
        raise NasError(f"--trials must be at least 1 for a Ray Tune search, got {trials}")
    if strategy not in STRATEGIES:
        raise NasError(f"unknown black-box strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    for name, value in {"ray_search": ray_search, **settings}.items():
        try:
            check_value(BlackboxSettings, name, value)
        except NasError as exc:
            raise NasError(f"--{name.replace('_', '-')}: {exc}") from None
    if ray_search == "basic" and strategy != "random":
        raise NasError(f"--ray-search basic draws random genotypes only; use --strategy random, or "
                       f"--ray-search optuna for {strategy}")


def _check_cluster_fits(cpus: float, gpus: float) -> None:
    import ray

    total = ray.cluster_resources()
    for name, want in (("CPU", cpus), ("GPU", gpus)):
        have = total.get(name, 0)
        if want > have:
            raise NasError(f"a trial asks for {want:g} {name}(s) but the Ray cluster has {have:g}; lower "
                           f"--{name.lower()}s-per-trial or add nodes")


def _quiet_tune() -> None:
    """Settings for the Tune driver and, through it, the trials (set unless the user set them)."""
    # trials keep the launch folder as working directory, so relative data paths still work
    os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")
    # a checkpoint per epoch triggers a warning about frequent experiment snapshots; they are small
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")


def _new_tuner(trainable: Any, run: Run, space: SearchSpace, config: dict[str, Any],
               enqueued: list[dict[str, Any]], *, progress: bool) -> Any:
    from ray import tune
    from ray.tune.search.basic_variant import BasicVariantGenerator

    objectives = list(config["objectives"])
    modes = ["max" if d == "maximize" else "min" for d in config["directions"]]
    multi = len(objectives) > 1
    param_space: dict[str, Any] = {}
    if config["ray_search"] == "basic":
        search_alg: Any = BasicVariantGenerator(points_to_evaluate=enqueued or None, random_state=config["seed"])
        param_space = {name: tune.choice(list(choices)) for name, choices in param_choices(space).items()}
    else:
        from ray.tune.search.optuna import OptunaSearch

        # per-trial seeds (seed, trial index): a restored searcher continues as an uninterrupted one
        sampler = make_sampler(config["strategy"], space, seed=config["seed"], multi_objective=multi,
                               population=config["sampler"]["population"],
                               sample_size=config["sampler"]["sample_size"])
        previous = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # not the note that a study was created
        try:
            search_alg = OptunaSearch(GenotypeSpace(space), metric=objectives if multi else objectives[0],
                                      mode=modes if multi else modes[0], sampler=sampler,
                                      points_to_evaluate=enqueued or None)
        finally:
            optuna.logging.set_verbosity(previous)
    tune_config = tune.TuneConfig(search_alg=search_alg, scheduler=_make_scheduler(config, objectives[0], modes[0]),
                                  num_samples=config["trials"], max_concurrent_trials=config["max_concurrent"],
                                  trial_dirname_creator=trial_dirname,
                                  # a worker process per trial would import torch and nas every time
                                  reuse_actors=True)
    from nas.strategies.blackbox.ray_progress import TrialLines

    run_config = tune.RunConfig(
        storage_path=str(run.path.resolve()), name=EXPERIMENT,
        failure_config=tune.FailureConfig(max_failures=0, fail_fast=False),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        callbacks=[TrialLines(space, objectives)] if progress else None, verbose=0)
    return tune.Tuner(trainable, param_space=param_space, tune_config=tune_config, run_config=run_config)


def _make_scheduler(config: dict[str, Any], metric: str, mode: str) -> Any:
    """ASHA / asynchronous Hyperband on the per-epoch ``epoch`` clock, or None (FIFO).

    Rungs lie strictly below the last epoch (stopping a trial after its last epoch saves
    nothing and would lose its final report), and trials are never stopped for reaching the
    end, so every surviving trial delivers its final metrics.
    """
    if config["scheduler"] == "none":
        return None
    from ray.tune.schedulers import AsyncHyperBandScheduler

    grace = int(config["grace_period"])
    epochs = config.get("max_epochs")
    max_t = max(grace, int(epochs) - 1) if epochs else 100
    brackets = HYPERBAND_BRACKETS if config["scheduler"] == "hyperband" else 1
    return AsyncHyperBandScheduler(time_attr="epoch", metric=metric, mode=mode, max_t=max_t, grace_period=grace,
                                   reduction_factor=config["reduction_factor"], brackets=brackets,
                                   stop_last_trials=False)


# -- results ---------------------------------------------------------------------------------------
def trial_records(grid: Any, space: SearchSpace) -> list[TrialRecord]:
    """One record per trial of a Tune ``ResultGrid``, numbered in the order Tune created them."""
    records = []
    for number, result in enumerate(grid):
        metrics = final_metrics(result)
        trial_id = (result.metrics or {}).get("trial_id") or Path(result.path).name.removeprefix("trial_")
        try:
            genotype: Genotype | None = params_to_genotype(result.config or {}, space)
        except NasError:  # a trial that failed before Tune recorded its config
            genotype = None
        if result.error is not None:
            status = "error"
        elif (result.metrics or {}).get("completed"):
            status = "complete"
        else:
            status = "stopped"
        columns = {"trial_id": trial_id, "epoch": metrics.get("epoch"),
                   "seconds": (result.metrics or {}).get("time_total_s"),
                   "error": _error_line(result.error) if result.error is not None else "", "path": str(result.path)}
        records.append(TrialRecord(number, status, genotype, metrics, columns, {"trial_id": trial_id}))
    return records


def _error_line(error: BaseException) -> str:
    """The trial's own exception, not Ray's wrapper around it."""
    cause = getattr(error, "cause", None) or error
    text = f"{type(cause).__name__}: {cause}"
    lines = [line for line in text.splitlines() if line.strip()]
    for line in reversed(lines):  # Ray's traceback text ends with the original exception
        if not line.startswith((" ", "\t")) and ":" in line:
            return line[:500]
    return lines[0][:500] if lines else type(cause).__name__


def write_outputs(run: Run, grid: Any, space: SearchSpace, config: dict[str, Any]) -> RaySearchResult:
    """Write trials.csv, metrics.jsonl, genotype.json/best.json, the Pareto set and plots."""
    objectives = list(config["objectives"])
    records = trial_records(grid, space)
    outcome = write_results(run, records, objectives, config["directions"])
    rows = table_rows(records, objectives)
    logged = [{k: v for k, v in row.items() if k not in ("genotype_json", "path") and v not in (None, "")}
              for row in rows]
    run.write_records("metrics.jsonl", logged)  # rewritten whole, atomically: every trial once
    writer = run.tensorboard()
    for row in logged:
        for key, value in row.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "trial":
                writer.add_scalar(key, value, int(row["trial"]))
    writer.flush()
    return RaySearchResult(run.path, outcome.genotype, outcome.metrics, outcome.pareto, trials=pd.DataFrame(rows))


def final_metrics(result: Any) -> dict[str, Any]:
    """The evaluator's metrics in a trial's last report, without Tune's bookkeeping."""
    return {k: v for k, v in (result.metrics or {}).items() if k not in _TUNE_KEYS}


def _print_summary(result: RaySearchResult, config: dict[str, Any]) -> None:
    table = result.trials
    if table is None or table.empty:
        print("no trial ran")
        return
    counts = table["status"].value_counts()
    print(f"{len(table)} trials: " + ", ".join(f"{counts.get(s, 0)} {s}" for s in ("complete", "stopped", "error")))
    for _, row in table[table["status"] == "error"].iterrows():
        print(f"  trial {int(row['trial'])} errored: {row['error']}")
    if result.genotype is None:
        print(f"no trial ran to the end; see {result.path}/trials.csv")
        return
    print_best(result.path, result.genotype, result.metrics, result.pareto, config["objectives"])
    print(f"Tune logs: tensorboard --logdir {result.path}/{EXPERIMENT}")
