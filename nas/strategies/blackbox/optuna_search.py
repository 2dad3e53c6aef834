"""Black-box architecture search on an Optuna study: random, TPE, regularized evolution, NSGA-II.

Every trial samples a genotype define-by-run (:mod:`nas.strategies.blackbox.sampling`), scores
it with an :class:`~nas.evaluators.base.Evaluator` and stores the result in the study. The
study lives in ``study.db`` (SQLite) inside the run folder unless another database URL is
given, so a search stopped at any moment continues with ``resume=RUN`` and several processes
given the same URL and study name search one study together.

What the study shows in optuna-dashboard: its values are named after the objectives
(``study.metric_names``, e.g. ``val_acc``), and every trial carries, from before its evaluation
on, the user attributes ``short`` (the genotype in one line: the arch string of nb201,
``op~src`` lists otherwise), ``genotype`` (the genotype as a dict), ``run`` and ``worker``; once
evaluated also ``metrics``, or ``fail_reason``. TensorBoard shows each trial as a run of its own
(:class:`~nas.strategies.blackbox.board.TrialBoard`, ``RUN/tensorboard/``).

>>> from nas.evaluators import evaluator_from_config
>>> table = evaluator_from_config({"name": "nb201"})  # doctest: +SKIP
>>> result = search_blackbox("nb201", table, strategy="evolution",
...                          trials=100, seed=0)  # doctest: +SKIP
>>> result.genotype, result.metrics["test_acc"]  # doctest: +SKIP

Reusable pieces (the Ray Tune backend builds on them): :func:`make_sampler`,
:func:`make_pruner`, :func:`objective_directions`, :func:`make_objective`, :func:`name_metrics`.
"""
from __future__ import annotations

import functools
import math
import os
import shutil
import socket
import sys
import time
import uuid
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial, TrialState

from nas.errors import NasError
from nas.evaluators.base import Evaluator
from nas.faults import kill_point
from nas.genotype import Genotype, resolve_genotype
from nas.run import Run
from nas.space import SearchSpace, load_space, space_from_dict
from nas.strategies.blackbox.board import TrialBoard
from nas.strategies.blackbox.distinct import DistinctSampler, cell_key
from nas.strategies.blackbox.evolution import (
    RegularizedEvolutionSampler,
    genotype_mutation,
)
from nas.strategies.blackbox.local import LocalSearchSampler
from nas.strategies.blackbox.results import (
    TrialRecord,
    finite,
    headline,
    pareto_front,
    plain,
    print_best,
    write_results,
)
from nas.strategies.blackbox.sampling import (
    genotype_to_params,
    params_to_genotype,
    short_form,
    suggest_genotype,
)
from nas.strategies.blackbox.seeded import TrialSeededSampler, not_evaluated
from nas.strategies.blackbox.settings import DEFAULT_DISTINCT, DEFAULT_POPULATION, PRUNERS

STRATEGIES = ("random", "tpe", "evolution", "local", "nsga2")
# metrics a multi-objective search minimises; every other objective is maximised
MINIMISED_METRICS = ("params", "macs", "latency_ms", "activation_mib", "loss", "val_loss", "train_loss")
# a trial whose process stopped is failed by another worker once its heartbeat is this old
HEARTBEAT_INTERVAL_S = 20
HEARTBEAT_GRACE_S = 60
MEMORY_STORAGE = "memory"


@dataclass
class BlackboxResult:
    """What a search found.

    path: the run folder (``None`` for searches without one).
    study: the Optuna study, with every trial.
    genotype: the best genotype (multi-objective: the Pareto member best in the first
        objective); ``None`` when no trial completed.
    metrics: that genotype's metrics.
    pareto: the Pareto set (single objective: just the best), as (genotype, metrics) pairs.
    """

    path: Path | None
    study: optuna.Study
    genotype: Genotype | None
    metrics: dict[str, Any] = field(default_factory=dict)
    pareto: list[tuple[Genotype, dict[str, Any]]] = field(default_factory=list)


