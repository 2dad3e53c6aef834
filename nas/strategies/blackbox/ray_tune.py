"""Black-box search as Ray Tune trials: parallel or distributed, with early stopping.

The strategies of :mod:`nas.strategies.blackbox.optuna_search` (random, TPE, regularized
evolution, NSGA-II) run through ``ray.tune.search.optuna.OptunaSearch``: a define-by-run
function samples each trial's genotype with the shared
:func:`~nas.strategies.blackbox.sampling.suggest_genotype`. ``ray_search="basic"`` instead
draws random genotypes with Tune's own variant generator over one ``tune.choice`` per
decision. Each trial is one ``evaluator.evaluate``; its per-epoch reports go to Tune so that
ASHA, or asynchronous Hyperband, stops poor trials early.

The run folder holds ``config.json``, ``versions.json``, the trial log ``tune-trials.jsonl``
(a line when a trial starts and one when it ends: plain JSON, what a resume reads), the Tune
experiment under ``tune/`` (one ``trial_NNNN/`` per trial with Tune's ``result.json`` and
``progress.csv``; each resume adds an experiment of its own, ``tune-2/``, ``tune-3/``, ...),
each trial's own folder ``trials/NNNN/`` (the evaluator's), ``tensorboard/`` (a run per trial
and one of the search), and at the end
``genotype.json`` + ``best.json`` (best trial), ``trials.csv``, ``metrics.jsonl`` (one record per
trial), ``history.png`` (best so far) and, for several objectives, ``pareto.json`` +
``pareto/`` + ``pareto.png``.

A resume never restores Tune's own experiment state (``Tuner.restore`` unpickles the
experiment's files, and a run folder may come from anyone): it reads the trial log, gives the
finished trials to a new searcher as already evaluated (the Optuna study is rebuilt trial by
trial with the run's seeded sampler, the unfinished trials left running in it; ASHA's rungs
are refilled from the finished trials' curves), and starts a new Tune experiment that runs the
unfinished trials again, under their own numbers and in their own folders (continuing there
when the evaluator can, see :meth:`~nas.evaluators.base.Evaluator.can_continue`), and then
the remaining ones.

>>> from nas.evaluators import evaluator_from_config
>>> table = evaluator_from_config({"name": "nb201"})  # doctest: +SKIP
>>> result = search_ray("nb201", table, strategy="tpe", trials=50)  # doctest: +SKIP
>>> result.genotype, result.trials.head()  # doctest: +SKIP
"""
from __future__ import annotations

import json
import logging
import math
import os
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import optuna
import pandas as pd