# -- building blocks ------------------------------------------------------------------------------
def make_sampler(strategy: str, space: SearchSpace | str | None = None, *, seed: int | None = None,
                 population: int | None = None, sample_size: int | None = None,
                 multi_objective: bool = False, distinct: str = "off", start: int | None = None) -> BaseSampler:
    """The Optuna sampler of a strategy, as a :class:`~nas.strategies.blackbox.seeded.TrialSeededSampler`:
    each trial's suggestion depends on ``seed``, the study's finished trials and the trial's
    index only, so a resumed search or a second worker continues as one uninterrupted process would.

    random: ``RandomSampler``; tpe: multivariate, grouped ``TPESampler`` (handles the
    conditional block parameters of chain spaces); evolution:
    :class:`RegularizedEvolutionSampler` (``population`` P = 20, ``sample_size`` S = 5 unless
    given; mutates genotypes of ``space`` when given, else one parameter); local:
    :class:`~nas.strategies.blackbox.local.LocalSearchSampler` (climbs after ``start`` random or
    enqueued trials, default 1); nsga2: ``NSGAIISampler`` (``population`` = 20 unless given).

    distinct: ``function``, ``same`` or ``off`` (:mod:`nas.strategies.blackbox.distinct`):
    whether a proposal whose cell the study holds is drawn again (needs ``space``).
    """
    if strategy not in STRATEGIES:
        raise NasError(f"unknown black-box strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    if population is not None and population < 2:
        raise NasError(f"--population must be at least 2, got {population}")
    if strategy in ("evolution", "local") and multi_objective:
        raise NasError(f"{strategy} optimises one objective; use --strategy nsga2 (or random/tpe) "
                       "for several objectives")
    key = cell_key(distinct if distinct != "off" else "same")
    if space is not None:
        space = load_space(space)
    elif strategy == "local" or distinct != "off":
        raise NasError(f"--strategy {strategy} with distinct={distinct!r} needs the search space")
    make = functools.partial(strategy_sampler, strategy, genotype_mutation(space) if space is not None else None,
                             population, sample_size, LocalStart(space, key, start or 1) if strategy == "local"
                             else None)
    make(seed)  # the settings are checked now, not at the first trial
    sampler = TrialSeededSampler(make, seed)
    return sampler if distinct == "off" else DistinctSampler(sampler, space, key)


class LocalStart:
    """What local search's sampler is made of, as an object ``pickle`` can store (Ray Tune pickles
    its searcher)."""

    def __init__(self, space: SearchSpace, key: Callable[[Genotype], str], start: int) -> None:
        self.space, self.key, self.start = space, key, start

    def __call__(self, seed: int | None) -> BaseSampler:
        return LocalSearchSampler(self.space, self.key, start=self.start, seed=seed)


def strategy_sampler(strategy: str, mutate: Any, population: int | None, sample_size: int | None,
                     local: LocalStart | None, seed: int | None) -> BaseSampler:
    """One trial's sampler of ``strategy`` (see :func:`make_sampler`)."""
    if local is not None:
        return local(seed)
    if strategy == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if strategy == "tpe":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True)
    population = DEFAULT_POPULATION if population is None else population
    if strategy == "evolution":
        if sample_size is not None and not 1 <= sample_size <= population:
            raise NasError(f"--sample-size must be between 1 and the population ({population}), got {sample_size}")
        return RegularizedEvolutionSampler(
            population_size=population, sample_size=min(5, population) if sample_size is None else sample_size,
            mutate=mutate, seed=seed)
    return optuna.samplers.NSGAIISampler(population_size=population, seed=seed)


def check_pruner(name: str, evaluator: Evaluator, option: str = "--pruner") -> None:
    """Refuse early stopping (a pruner, a scheduler) that ``evaluator`` gives nothing to act on."""
    if name != "none" and not evaluator.reports_epochs:
        raise NasError(f"{option} {name} stops trials on their per-epoch results, and this evaluator "
                       f"({type(evaluator).__name__}) reports none; drop {option} (or use a training evaluator)")


def check_budget(budget_epochs: int | None, evaluator: Evaluator) -> None:
    """Refuse an epoch budget on an evaluator that trains no epochs."""
    if budget_epochs is not None and not evaluator.reports_epochs:
        raise NasError("--budget-epochs counts training epochs, and this evaluator trains none; use --trials")


def make_pruner(name: str, *, max_resource: int | None = None) -> optuna.pruners.BasePruner:
    """``none``, ``sha`` (successive halving) or ``hyperband`` over per-epoch reports."""
    if name == "none":
        return optuna.pruners.NopPruner()
    if name == "sha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max_resource or "auto",
                                              reduction_factor=3)
    raise NasError(f"unknown pruner {name!r}; choose one of {', '.join(PRUNERS)}")


def parse_objectives(text: str | Sequence[str] | None, evaluator: Evaluator) -> list[str]:
    """``"val_acc,params"`` -> ``["val_acc", "params"]``; ``None`` -> the evaluator's objective."""
    if text is None:
        return [evaluator.objective]
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text) if n.strip()]
    if not names:
        raise NasError("--objectives is empty; give metric names such as val_acc,params")
    if len(set(names)) != len(names):
        raise NasError(f"--objectives names a metric twice: {','.join(names)}")
    provided = getattr(evaluator, "provides", None)
    for name in names:
        if name.startswith("test"):
            raise NasError(f"objective {name!r} is read from a test split, and no test data may steer a search; "
                           f"optimise a validation metric ({evaluator.objective}) and read {name} afterwards")
        if provided is not None and name not in provided:
            raise NasError(f"objective {name!r} is not measured by this evaluator; it gives "
                           f"{', '.join(provided)}")
    return names


def objective_directions(objectives: Sequence[str], evaluator: Evaluator) -> list[str]:
    """Maximise the evaluator's objective and accuracies; minimise size, cost and loss metrics."""
    return ["minimize" if name in MINIMISED_METRICS and name != evaluator.objective else "maximize"
            for name in objectives]


def trial_genotype(trial: FrozenTrial, space: SearchSpace) -> Genotype:
    """The genotype a finished trial evaluated."""
    if "genotype" in trial.user_attrs:
        return Genotype.from_dict(trial.user_attrs["genotype"], source=f"trial {trial.number}")
    return params_to_genotype(trial.params, space)


def name_metrics(study: optuna.Study, objectives: Sequence[str]) -> None:
    """Name the study's values after ``objectives`` (optuna-dashboard then shows ``val_acc``, not
    ``Objective 0``); a study whose values already carry other names is a :class:`NasError`."""
    names = list(objectives)
    if study.metric_names == names:
        return
    if study.metric_names is not None:
        raise NasError(f"study {study.study_name!r} optimises {','.join(study.metric_names)}, not "
                       f"{','.join(names)}; pass another --study-name")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(names)


def make_objective(space: SearchSpace, evaluator: Evaluator, objectives: Sequence[str], *,
                   workdir: Path | None = None, trial_attrs: dict[str, Any] | None = None,
                   board: TrialBoard | None = None) -> Callable[[optuna.Trial], Any]:
    """The Optuna objective: sample a genotype, evaluate it, return the objective value(s).

    Before the evaluation the trial gets ``trial_attrs`` and the user attributes ``genotype``
    (a dict) and ``short`` (:func:`~nas.strategies.blackbox.sampling.short_form`), also when it
    was enqueued or is a requeued rerun; with a ``board``, the trial (re)starts its TensorBoard
    run and every per-epoch report goes to it.

    A failing evaluation (an exception, a NaN metric, CUDA running out of memory) marks the
    trial FAIL with its reason in the user attribute ``fail_reason`` and the search goes on;
    :class:`NasError` (a user mistake) and ``KeyboardInterrupt`` stop the search. With one
    objective, per-epoch reports feed the pruner.
    """
    objectives = list(objectives)
    failed = float("nan") if len(objectives) == 1 else tuple(float("nan") for _ in objectives)

    def objective(trial: optuna.Trial) -> Any:
        kill_point("blackbox.trial_started")  # created, not yet claimed by this worker
        for key, value in (trial_attrs or {}).items():
            trial.set_user_attr(key, value)
        genotype = suggest_genotype(trial, space)
        trial.set_user_attr("genotype", genotype.to_dict())
        trial.set_user_attr("short", short_form(genotype))
        if board is not None:
            board.start(trial.number, genotype)  # a requeued trial starts over: its earlier points go

        def report(epoch: int, metrics: dict[str, float]) -> None:
            if board is not None:
                board.epoch(trial.number, epoch, metrics)
            value = metrics.get(objectives[0])
            if len(objectives) != 1 or not isinstance(value, (int, float)) or not math.isfinite(value):
                return  # Optuna prunes single-objective studies only
            trial.report(float(value), epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned after epoch {epoch} ({objectives[0]} {value:.4g})")

        folder = workdir / f"{trial.number:04d}" if workdir else None
        if folder is not None and trial.user_attrs.get("requeued") and folder.exists():
            shutil.rmtree(folder)  # what an interrupted attempt of this trial left: it starts over
        kill_point("blackbox.trial_running")
        try:
            metrics = evaluator.evaluate(genotype, report=report, workdir=folder)
        except optuna.TrialPruned:
            raise
        except NasError as exc:
            trial.set_user_attr("fail_reason", f"NasError: {exc}")
            raise
        except Exception as exc:  # noqa: BLE001 - the search goes on; the reason stays with the trial
            if isinstance(exc, torch.OutOfMemoryError):
                torch.cuda.empty_cache()  # the next trial gets the memory this one held
            trial.set_user_attr("fail_reason", f"{type(exc).__name__}: {exc}"[:1000])
            return failed
        except KeyboardInterrupt:
            trial.set_user_attr("fail_reason", "interrupted (KeyboardInterrupt)")
            trial.set_user_attr("interrupted", True)
            raise
        for name in objectives:
            if name not in metrics:
                raise NasError(f"objective {name!r} is not among the evaluator's metrics "
                               f"({', '.join(sorted(metrics))}); choose --objectives from those")
        trial.set_user_attr("metrics", plain(metrics))
        kill_point("blackbox.before_tell")
        values = [metrics[name] for name in objectives]
        bad = [name for name, v in zip(objectives, values) if not finite(v)]
        if bad:
            trial.set_user_attr("fail_reason", f"objective {bad[0]} is {values[objectives.index(bad[0])]!r}")
            return failed
        return float(values[0]) if len(values) == 1 else tuple(float(v) for v in values)

    return objective


# -- storage -------------------------------------------------------------------------------------
def open_storage(url: str | None) -> optuna.storages.BaseStorage:
    """``None``/``"memory"``: in memory; a database URL: an RDB storage with heartbeats."""
    if url is None or url == MEMORY_STORAGE:
        return optuna.storages.InMemoryStorage()
    sqlite = url.startswith("sqlite")
    # several processes may write one SQLite file: wait for the lock instead of failing
    engine_kwargs = {"connect_args": {"timeout": 60}} if sqlite else {}
    for attempt in range(5):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                storage = optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs,
                                                     heartbeat_interval=HEARTBEAT_INTERVAL_S,
                                                     grace_period=HEARTBEAT_GRACE_S)
            break
        except Exception as exc:  # noqa: BLE001 - SQLAlchemy's errors differ per database
            if type(exc).__name__ in ("IntegrityError", "OperationalError") and attempt < 4:
                # workers that start together race to create the tables: the loser retries
                time.sleep(0.2 * (attempt + 1))
                continue
            raise NasError(f"--storage {url}: cannot open the study storage ({type(exc).__name__}: "
                           f"{str(exc).splitlines()[0]}); pass a database URL such as sqlite:///study.db") from None
    if sqlite:
        _fast_sqlite(storage)
    return storage