from nas.config import check_value
from nas.errors import NasError, TrialDiverged
from nas.evaluators.base import Evaluator
from nas.genotype import Genotype
from nas.run import Run
from nas.space import SearchSpace, load_space
from nas.strategies.blackbox.optuna_search import (
    STRATEGIES,
    check_pruner,
    enqueue_item,
    load_space_definition,
    make_sampler,
    objective_directions,
    parse_objectives,
)
from nas.strategies.blackbox.ray_cluster import RayConnection, connect_ray
from nas.strategies.blackbox.results import (
    TrialRecord,
    metric_text,
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
from nas.strategies.blackbox.settings import DEFAULT_DISTINCT, BlackboxSettings

EXPERIMENT = "tune"  # the first Tune experiment's folder inside the run folder; resumes add tune-2, tune-3, ...
TRIAL_LOG = "tune-trials.jsonl"  # the run's own plain-JSON trial log, what a resume reads
TRIALS = "trials"  # the trials' own folders inside the run folder: trials/NNNN
NUMBER = "nas_trial"  # the key of a trial's number in its Tune config
STUDY_NAME = "optuna"  # the study name OptunaSearch gives its in-memory study
HYPERBAND_BRACKETS = 3
STATUSES = ("complete", "stopped", "error")
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
    connection: how the search reached Ray and its dashboard (``None`` when a resume found
        nothing left to run).
    """

    path: Path
    genotype: Genotype | None
    metrics: dict[str, Any] = field(default_factory=dict)
    pareto: list[tuple[Genotype, dict[str, Any]]] = field(default_factory=list)
    trials: pd.DataFrame | None = None
    connection: RayConnection | None = None


# -- pieces Ray pickles into the experiment it writes: module-level, not closures ------------------
class GenotypeSpace:
    """The define-by-run search space handed to ``OptunaSearch``: one genotype per trial.

    Ray saves its searcher with ``pickle``, so this is a class rather than a closure.
    """

    def __init__(self, space: SearchSpace) -> None:
        self.space = space

    def __call__(self, trial: Any) -> None:
        suggest_genotype(trial, self.space)  # the suggestions become the trial's config


def trial_name(trial: Any) -> str:
    """Tune's ``trial_name_creator``: ``trial_NNNN``, the trial's number, which its config carries
    (:data:`NUMBER`, set by the searcher when it proposes the trial)."""
    return f"trial_{trial_number(trial.config):04d}"


def trial_number(config: dict[str, Any]) -> int:
    """A trial's number: creation order across every experiment of the run."""
    return int(config[NUMBER])


def trial_dirname(trial: Any) -> str:
    """Tune's trial folder: the trial's name (unique within an experiment)."""
    return trial_name(trial)


def trial_folder(run_path: str | Path, number: int) -> Path:
    """A trial's own folder, ``RUN/trials/NNNN``: the evaluator's working folder, the same in every
    experiment of the run, so that a trial run again continues there."""
    return Path(run_path) / TRIALS / f"{number:04d}"


def nas_trial(config: dict[str, Any], *, evaluator: Evaluator, space: SearchSpace, objectives: list[str],
              run_path: str, continuing: Sequence[int] = ()) -> None:
    """One Tune trial: evaluate the genotype that ``config`` describes, reporting every epoch.

    Each per-epoch report carries ``epoch`` (the scheduler's clock). The evaluator works in the
    trial's own folder ``RUN/trials/NNNN``; a trial that ran before (its search was stopped)
    continues there when the evaluator can continue it (training from its last epoch
    checkpoint), else the folder is cleared and it starts over. A line per start, epoch and end
    goes to the trial's actor log. A NaN or infinite objective raises
    :class:`~nas.errors.TrialDiverged`. The last report holds the evaluator's final metrics and
    ``completed = 1``.
    """
    from ray import tune

    number = trial_number(config)
    genotype = params_to_genotype(config, space)
    cell = short_form(genotype)
    last_epoch: list[int] = []

    def report(epoch: int, metrics: dict[str, float]) -> None:
        _check_finite(metrics, objectives, f"at epoch {epoch}")
        last_epoch[:] = [epoch]
        print(f"trial {number:4d} epoch {epoch:3d} | {metric_text(metrics, objectives)} | {cell}", flush=True)
        tune.report({**plain(metrics), "epoch": epoch})

    workdir = trial_folder(run_path, number)
    again = workdir.exists()
    # only a trial that this run started before and did not finish continues; anything else in
    # its folder (such as an earlier search's, in a folder taken over with --overwrite) goes
    continues = again and number in continuing and evaluator.can_continue(workdir)
    if again and not continues:
        shutil.rmtree(workdir)  # what an interrupted attempt left that cannot be continued: it starts over
    print(f"trial {number:4d} {'continues' if continues else 'started':9s} | {cell} | {workdir}", flush=True)
    metrics = evaluator.evaluate(genotype, report=report, workdir=workdir)
    missing = [name for name in objectives if name not in metrics]
    if missing:
        raise NasError(f"objective {missing[0]!r} is not among the evaluator's metrics "
                       f"({', '.join(sorted(metrics))}); choose --objectives from those")
    _check_finite(metrics, objectives, "at the end")
    final = {**plain(metrics), "completed": 1}
    if last_epoch and "epoch" not in final:
        final["epoch"] = last_epoch[0]
    print(f"trial {number:4d} finished  | {metric_text(metrics, objectives)} | {cell}", flush=True)
    tune.report(final)


def _check_finite(metrics: dict[str, Any], objectives: Sequence[str], when: str) -> None:
    for name in objectives:
        value = metrics.get(name)
        if isinstance(value, (int, float)) and not math.isfinite(value):
            raise TrialDiverged(f"{name} is {value} {when}: training diverged")


# -- the trial log: the only thing a resume reads --------------------------------------------------
@dataclass
class TrialLog:
    """The trials of a run's ``tune-trials.jsonl``, each by its number: the last line about it.

    finished: trials whose last line is ``end`` (complete, stopped early or errored), by number.
    unfinished: trials that started but never ended (the search was stopped or killed), by number.
    """

    finished: dict[int, dict[str, Any]] = field(default_factory=dict)
    unfinished: dict[int, dict[str, Any]] = field(default_factory=dict)

    @property
    def started(self) -> int:
        """How many trial numbers are taken: one past the highest number seen."""
        return max([*self.finished, *self.unfinished], default=-1) + 1


def read_trial_log(run: Run, space: SearchSpace) -> TrialLog:
    """The trial log of ``run``, every line checked: plain JSON of the expected shape only.

    A torn line (a kill in mid-write) is skipped; a line of the wrong shape is refused with
    its line number, since a resume must not guess what a damaged record meant.
    """
    path = run.path / TRIAL_LOG
    log = TrialLog()
    if not path.is_file():
        return log
    lines = path.read_text(errors="replace").splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # torn by a kill; the trial then counts as not finished
        except RecursionError:
            record = None
        problem = _log_problem(record, space)
        if problem:
            raise NasError(f"{path}: line {number}: {problem}; the trial log is damaged, so this search cannot be "
                           "resumed from it (start a new search)")
        trial = record["number"]
        if record["event"] == "end":
            log.unfinished.pop(trial, None)
            log.finished[trial] = record
        else:
            log.finished.pop(trial, None)
            log.unfinished[trial] = record
    return log


def _log_problem(record: Any, space: SearchSpace) -> str | None:
    """What is wrong with one trial-log record (``None``: nothing)."""
    if not isinstance(record, dict):
        return "not a JSON object"
    if record.get("event") not in ("start", "end"):
        return "'event' must be 'start' or 'end'"
    number = record.get("number")
    if not isinstance(number, int) or isinstance(number, bool) or not 0 <= number < 10**7:
        return "'number' must be a trial number (an integer from 0)"
    for key in ("experiment", "trial_id", "path", "tune_path"):
        if not isinstance(record.get(key, ""), str):
            return f"{key!r} must be a string"
    config = record.get("config")
    if not isinstance(config, dict) or not all(isinstance(k, str) and _scalar(v) for k, v in config.items()):
        return "'config' must be an object of parameter names and plain values"
    try:
        params_to_genotype(config, space)
    except NasError as exc:
        return f"'config' is no genotype of space {space.name!r} ({exc})"
    if record["event"] == "start":
        return None
    if record.get("status") not in STATUSES:
        return f"'status' must be one of {', '.join(STATUSES)}"
    metrics = record.get("metrics")
    if not isinstance(metrics, dict) or not all(isinstance(k, str) and _scalar(v) for k, v in metrics.items()):
        return "'metrics' must be an object of metric names and numbers"
    if not (record.get("seconds") is None or _number(record["seconds"])):
        return "'seconds' must be a number"
    if not isinstance(record.get("error", ""), str):
        return "'error' must be a string"
    curve = record.get("curve", [])
    if not isinstance(curve, list) or not all(
            isinstance(point, list) and len(point) == 3 and all(v is None or _number(v) for v in point)
            for point in curve):
        return "'curve' must be a list of [iteration, epoch, value] triples"
    return None


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _fresh_experiment(run: Run) -> str:
    """The first experiment name with no folder yet: ``tune``, then ``tune-2``, ``tune-3``, ...

    A new experiment never writes into a folder that exists, so nothing already in the run
    folder (an earlier experiment, or files someone placed there) is read, changed or deleted.
    """
    name, index = EXPERIMENT, 1
    while os.path.lexists(run.path / name):
        index += 1
        name = f"{EXPERIMENT}-{index}"
    return name


# -- the search ------------------------------------------------------------------------------------
def search_ray(space: SearchSpace | str, evaluator: Evaluator, *, strategy: str, trials: int,
               out: str | Path | None = None, resume: str | Path | None = None, seed: int = 0,
               address: str | None = None, cpus_per_trial: float = 1, gpus_per_trial: float | None = None,
               max_concurrent: int | None = None, scheduler: str = "auto", grace_period: int = 1,
               reduction_factor: float = 2, objectives: str | Sequence[str] | None = None,
               ray_search: str = "optuna", population: int | None = None, sample_size: int | None = None,
               distinct: str = DEFAULT_DISTINCT, start: int | None = None, warm: dict[str, Any] | None = None,
               enqueue: Iterable[str | Genotype] = (), max_epochs: int | None = None,
               dashboard_host: str = "127.0.0.1", dashboard_port: int | None = None,
               job: bool = False, keep_ray: bool = False, reuse_actors: bool = False,
               progress: bool = True) -> RaySearchResult:
    """Search ``space`` with ``trials`` Ray Tune trials, each one ``evaluator.evaluate``.

    strategy: ``random``, ``tpe``, ``evolution`` or ``nsga2`` (an Optuna sampler inside
        ``OptunaSearch``); with ``ray_search="basic"`` only ``random``, drawn by Tune's
        variant generator from ``tune.choice`` per decision.
    trials: trials of the search; on resume the total, counting the trials already started
        (more than before extends the search).
    resume: run folder of a stopped search (settings come from its config): read from its
        trial log only, never from Tune's pickled experiment state. Finished trials (complete,
        stopped early, errored) are kept as they are; unfinished ones run again, under their own
        numbers and in their own folders (continuing after their last epoch where the evaluator
        can), in a new Tune experiment next to the old one (``tune-2/``, ...), followed by the
        remaining trials.
    address: Ray cluster to attach to (default ``$RAY_ADDRESS``; none: start a local Ray, with
        its dashboard on ``dashboard_host``:``dashboard_port`` behind token authentication).
    cpus_per_trial, gpus_per_trial: resources of one trial (fractions allowed); GPUs default
        to 1 per trial when the cluster has GPUs, else 0.
    max_concurrent: at most this many trials at once (default: as many as resources allow).
    scheduler: ``auto`` (default: ``asha`` for an evaluator that reports per epoch, else ``none``), ``asha``, ``hyperband`` (asynchronous Hyperband: ASHA with
        several brackets, which never pauses trials) or ``none``; it compares the first
        objective at epochs ``grace_period``, ``grace_period * reduction_factor``, ... below
        the last epoch. With several objectives there is no scheduler: stopping by one
        objective would cut small models that belong to the Pareto front.
    objectives: metric names (``"val_acc,params"``); several make a multi-objective search.
    population, sample_size: evolution's P and S, NSGA-II's population.
    distinct, start: see :func:`~nas.strategies.blackbox.optuna_search.make_sampler` (default
        ``function``: no cell evaluated twice; ``ray_search="basic"`` always evaluates repeats).
    warm: what a warm start cost (kept in ``config.json``); its cells come in ``enqueue``.
    enqueue: reference names, genotype files or genotypes evaluated first.
    max_epochs: epochs a trial trains (default: the evaluator's ``epochs``); places the
        scheduler's rungs.
    job: run the search's driver as a Ray job named after the run folder (the ``nas search``
        command does), so the dashboard's Jobs page shows it with its output; this process
        submits it, prints its output as it comes and waits for it. Needs an evaluator the job
        can rebuild from the run's config (a registered one); otherwise the search runs here.
    keep_ray: keep a Ray started here running after the search, until Ctrl-C, so that its
        dashboard can still be looked at.
    reuse_actors: run trials one after another in the same Tune actors (saves starting a
        worker process per trial, which matters for trials of seconds); default: an actor per
        trial, so that each actor's log on the dashboard is one trial's.
    """
    space = load_space(space)
    _check_options(trials=trials, cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial,
                   max_concurrent=max_concurrent, scheduler=scheduler, grace_period=grace_period,
                   reduction_factor=reduction_factor, ray_search=ray_search, strategy=strategy)
    run: Run | None = None
    log = TrialLog()
    if resume is not None:
        run = Run.open(resume)
        config = run.config
        if config.get("backend") != "ray":
            raise NasError(f"run {run.path} is not a Ray Tune search; resume it without --backend ray")
        if config.get("trial_log") != TRIAL_LOG:
            raise NasError(f"run {run.path} keeps no trial log ({TRIAL_LOG}), only Tune's own experiment state, "
                           "which is never restored (Tune unpickles it, and unpickling runs code); start a new "
                           "search")
        space, log, enqueued = _read_run(run)
        if trials < log.started:
            raise NasError(f"run {run.path} has started {log.started} trials ({len(log.finished)} finished); pass "
                           f"--trials {log.started} or more to resume it")
    else:
        objective_names = parse_objectives(objectives, evaluator)
        if strategy == "nsga2" and len(objective_names) == 1 and "params" in getattr(evaluator, "provides", ()):
            objective_names.append("params")  # NSGA-II is a multi-objective method
        multi = len(objective_names) > 1
        if multi and strategy in ("evolution", "local"):
            raise NasError(f"{strategy} optimises one objective; use --strategy nsga2 (or random/tpe) "
                           "for several objectives")
        if scheduler == "auto":
            scheduler = "asha" if evaluator.reports_epochs else "none"
        if ray_search == "basic":
            distinct = "off"  # Tune's own random points: it cannot draw again
        if not multi:
            check_pruner(scheduler, evaluator, "--scheduler")
        enqueued = [params for _, params in (enqueue_item(g if isinstance(g, Genotype) else str(g), space)
                                             for g in enqueue)]
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
                  "max_concurrent": max_concurrent, "sampler": {"population": population, "sample_size": sample_size,
                                                               "distinct": distinct, "start": start},
                  **({"warm_start": warm} if warm else {}),
                  "enqueue": [g if isinstance(g, str) else short_form(g) for g in enqueue],
                  "enqueue_params": enqueued, "trial_log": TRIAL_LOG, "reuse_actors": reuse_actors}

    to_run = trials - len(log.finished)
    if run is not None and to_run == 0:  # a resume with nothing left: the outputs again, from the log
        if trials != config["trials"]:
            run.write_json("config.json", {**config, "trials": trials})
        result = write_outputs(run, space, config)
        run.close()
        if progress:
            print(f"resuming {run.path}: all {trials} trials finished already", flush=True)
            _print_summary(result, config)
        return result

    _quiet_tune()
    from nas.strategies.blackbox.ray_job import why_not_a_job

    why_not = why_not_a_job(evaluator, config, address) if job else None
    # trials' own output stays in Ray's logs (the dashboard shows it): parallel trials would interleave
    connection = connect_ray(address, dashboard_host=dashboard_host, dashboard_port=dashboard_port,
                             log_to_driver=False)
    if why_not and progress:
        print(f"{why_not}, so the search runs in this process, not as a Ray job", flush=True)
    in_job = job and not why_not
    try:
        gpus = _trial_gpus(config)
        if run is None:  # created only now, so that a refused setting leaves no folder behind
            run = Run.create(f"ray-{strategy}", config, out=out, name=space.name)
        elif trials != config["trials"]:
            run.write_json("config.json", {**config, "trials": trials})
        if progress:
            print(connection.instructions(), flush=True)
        if in_job:
            from nas.strategies.blackbox.ray_job import NoJobAgent, run_as_job

            try:
                run_as_job(run, connection, resumed=resume is not None)
            except NoJobAgent as exc:
                if progress:
                    print(f"{exc}, so the search runs in this process, not as a Ray job", flush=True)
                in_job = False
            else:
                result = write_outputs(run, space, config)
        if not in_job:
            result = drive(run, space, evaluator, config, log, enqueued, gpus, resumed=resume is not None,
                           progress=progress)
        result.connection = connection
        if run is not None:
            run.close()
        if keep_ray and connection.started_here:  # only after a search that ended well: an error goes first
            from nas.strategies.blackbox.ray_job import hold_ray

            hold_ray(connection, progress=progress)
    finally:
        if run is not None:
            run.close()
        if connection.started_here:
            import ray

            ray.shutdown()
    return result