def check_study_file(url: str, run: Run) -> None:
    """Before a resume touches it: the SQLite file of ``url`` must exist and be an SQLite database
    (SQLite would otherwise write its tables over whatever file is there)."""
    if not url.startswith("sqlite:///"):
        return
    path = Path(url[len("sqlite:///"):])
    if not path.is_file():
        raise NasError(f"{path}: the study of run {run.path} is missing, so it cannot be resumed; start a new search")
    with open(path, "rb") as f:
        header = f.read(16)
    if header != b"SQLite format 3\x00":
        raise NasError(f"{path}: not an SQLite study database (damaged or replaced), so run {run.path} cannot be "
                       "resumed; restore the file or start a new search")


def _fast_sqlite(storage: optuna.storages.RDBStorage) -> None:
    """Write-ahead logging: a commit costs no full fsync and readers never block the writer,
    which makes a table-lookup search ~10x faster and lets workers share the file."""
    from sqlalchemy import event

    def set_pragmas(connection: Any, _record: Any) -> None:
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    event.listen(storage.engine, "connect", set_pragmas)
    storage.engine.dispose()  # reopen the connections the storage made, now with the pragmas


def _worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _process_stat(pid: int) -> tuple[str, str] | None:
    """(state, start time) of a process from ``/proc`` (Linux); None where there is none."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rpartition(")")[2].split()  # the command name in parentheses may hold spaces
    return (fields[0], fields[19]) if len(fields) > 19 else None


def _process_running(pid: int, started: str | None = None) -> bool:
    """Whether process ``pid`` runs (not a zombie), and is the one that started at ``started``
    (a ``/proc`` start time) when given: a pid may be reused by a later process."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    stat = _process_stat(pid)
    if stat is None:
        return True
    state, start = stat
    return state not in ("Z", "X") and (started is None or start == started)


def register_worker(study: optuna.Study, run_id: str) -> str:
    """Record this process in the study (``worker.<host>:<pid>``) before it creates a trial, so
    a trial it leaves RUNNING before claiming it can be told apart from a live worker's."""
    worker = _worker_id()
    stat = _process_stat(os.getpid())
    study.set_user_attr(f"worker.{worker}", {"run": run_id, "started": stat[1] if stat else None,
                                             "time": time.time()})
    return worker


def _stopped(worker: str, workers: dict[str, Any]) -> bool:
    """Whether ``worker`` (``host:pid``) is a process of this machine that no longer runs."""
    host, _, pid = worker.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit() or worker == _worker_id():
        return False
    info = workers.get(worker)
    return not _process_running(int(pid), info.get("started") if isinstance(info, dict) else None)


def requeue_interrupted_trials(study: optuna.Study, storage: optuna.storages.BaseStorage) -> list[int]:
    """Put back in the queue (WAITING) the RUNNING trials of processes on this machine that no
    longer exist, so that the next worker re-runs each under its own number, with the same
    parameters (an enqueued trial keeps its fixed ones; a sampled one draws them again with its
    own seed, see :mod:`nas.strategies.blackbox.seeded`): a killed search then ends as an
    uninterrupted one would. ``storage`` is the study's; returns the numbers requeued.

    A trial not yet claimed (no ``worker`` attribute: killed right after Optuna created it) is
    requeued when every other worker registered in the study on this machine has stopped and
    none ran elsewhere. Trials of other machines are failed by Optuna once their heartbeat is
    older than ``HEARTBEAT_GRACE_S``.
    """
    workers = {key.removeprefix("worker."): value for key, value in study.user_attrs.items()
               if key.startswith("worker.")}
    me = _worker_id()
    unclaimed_are_stopped = all(_stopped(w, workers) for w in workers if w != me)
    requeued = []
    study_id = storage.get_study_id_from_name(study.study_name)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = trial.user_attrs.get("worker")
        if not (_stopped(str(worker), workers) if worker is not None else unclaimed_are_stopped):
            continue
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        try:
            storage.set_trial_user_attr(trial_id, "requeued", int(trial.user_attrs.get("requeued", 0)) + 1)
            storage.set_trial_state_values(trial_id, TrialState.WAITING)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another process got there first
        requeued.append(trial.number)
    return requeued