def drive(run: Run, space: SearchSpace, evaluator: Evaluator, config: dict[str, Any], log: TrialLog,
          enqueued: list[dict[str, Any]], gpus: float, *, resumed: bool, progress: bool) -> RaySearchResult:
    """The search's driver, connected to Ray: the Tune experiment that runs the trials still to
    run (the unfinished ones of ``log`` first), then the run's outputs; ``progress`` prints a
    line per trial event and the summary."""
    from ray import tune

    trials = config["trials"]
    rerun = sorted(log.unfinished)  # run again first, under their own numbers
    to_run = trials - len(log.finished)
    experiment = _fresh_experiment(run)
    trainable = tune.with_resources(
        tune.with_parameters(nas_trial, evaluator=evaluator, space=space, objectives=list(config["objectives"]),
                             run_path=str(run.path.resolve()), continuing=rerun),
        {"cpu": config["cpus_per_trial"], "gpu": gpus})
    tuner = _new_tuner(trainable, run, experiment, space, config, log, enqueued, to_run, progress=progress)
    if progress:
        if resumed:
            print(f"resuming {run.path}: {len(log.finished)} of {trials} trials finished; {len(rerun)} unfinished "
                  f"run again (continuing in their own folders where the evaluator can), {to_run - len(rerun)} new; "
                  f"Tune experiment {experiment}/", flush=True)
        else:
            goals = ", ".join(f"{d} {o}" for o, d in zip(config["objectives"], config["directions"]))
            print(f"run folder {run.path}; {config['strategy']} on {space.name} as Ray Tune trials: {goals}; "
                  f"scheduler {config['scheduler']}; {config['cpus_per_trial']:g} CPU + {gpus:g} GPU per trial",
                  flush=True)
    # the result grid warns of trials it has no metrics of (pending ones a stop left): the trial log has them
    analysis_log = logging.getLogger("ray.tune.analysis.experiment_analysis")
    level = analysis_log.level
    analysis_log.setLevel(logging.ERROR)
    try:
        tuner.fit()
    finally:
        analysis_log.setLevel(level)
    result = write_outputs(run, space, config)
    if progress:
        _print_summary(result, config)
    return result


def drive_job(run_path: str | Path) -> RaySearchResult:
    """The search of the run folder ``run_path`` (made by :func:`search_ray`), as the Ray job runs
    it: everything is read from the folder; the evaluator is rebuilt from its config."""
    from nas.evaluators import evaluator_from_config

    run = Run.open(run_path)
    try:
        config = run.config
        space, log, enqueued = _read_run(run)
        evaluator = evaluator_from_config(config["evaluator"])
        _quiet_tune()
        connect_ray(log_to_driver=False)  # the job's own cluster ($RAY_ADDRESS)
        return drive(run, space, evaluator, config, log, enqueued, _trial_gpus(config),
                     resumed=bool(log.started), progress=True)
    finally:
        run.close()


def _read_run(run: Run) -> tuple[SearchSpace, TrialLog, list[dict[str, Any]]]:
    """The space, trial log and enqueued trials of a Ray Tune search's run folder."""
    config = run.config
    space = load_space_definition(config)
    log = read_trial_log(run, space)
    enqueued = [_checked_params(params, space, "enqueue_params in config.json")
                for params in config.get("enqueue_params", [])]
    return space, log, enqueued


def _trial_gpus(config: dict[str, Any]) -> float:
    """GPUs per trial (default: 1 when the cluster has GPUs), checked against the cluster."""
    import ray

    gpus = config["gpus_per_trial"]
    if gpus is None:
        gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
    _check_cluster_fits(config["cpus_per_trial"], gpus)
    return gpus