def enqueue_once(study: optuna.Study, run_id: str, enqueue: Sequence[tuple[str, dict[str, Any]]]) -> None:
    """Enqueue ``(label, params)`` pairs once per run, also when a kill stopped the first try midway."""
    key = f"enqueued.{run_id}"
    if study.user_attrs.get(key):
        return
    for label, params in enqueue:
        study.enqueue_trial(params, user_attrs={"enqueued": label}, skip_if_exists=True)
    study.set_user_attr(key, True)


def counted_trials(study: optuna.Study, run_id: str | None = None) -> list[FrozenTrial]:
    """Trials that used up budget: complete, pruned, or failed in evaluation (not interrupted)."""
    done = []
    for t in study.get_trials(deepcopy=False, states=_FINISHED):
        if run_id is not None and t.user_attrs.get("run") != run_id:
            continue
        if not_evaluated(t):
            continue
        done.append(t)
    return done


# -- the search ------------------------------------------------------------------------------------
def search_blackbox(space: SearchSpace | str, evaluator: Evaluator, *, strategy: str, trials: int,
                    out: str | Path | None = None, resume: str | Path | None = None, seed: int = 0,
                    storage: str | None = None, study_name: str | None = None,
                    objectives: str | Sequence[str] | None = None, enqueue: Iterable[str | Genotype] = (),
                    pruner: str = "none", progress: bool = True, budget_epochs: int | None = None,
                    warm: dict[str, Any] | None = None, **sampler_kw: Any) -> BlackboxResult:
    """Search ``space`` with a black-box strategy; every trial is one ``evaluator.evaluate``.

    strategy: ``random``, ``tpe``, ``evolution`` or ``nsga2``.
    trials: trials this run evaluates (on resume: in total, counting those already done).
    out: run folder to create (default ``runs/<strategy>-<space>-<time>``).
    resume: run folder to continue; storage, study name, objectives, pruner, seed and sampler
        settings then come from its ``config.json``.
    storage: database URL of the study (default ``sqlite:///<run>/study.db``; ``"memory"``
        keeps it in memory, without resume). Processes given the same URL and ``study_name``
        search one study together, each evaluating its own ``trials``.
    objectives: metric names (``"val_acc,params"``); the first is the one the evaluator
        maximises, more make a multi-objective search (params, macs, latency_ms minimised).
    enqueue: reference names, genotype files or genotypes evaluated first.
    pruner: ``none``, ``sha`` or ``hyperband`` on the evaluator's per-epoch reports.
    budget_epochs: stop once the trials have trained this many epochs in all (a pruned trial
        counts the epochs it ran); ``trials`` still caps the number of trials.
    warm: what a warm start cost (:meth:`~nas.strategies.blackbox.warm.WarmStart.record`), kept
        in ``config.json``; its cells come in ``enqueue``.
    sampler_kw: ``population`` and ``sample_size`` (evolution, nsga2), ``distinct`` (default
        ``function``: no cell evaluated twice) and ``start`` (see :func:`make_sampler`).

    Writes to the run folder: ``config.json``, ``study.db``, ``metrics.jsonl`` (one record per
    trial, as it finishes), ``tensorboard/`` (a run per trial and ``search``, see
    :mod:`nas.strategies.blackbox.board`) and at the end what :func:`~nas.strategies.blackbox.results.write_results`
    writes for every backend (``trials.csv``, ``genotype.json`` + ``best.json``, the Pareto set, plots).
    """
    space = load_space(space)
    if trials < 0:
        raise NasError(f"--trials must be 0 or more, got {trials}")
    if resume is not None:
        run = Run.open(resume)
        config = run.config
        if config.get("space") != space.name:
            raise NasError(f"run {run.path} searched space {config.get('space')!r}, not {space.name!r}")
        strategy, seed, storage = config["strategy"], config["seed"], config["storage"]
        study_name, objectives, pruner = config["study_name"], config["objectives"], config["pruner"]
        sampler_kw = {k: v for k, v in config.get("sampler", {}).items() if v is not None}
        budget_epochs = config.get("budget_epochs")
        run_id = config["run_id"]
        if storage == MEMORY_STORAGE:
            raise NasError(f"run {run.path} kept its study in memory, so it cannot be resumed; "
                           "start a new search (the default SQLite storage can be resumed)")
        if trials != config["trials"]:
            run.write_json("config.json", {**config, "trials": trials})
    else:
        if strategy not in STRATEGIES:
            raise NasError(f"unknown black-box strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
        objectives = parse_objectives(objectives, evaluator)
        if strategy == "nsga2" and len(objectives) == 1 and "params" in getattr(evaluator, "provides", ("params",)):
            objectives = [objectives[0], "params"]
        make_pruner(pruner)  # check the name before creating the run folder
        if pruner != "none" and len(objectives) > 1:
            raise NasError(f"--pruner {pruner} works with one objective (Optuna prunes single-objective studies "
                           "only); drop --pruner or use one objective")
        check_pruner(pruner, evaluator)
        check_budget(budget_epochs, evaluator)
        if budget_epochs is not None and len(objectives) > 1:
            raise NasError("--budget-epochs counts the epochs each trial reports, which a multi-objective study "
                           "does not record; use --trials, or one objective")
        # every setting is checked before the run folder exists: the sampler's, the enqueued
        # genotypes (in this space) and a storage of the user's own
        sampler_kw = {"distinct": DEFAULT_DISTINCT, **{k: v for k, v in sampler_kw.items() if v is not None}}
        sampler = make_sampler(strategy, space, seed=seed, multi_objective=len(objectives) > 1, **sampler_kw)
        enqueue = list(enqueue)
        enqueued = [enqueue_item(item, space) for item in enqueue]
        study_storage = open_storage(storage) if storage is not None else None
        run_id = uuid.uuid4().hex
        study_name = study_name or f"{strategy}-{space.name}"
        config = {"backend": "optuna", "strategy": strategy, "space": space.name,
                  "space_definition": space.to_dict(),
                  "evaluator": {"class": f"{type(evaluator).__module__}.{type(evaluator).__name__}",
                                **evaluator.config()},
                  "objectives": list(objectives), "directions": objective_directions(objectives, evaluator),
                  "trials": trials, "seed": seed, "storage": storage, "study_name": study_name,
                  "pruner": pruner, "sampler": dict(sampler_kw), "budget_epochs": budget_epochs,
                  **({"warm_start": warm} if warm else {}),
                  "enqueue": [label for label, _ in enqueued], "enqueue_params": [params for _, params in enqueued],
                  "run_id": run_id}
        run = Run.create(strategy, config, out=out, name=space.name)
    objectives = list(objectives)
    directions = objective_directions(objectives, evaluator)
    url = storage or f"sqlite:///{run.path.resolve() / 'study.db'}"
    if resume is not None:
        check_study_file(url, run)
    multi = len(objectives) > 1
    max_epochs = getattr(evaluator, "epochs", None)

    previous_verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # one line per trial comes from us
    opened: optuna.storages.BaseStorage | None = None
    try:
        study_storage = open_storage(url) if resume is not None or storage is None else study_storage
        opened = study_storage
        probe = optuna.create_study(storage=study_storage, study_name=study_name, directions=directions,
                                    load_if_exists=True)
        if list(probe.directions) != [optuna.study.StudyDirection.MAXIMIZE if d == "maximize"
                                      else optuna.study.StudyDirection.MINIMIZE for d in directions]:
            raise NasError(f"study {study_name!r} in {url} optimises other objectives; "
                           "pass another --study-name")
        name_metrics(probe, objectives)
        interrupted = requeue_interrupted_trials(probe, study_storage)
        register_worker(probe, run_id)
        done = len(counted_trials(probe, run_id))
        # every trial seeds its own sampler (seed, trial index): a resumed run or a second worker
        # continues the search instead of replaying or forking the random stream of the first
        if resume is not None:  # a new search made its sampler when it checked the settings
            sampler = make_sampler(strategy, space, seed=seed, multi_objective=multi, **sampler_kw)
        study = optuna.load_study(study_name=study_name, storage=study_storage, sampler=sampler,
                                  pruner=make_pruner(pruner, max_resource=max_epochs))
        enqueue_once(study, run_id, list(zip(config.get("enqueue", []), config.get("enqueue_params", []))))
        board = TrialBoard(run.path, objectives, directions, **board_progress(
            study, run_id, objectives[0], directions[0], logged=run.read_records("metrics.jsonl")))
        repair_trial_log(run, study, run_id, board=board)
        remaining = max(0, trials - done)
        if progress:
            what = f"resuming {run.path}: {done} of {trials} trials done" if resume else f"run folder {run.path}"
            goals = ", ".join(f"{d} {o}" for o, d in zip(objectives, directions))
            print(f"{what}; study {study_name!r} in {url}; {strategy} on {space.name}: {goals}")
            if interrupted:
                print(f"trials {', '.join(map(str, interrupted))} were left running by a stopped process: "
                      "they run again")
        objective = make_objective(space, evaluator, objectives, workdir=run.path / "trials",
                                   trial_attrs={"run": run_id, "worker": _worker_id()}, board=board)
        logger = _TrialLogger(run, objectives, directions, progress=progress, board=board)
        callbacks: list[Callable[[optuna.Study, FrozenTrial], None]] = [logger]
        budget = None
        if budget_epochs is not None:
            budget = EpochBudget(budget_epochs, run_id)
            callbacks.append(budget)
            if budget.spent(study) >= budget_epochs:
                remaining = 0
        try:
            study.optimize(objective, n_trials=remaining, callbacks=callbacks, gc_after_trial=False)
        except KeyboardInterrupt:
            if progress:
                print(f"search interrupted; continue it with: nas search --resume {run.path}", file=sys.stderr)
            raise
        finally:
            result = write_outputs(run, study, space, objectives)
            board.close()
            run.close()
        if progress:
            _print_summary(result, objectives)
            if budget is not None:
                print(f"epochs trained: {budget.spent(study)} (budget {budget_epochs})")
    finally:
        if isinstance(opened, optuna.storages.RDBStorage):
            # the study's file is closed on return (SQLite's -wal / -shm files go with the last
            # connection); result.study still works, opening a connection when asked
            opened.remove_session()
            opened.engine.dispose()
        optuna.logging.set_verbosity(previous_verbosity)
    return result


class EpochBudget:
    """Optuna callback: stop the study once run ``run_id``'s trials have reported ``budget``
    epochs in all (a trial reports each epoch it trains, so a pruned trial counts what it ran)."""

    def __init__(self, budget: int, run_id: str) -> None:
        self.budget = budget
        self.run_id = run_id

    def spent(self, study: optuna.Study) -> int:
        return sum(len(t.intermediate_values) for t in counted_trials(study, self.run_id))

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if self.spent(study) >= self.budget:
            study.stop()


def trial_log_record(trial: FrozenTrial, complete: Sequence[FrozenTrial], directions: Sequence[str]) -> dict[str, Any]:
    """The ``metrics.jsonl`` record of a finished trial; ``complete`` are the study's complete
    trials, of which those up to this trial's number give the best so far (one objective) or
    the size of the Pareto front (several)."""
    metrics = trial.user_attrs.get("metrics", {})
    record: dict[str, Any] = {"trial": trial.number, "state": trial.state.name,
                              "genotype": trial.user_attrs.get("short", "")}
    record.update({k: v for k, v in metrics.items() if k not in record})
    if trial.state == TrialState.PRUNED:
        record["pruned_at_epoch"] = trial.last_step
    if "fail_reason" in trial.user_attrs:
        record["fail_reason"] = trial.user_attrs["fail_reason"]
    if trial.duration is not None:
        record["seconds"] = round(trial.duration.total_seconds(), 3)
    earlier = [t for t in complete if t.number <= trial.number and t.values is not None]
    if earlier and len(directions) == 1:
        pick = max if directions[0] == "maximize" else min
        record["best_so_far"] = pick(t.values[0] for t in earlier)
    elif earlier:
        record["pareto_size"] = len(pareto_front([t.values for t in earlier], directions))
    return record


def _directions(study: optuna.Study) -> list[str]:
    return ["maximize" if d == optuna.study.StudyDirection.MAXIMIZE else "minimize" for d in study.directions]


def board_progress(study: optuna.Study, run_id: str, objective: str, direction: str, *,
                   logged: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """What a resumed run's :class:`TrialBoard` continues from: ``finished``, the trials of run
    ``run_id`` that were logged (``logged``: the records of ``metrics.jsonl``), and ``best``,
    the best ``objective`` among those that ran to the end."""
    numbers = {record.get("trial") for record in logged}
    trials = [t for t in counted_trials(study, run_id) if t.number in numbers]
    values = [float(t.user_attrs["metrics"][objective]) for t in trials if t.state == TrialState.COMPLETE
              and finite(t.user_attrs.get("metrics", {}).get(objective))]
    best = (max if direction == "maximize" else min)(values) if values else None
    return {"finished": len(trials), "best": best}


def repair_trial_log(run: Run, study: optuna.Study, run_id: str, *, board: TrialBoard | None = None) -> list[int]:
    """Make ``metrics.jsonl`` hold every finished trial of this run once: drop a line a kill
    tore and repeated trials, and add the trials that finished in the study but were never
    logged (killed between telling the study and logging), also to ``board``. Returns the trial
    numbers added."""
    path = run.path / "metrics.jsonl"
    text = path.read_bytes() if path.exists() else b""
    kept: dict[int, dict[str, Any]] = {}
    for record in run.read_records("metrics.jsonl"):
        if isinstance(record.get("trial"), int):
            kept.setdefault(record["trial"], record)
    missing = [t for t in counted_trials(study, run_id) if t.number not in kept]
    lines = [line for line in text.splitlines() if line.strip()]
    if not missing and len(kept) == len(lines) and (not text or text.endswith(b"\n")):
        return []  # nothing torn, repeated or missing
    run.write_records("metrics.jsonl", list(kept.values()))
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    for trial in sorted(missing, key=lambda t: t.number):
        run.log(trial_log_record(trial, complete, _directions(study)))
        if board is not None:
            _end_on_board(board, trial)
    return [t.number for t in missing]


def _end_on_board(board: TrialBoard, trial: FrozenTrial) -> None:
    genotype = trial.user_attrs.get("genotype")
    board.end(trial.number, _STATUS[trial.state], trial.user_attrs.get("metrics", {}),
              Genotype.from_dict(genotype, source=f"trial {trial.number}") if genotype is not None else None)


def enqueue_item(item: str | Genotype, space: SearchSpace) -> tuple[str, dict[str, Any]]:
    """``(label, trial parameters)`` of a genotype to evaluate first, checked against ``space``."""
    label = item if isinstance(item, str) else short_form(item)
    try:
        genotype = item if isinstance(item, Genotype) else resolve_genotype(item)
        return label, genotype_to_params(genotype, space)
    except NasError as exc:
        raise NasError(f"--enqueue {label}: {exc}") from None


class _TrialLogger:
    """Optuna callback: one ``metrics.jsonl`` record and one printed line per finished trial,
    and its end on the TensorBoard ``board``."""

    def __init__(self, run: Run, objectives: Sequence[str], directions: Sequence[str], *, progress: bool,
                 board: TrialBoard | None = None) -> None:
        self.run = run
        self.objectives = list(objectives)
        self.directions = list(directions)
        self.progress = progress
        self.board = board

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        kill_point("blackbox.after_tell")
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        record = trial_log_record(trial, complete, self.directions)
        best_text = ""
        if len(self.objectives) == 1:
            best = study.best_trial if complete else None
            if best is not None:
                best_text = f"best {self.objectives[0]} {best.value:.4g} (trial {best.number})"
                if trial.number == best.number:
                    self.run.write_json("genotype.json", best.user_attrs.get("genotype"))
        else:
            best_text = f"pareto front {record['pareto_size']}" if "pareto_size" in record else ""
        self.run.log(record)
        if self.board is not None:
            _end_on_board(self.board, trial)
        kill_point("blackbox.after_log")
        if self.progress:
            metrics = trial.user_attrs.get("metrics", {})
            shown = headline(metrics, self.objectives)
            if trial.state == TrialState.COMPLETE:
                status = shown
            elif trial.state == TrialState.PRUNED:
                status = f"pruned after epoch {trial.last_step}"
            else:
                status = f"FAILED: {trial.user_attrs.get('fail_reason', 'see the log')}"
            print(f"trial {trial.number:4d} | {trial.user_attrs.get('short', '')} | {status} | {best_text}",
                  flush=True)


def write_outputs(run: Run, study: optuna.Study, space: SearchSpace,
                  objectives: Sequence[str]) -> BlackboxResult:
    """Write trials.csv, the best genotype / Pareto set and the plots of ``study`` into ``run``."""
    outcome = write_results(run, [_record(t, space) for t in study.get_trials(deepcopy=False, states=_FINISHED)],
                            objectives, _directions(study))
    return BlackboxResult(run.path, study, outcome.genotype, outcome.metrics, outcome.pareto)


_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
_STATUS = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned", TrialState.FAIL: "fail"}


def _record(trial: FrozenTrial, space: SearchSpace) -> TrialRecord:
    try:
        genotype = trial_genotype(trial, space)
    except NasError:  # failed before a genotype was sampled
        genotype = None
    columns: dict[str, Any] = {}
    if trial.state == TrialState.PRUNED:
        columns["epoch"] = trial.last_step
    if trial.duration is not None:
        columns["seconds"] = round(trial.duration.total_seconds(), 3)
    columns["error"] = trial.user_attrs.get("fail_reason", "")
    return TrialRecord(trial.number, _STATUS[trial.state], genotype, dict(trial.user_attrs.get("metrics", {})),
                       columns, {"params": trial.params})


def _print_summary(result: BlackboxResult, objectives: Sequence[str]) -> None:
    study = result.study
    states = [t.state for t in study.get_trials(deepcopy=False)]
    counts = ", ".join(f"{states.count(s)} {s.name.lower()}" for s in
                       (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL) if states.count(s))
    print(f"study: {len(states)} trials ({counts or 'none finished'})")
    if result.genotype is None:
        print("no trial completed; see fail_reason in metrics.jsonl")
        return
    print_best(result.path, result.genotype, result.metrics, result.pareto, objectives)


def load_space_definition(config: dict[str, Any]) -> SearchSpace:
    """The space a run searched, from its ``config.json`` (even if the YAML file moved)."""
    if "space_definition" in config:
        return space_from_dict(config["space_definition"], source=f"run config ({config.get('space')})")
    return load_space(config["space"])