def _checked_params(params: Any, space: SearchSpace, where: str) -> dict[str, Any]:
    if not isinstance(params, dict) or not all(isinstance(k, str) and _scalar(v) for k, v in params.items()):
        raise NasError(f"{where}: expected an object of parameter names and plain values, got {params!r:.80}")
    try:
        params_to_genotype(params, space)
    except NasError as exc:
        raise NasError(f"{where}: {exc}") from None
    return dict(params)


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
    # frequent experiment snapshots trigger a warning; they are small
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # the project adds the loggers it wants
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # not the experiment's box of settings: the search prints its own
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")


def _new_tuner(trainable: Any, run: Run, experiment: str, space: SearchSpace, config: dict[str, Any],
               log: TrialLog, enqueued: list[dict[str, Any]], to_run: int, *, progress: bool) -> Any:
    """A Tune experiment of ``to_run`` trials: the unfinished trials of ``log`` first, then those
    an uninterrupted search would have run next; the finished ones are known to its searcher."""
    from ray import tune
    from ray.tune.search.basic_variant import BasicVariantGenerator

    objectives = list(config["objectives"])
    modes = ["max" if d == "maximize" else "min" for d in config["directions"]]
    multi = len(objectives) > 1
    rerun = [log.unfinished[n]["config"] for n in sorted(log.unfinished)]
    base = log.started
    param_space: dict[str, Any] = {}
    if config["ray_search"] == "basic":
        param_space = {name: tune.choice(list(choices)) for name, choices in param_choices(space).items()}
        # every trial's config drawn up front from the seed, so a resume continues the same sequence
        plan = _basic_plan(param_space, enqueued, config["seed"], base + to_run - len(rerun))
        points = [{**params, NUMBER: number} for params, number in zip(rerun, sorted(log.unfinished))] + \
            [{**params, NUMBER: base + index} for index, params in enumerate(plan[base:])]
        param_space[NUMBER] = None  # a slot for the number each point sets
        search_alg: Any = BasicVariantGenerator(points_to_evaluate=points, random_state=config["seed"])
    else:
        from nas.strategies.blackbox.ray_searcher import ResumedOptunaSearch

        # per-trial seeds (seed, trial index): a rebuilt study continues as an uninterrupted one
        sampler = make_sampler(config["strategy"], space, seed=config["seed"], multi_objective=multi,
                               **{k: v for k, v in config["sampler"].items() if v is not None})
        previous = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # not the note that a study was created
        try:
            storage, running = rebuilt_study(log, space, sampler, objectives, config["directions"],
                                             enqueued=len(enqueued)) if base else (None, [])
            search_alg = ResumedOptunaSearch(GenotypeSpace(space), metric=objectives if multi else objectives[0],
                                             mode=modes if multi else modes[0], sampler=sampler, storage=storage,
                                             study_name=STUDY_NAME, resumed=running,
                                             numbers=(sorted(log.unfinished), base), number_key=NUMBER,
                                             points_to_evaluate=enqueued[base:] or None)
        finally:
            optuna.logging.set_verbosity(previous)
    scheduler = _make_scheduler(config, objectives[0], modes[0])
    if scheduler is not None:
        _refill_rungs(scheduler, log, objectives[0])
    tune_config = tune.TuneConfig(search_alg=search_alg, scheduler=scheduler, num_samples=to_run,
                                  max_concurrent_trials=config["max_concurrent"],
                                  trial_name_creator=trial_name, trial_dirname_creator=trial_dirname,
                                  # default: an actor (and worker process, with its own log) per
                                  # trial, so that the dashboard tells the trials apart
                                  reuse_actors=bool(config.get("reuse_actors", False)))
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    from nas.strategies.blackbox.ray_progress import SearchGauges, TrialBook, TrialLines

    book = TrialBook(run.path.resolve(), experiment, TRIAL_LOG, objectives, config["directions"], space,
                     number_key=NUMBER, finished=log.finished, final_metrics=final_metrics, error_line=error_line)
    # Tune's own TensorBoard logger is left out (TUNE_DISABLE_AUTO_CALLBACK_LOGGERS): the trial book
    # writes one TensorBoard run per trial that a resume continues, under RUN/tensorboard/
    callbacks: list[Any] = [book, SearchGauges(run.path.name, objectives, config["directions"], log.finished),
                            JsonLoggerCallback(), CSVLoggerCallback()]
    if progress:
        callbacks.append(TrialLines(space, objectives, number=lambda trial: trial_number(trial.config)))
    run_config = tune.RunConfig(
        storage_path=str(run.path.resolve()), name=experiment,
        failure_config=tune.FailureConfig(max_failures=0, fail_fast=False),
        callbacks=callbacks, verbose=0)
    return tune.Tuner(trainable, param_space=param_space, tune_config=tune_config, run_config=run_config)


def _basic_plan(param_space: dict[str, Any], enqueued: list[dict[str, Any]], seed: int,
                count: int) -> list[dict[str, Any]]:
    """The configs of trials ``0 .. count - 1`` of a basic random search: the enqueued ones,
    then draws of Tune's variant generator from one random stream seeded with ``seed``."""
    import numpy as np
    from ray.tune.search.variant_generator import generate_variants

    rng = np.random.default_rng(seed)
    plan = [dict(p) for p in enqueued[:count]]
    while len(plan) < count:
        _, spec = next(generate_variants({"config": param_space}, random_state=rng))
        plan.append(dict(spec["config"]))
    return plan


def rebuilt_study(log: TrialLog, space: SearchSpace, sampler: optuna.samplers.BaseSampler,
                  objectives: list[str], directions: list[str], *,
                  enqueued: int = 0) -> tuple[optuna.storages.BaseStorage, list[Any]]:
    """An in-memory study holding the logged trials as ``OptunaSearch`` recorded them, in the
    order they were created, and the trials that were running, asked again and left running.

    Each trial is asked with its logged parameters fixed and its define-by-run suggestions
    made, so the seeded sampler sees the same history at every trial number as the
    uninterrupted search did: complete and stopped trials are told their last reported
    objectives (with their per-report values, as OptunaSearch reports them), errored ones fail.
    Trials after the first ``enqueued`` (which were given, not sampled) also have the sampler's
    relative sample drawn, for what it records in the study (NSGA-II's generations and parents).
    """
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage, sampler=sampler, pruner=optuna.pruners.NopPruner(),
                                study_name=STUDY_NAME, directions=directions)
    running = []
    for number in range(log.started):
        record = log.finished.get(number) or log.unfinished.get(number)
        if record is None:  # created but never started: not in any study the search resumes
            continue
        study.enqueue_trial(genotype_to_params(params_to_genotype(record["config"], space), space))
        trial = study.ask()
        if number >= enqueued:
            trial.relative_params  # noqa: B018  (drawn for its records; the fixed parameters win)
        suggest_genotype(trial, space)
        if number not in log.finished:
            running.append(trial)
            continue
        metrics = record["metrics"]
        values = [metrics.get(name) for name in objectives]
        if len(objectives) == 1:
            for iteration, _, value in record.get("curve", []):
                if iteration is not None and value is not None:
                    trial.report(float(value), int(iteration))
        if record["status"] == "error":
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        elif any(not _number(v) or not math.isfinite(v) for v in values):
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, [float(v) for v in values] if len(values) > 1 else float(values[0]))
    return storage, running


def _refill_rungs(scheduler: Any, log: TrialLog, metric: str) -> None:
    """Give ASHA the finished trials' per-epoch objectives, as if it had watched them run."""
    for number in sorted(log.finished):
        stand_in = SimpleNamespace(trial_id=f"logged-{number}")
        scheduler.on_trial_add(None, stand_in)
        for _, epoch, value in log.finished[number].get("curve", []):
            if epoch is not None and value is not None and math.isfinite(value):
                scheduler.on_trial_result(None, stand_in, {"epoch": epoch, metric: value})
        scheduler.on_trial_remove(None, stand_in)


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
def trial_records(run: Run, log: TrialLog, space: SearchSpace) -> list[TrialRecord]:
    """One record per finished trial of the trial log, by trial number."""
    records = []
    for number in sorted(log.finished):
        entry = log.finished[number]
        metrics = dict(entry["metrics"])
        trial_id = entry.get("trial_id", "")
        folders = {key: str(run.path.resolve() / entry[key]) if entry.get(key) else "" for key in ("path", "tune_path")}
        columns = {"trial_id": trial_id, "epoch": metrics.get("epoch"), "seconds": entry.get("seconds"),
                   "error": entry.get("error", ""), **folders}
        records.append(TrialRecord(number, entry["status"], params_to_genotype(entry["config"], space), metrics,
                                   columns, {"trial_id": trial_id}))
    return records


def error_line(text: str) -> str:
    """The trial's own exception from Tune's ``error.txt`` text, not Ray's wrapper around it."""
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("Failure # ")]
    for line in reversed(lines):  # Ray's traceback text ends with the original exception
        if not line.startswith((" ", "\t")) and ":" in line:
            return line[:500]
    return lines[-1].strip()[:500] if lines else "error"


def write_outputs(run: Run, space: SearchSpace, config: dict[str, Any]) -> RaySearchResult:
    """Write trials.csv, metrics.jsonl, genotype.json/best.json, the Pareto set and plots from
    the run's trial log: every finished trial once, of every experiment of the run."""
    objectives = list(config["objectives"])
    records = trial_records(run, read_trial_log(run, space), space)
    outcome = write_results(run, records, objectives, config["directions"])
    rows = table_rows(records, objectives)
    logged = [{k: v for k, v in row.items() if k not in ("genotype_json", "path", "tune_path") and v not in (None, "")}
              for row in rows]
    run.write_records("metrics.jsonl", logged)  # rewritten whole, atomically: every trial once
    return RaySearchResult(run.path, outcome.genotype, outcome.metrics, outcome.pareto, trials=pd.DataFrame(rows))


def final_metrics(result: dict[str, Any]) -> dict[str, Any]:
    """The evaluator's metrics in a trial's last report, without Tune's bookkeeping."""
    return {k: v for k, v in plain(result or {}).items() if k not in _TUNE_KEYS}


def _print_summary(result: RaySearchResult, config: dict[str, Any]) -> None:
    table = result.trials
    if table is None or table.empty:
        print("no trial ran")
        return
    counts = table["status"].value_counts()
    print(f"{len(table)} trials: " + ", ".join(f"{counts.get(s, 0)} {s}" for s in STATUSES))
    for _, row in table[table["status"] == "error"].iterrows():
        print(f"  trial {int(row['trial'])} errored: {row['error']}")
    if result.genotype is None:
        print(f"no trial ran to the end; see {result.path}/trials.csv")
        return
    print_best(result.path, result.genotype, result.metrics, result.pareto, config["objectives"])
    print(f"TensorBoard (a run per trial, and the search's best so far): tensorboard --logdir "
          f"{result.path / 'tensorboard'}")
