"""Black-box search on Optuna studies: sampling, strategies, persistence, failures, Pareto sets.

Most tests score NAS-Bench-201 cells with a synthetic evaluator (the mean "quality" of the
cell's ops), so they run without data; the NAS-Bench-201 table tests skip when
../shared/data/nas-bench-201 is absent.
"""
from __future__ import annotations

import csv
import itertools
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from nas.errors import NasError
from nas.evaluators.base import Evaluator, Report
from nas.genotype import (
    REFERENCES,
    CellGenotype,
    Genotype,
    from_nb201_string,
    random_genotype,
    resolve_genotype,
)
from nas.space import available_spaces, load_space
from nas.strategies.blackbox.evolution import (
    RegularizedEvolutionSampler,
    genotype_mutation,
)
from nas.strategies.blackbox.optuna_search import make_sampler, search_blackbox
from nas.strategies.blackbox.sampling import (
    genotype_to_params,
    param_choices,
    params_to_genotype,
    suggest_genotype,
)
from tests.conftest import shared_data

REPO = Path(__file__).resolve().parent.parent
NB201_OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
OP_QUALITY = {"none": 0.0, "skip_connect": 0.3, "avg_pool_3x3": 0.2, "nor_conv_1x1": 0.7, "nor_conv_3x3": 1.0}
OP_PARAMS = {"none": 0, "skip_connect": 0, "avg_pool_3x3": 0, "nor_conv_1x1": 1, "nor_conv_3x3": 9}

optuna.logging.set_verbosity(optuna.logging.WARNING)


def quality(genotype: Genotype) -> float:
    ops = [op for _, cell in genotype.cells for node in cell.nodes for op, _ in node]
    return sum(OP_QUALITY[op] for op in ops) / len(ops)


class SyntheticEvaluator(Evaluator):
    """val_acc = quality of the cell's ops; params = a made-up size; ``faults`` maps arch
    strings to "raise" or "nan"; ``sleep`` slows each evaluation (to kill a search midway);
    with a ``workdir`` it creates the trial's folder, which fails if a trial ran twice."""

    objective = "val_acc"
    space = "nb201"
    provides = ("val_acc", "params")

    def __init__(self, faults: dict[str, str] | None = None, sleep: float = 0.0) -> None:
        self.faults = dict(faults or {})
        self.sleep = sleep
        self.calls = 0

    def evaluate(self, genotype: Genotype, *, report: Report | None = None,
                 workdir: Path | None = None) -> dict[str, Any]:
        from nas.genotype import to_nb201_string

        self.calls += 1
        if workdir is not None:
            workdir.mkdir(parents=True, exist_ok=False)
            (workdir / "evaluated").write_text(f"{os.getpid()}\n")
        time.sleep(self.sleep)
        fault = self.faults.get(to_nb201_string(genotype))
        if fault == "raise":
            raise RuntimeError("synthetic crash")
        params = sum(OP_PARAMS[op] for _, cell in genotype.cells for node in cell.nodes for op, _ in node)
        return {"val_acc": float("nan") if fault == "nan" else quality(genotype), "params": params}


def all_nb201_genotypes() -> list[Genotype]:
    cells = []
    for ops in itertools.product(NB201_OPS, repeat=6):
        nodes = ((ops[0], 0),), ((ops[1], 0), (ops[2], 1)), ((ops[3], 0), (ops[4], 1), (ops[5], 2))
        cells.append(Genotype.from_cells("nb201", normal=CellGenotype(nodes, (3,))))
    return cells


def canonical(genotype: Genotype) -> Genotype:
    """Edges of every node sorted by source: the order sampling produces (sums commute)."""
    cells = tuple((name, CellGenotype(tuple(tuple(sorted(n, key=lambda e: e[1])) for n in c.nodes), c.concat))
                  for name, c in genotype.cells)
    return Genotype(genotype.space, cells, genotype.stages)


def user_space(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text("name: tiny\nkind: cell\nops: [none, skip_connect, conv_3x3, max_pool_3x3]\n"
                    "cell: {inputs: 1, nodes: 3, edges_per_node: 1, output: concat, types: [normal]}\n"
                    "network: {init_channels: 8, layers: 3, reduction: residual}\n")
    return path


# -- sampling ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", [*available_spaces(), "user"])
def test_sampling_gives_valid_genotypes_with_fixed_distributions(name: str, tmp_path: Path) -> None:
    space = load_space(user_space(tmp_path) if name == "user" else name)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen: dict[str, Any] = {}
    choices = param_choices(space)
    for _ in range(25):
        trial = study.ask()
        genotype = suggest_genotype(trial, space)
        genotype.validate(space)
        assert params_to_genotype(trial.params, space) == genotype
        for param, distribution in trial.distributions.items():
            assert seen.setdefault(param, distribution) == distribution  # one distribution per name
            assert tuple(distribution.choices) == choices[param]
        study.tell(trial, 0.0)
    if space.kind == "cell" and not space.dense:
        # the input set of a node is one categorical over combinations such as "0,2"
        last = space.inputs + space.nodes - 1
        inputs = seen[f"normal.node{last}.inputs"].choices
        assert len(inputs) == math.comb(last, space.num_edges(last)) and all("," in c or space.num_edges(last) == 1
                                                                             for c in inputs)


@pytest.mark.parametrize("name", list(REFERENCES))
def test_genotype_to_params_round_trips_through_enqueue(name: str) -> None:
    genotype = REFERENCES[name]
    space = load_space(genotype.space)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.enqueue_trial(genotype_to_params(genotype, space))
    other = random_genotype(space, seed=3)
    study.enqueue_trial(genotype_to_params(other, space))
    assert canonical(suggest_genotype(study.ask(), space)) == canonical(genotype)
    assert canonical(suggest_genotype(study.ask(), space)) == canonical(other)


def test_genotype_to_params_rejects_what_sampling_cannot_produce() -> None:
    darts = REFERENCES["DARTS_V2"]
    name, cell = darts.cells[0]
    nodes = (((("none", 0), ("sep_conv_3x3", 1))),) + cell.nodes[1:]
    with pytest.raises(NasError, match="op 'none' on edge 0->2 cannot be sampled"):
        genotype_to_params(Genotype(darts.space, ((name, CellGenotype(nodes, cell.concat)),) + darts.cells[1:]),
                           "darts")
    with pytest.raises(NasError, match="genotype is for space 'darts', not 'nb201'"):
        genotype_to_params(darts, "nb201")
    with pytest.raises(NasError, match="parameters lack 'normal.node1.from0'"):
        params_to_genotype({}, "nb201")


# -- evolution -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["darts", "nb201", "mobile"])
def test_evolution_children_are_one_mutation_of_a_population_member(name: str) -> None:
    space = load_space(name)
    population, sample_size = 8, 3
    sampler = RegularizedEvolutionSampler(population_size=population, sample_size=sample_size,
                                          mutate=genotype_mutation(space), seed=0)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    genotypes: list[Genotype] = []

    def objective(trial: optuna.Trial) -> float:
        genotype = suggest_genotype(trial, space)
        genotype.validate(space)  # every child stays inside the space
        genotypes.append(genotype)
        return float(len(str(genotype)) % 17)

    study.optimize(objective, n_trials=30)
    for n in range(population, 30):
        window = genotypes[n - population:n]  # aging: only the last P trials can be parents
        assert any(_one_mutation_apart(parent, genotypes[n], space) for parent in window), n


def _one_mutation_apart(parent: Genotype, child: Genotype, space) -> bool:
    """True when one op, one edge input, one block or one depth changed."""
    if space.kind == "chain":
        changed = [i for i, (a, b) in enumerate(zip(parent.stages, child.stages)) if a != b]
        if len(changed) != 1:
            return False
        a, b = parent.stages[changed[0]], child.stages[changed[0]]
        if len(a) != len(b):
            return a[:min(len(a), len(b))] == b[:min(len(a), len(b))]
        return sum(x != y for x, y in zip(a, b)) == 1
    diffs = 0
    for (_, pc), (_, cc) in zip(canonical(parent).cells, canonical(child).cells):
        for pn, cn in zip(pc.nodes, cc.nodes):
            diffs += sum(pe != ce for pe, ce in zip(pn, cn))
    return diffs == 1 or (diffs == 2 and space.edges_per_node == 2)  # an input moved past the other one


def test_evolution_reads_the_study_so_a_second_sampler_continues_it() -> None:
    storage = optuna.storages.InMemoryStorage()
    first = optuna.create_study(storage=storage, study_name="s", direction="maximize",
                                sampler=RegularizedEvolutionSampler(population_size=5, sample_size=2, seed=0))
    first.optimize(lambda t: quality(suggest_genotype(t, "nb201")), n_trials=5)
    # a fresh sampler (another worker, a resumed run) evolves from the stored population at once
    second = optuna.load_study(storage=storage, study_name="s",
                               sampler=RegularizedEvolutionSampler(population_size=5, sample_size=2, seed=1))
    second.optimize(lambda t: quality(suggest_genotype(t, "nb201")), n_trials=1)
    child = second.trials[-1].params
    assert min(sum(child[k] != t.params[k] for k in child) for t in first.trials[:5]) == 1


def test_evolution_rejects_bad_settings_and_several_objectives() -> None:
    with pytest.raises(NasError, match="sample size must be between 1 and the population size"):
        RegularizedEvolutionSampler(population_size=4, sample_size=5)
    with pytest.raises(NasError, match="evolution optimises one objective"):
        make_sampler("evolution", "nb201", multi_objective=True)


# -- strategies --------------------------------------------------------------------------------------
@pytest.mark.parametrize("strategy", ["random", "tpe", "evolution"])
def test_strategy_beats_the_median_cell_on_a_synthetic_score(strategy: str) -> None:
    median = sorted(quality(g) for g in all_nb201_genotypes())[15625 // 2]
    result = search_blackbox("nb201", SyntheticEvaluator(), strategy=strategy, trials=30, storage="memory",
                             seed=0, progress=False, population=10, sample_size=3)
    assert result.metrics["val_acc"] > median
    assert result.metrics["val_acc"] == max(t.value for t in result.study.trials)
    assert (result.path / "history.png").stat().st_size > 1000
    assert resolve_genotype(str(result.path)) == result.genotype  # ready for `nas train --genotype RUN`
    assert len((result.path / "metrics.jsonl").read_text().splitlines()) == 30


@pytest.mark.parametrize("strategy", ["random", "tpe", "evolution"])
def test_strategy_beats_the_median_on_the_nb201_table(strategy: str) -> None:
    from nas.evaluators.nb201_table import NB201TableEvaluator

    table = NB201TableEvaluator(shared_data("nas-bench-201"), dataset="cifar10")
    result = search_blackbox("nb201", table, strategy=strategy, trials=30, storage="memory", seed=0,
                             progress=False, population=10, sample_size=3)
    assert result.metrics["test_acc"] > table.median("test_acc")
    assert result.metrics["val_acc"] == max(t.user_attrs["metrics"]["val_acc"] for t in result.study.trials)


@pytest.mark.parametrize("strategy", ["random", "tpe", "evolution", "nsga2"])
def test_same_seed_same_trials(strategy: str) -> None:
    def arches(seed: int) -> list[dict]:
        result = search_blackbox("nb201", SyntheticEvaluator(), strategy=strategy, trials=15, storage="memory",
                                 seed=seed, progress=False, population=5)
        return [t.params for t in result.study.trials]

    first = arches(0)
    assert arches(0) == first
    assert arches(1) != first


def _suggest_and_score(trial: optuna.Trial) -> Any:
    genotype = suggest_genotype(trial, "nb201")
    values = SyntheticEvaluator().evaluate(genotype)
    return (values["val_acc"], values["params"]) if len(trial.study.directions) > 1 else values["val_acc"]


def _new_study(strategy: str, storage: Any, *, seed: int = 0) -> optuna.Study:
    multi = strategy == "nsga2"
    sampler = make_sampler(strategy, "nb201", seed=seed, population=4, sample_size=2, multi_objective=multi)
    return optuna.create_study(storage=storage, study_name="s", sampler=sampler, load_if_exists=True,
                               directions=["maximize", "minimize"] if multi else ["maximize"])


@pytest.mark.parametrize("strategy", ["random", "tpe", "evolution", "nsga2"])
def test_a_fresh_sampler_continues_a_study_as_one_process_would(strategy: str) -> None:
    """What makes a resumed search end as an uninterrupted one: every trial's suggestion is a
    function of the seed, the finished trials and the trial's index, not of the sampler object's
    past; a trial interrupted by Ctrl-C (FAIL, ``interrupted``) does not shift the ones after it."""
    whole = _new_study(strategy, optuna.storages.InMemoryStorage())
    whole.optimize(_suggest_and_score, n_trials=14)

    storage = optuna.storages.InMemoryStorage()
    _new_study(strategy, storage).optimize(_suggest_and_score, n_trials=6)
    cut = _new_study(strategy, storage)  # a new process
    trial = cut.ask()
    suggest_genotype(trial, "nb201")
    trial.set_user_attr("fail_reason", "interrupted (KeyboardInterrupt)")
    trial.set_user_attr("interrupted", True)
    cut.tell(trial, state=TrialState.FAIL)
    _new_study(strategy, storage).optimize(_suggest_and_score, n_trials=8)  # and another one
    resumed = [t for t in _new_study(strategy, storage).trials if t.state == TrialState.COMPLETE]
    assert [(t.params, t.values) for t in resumed] == [(t.params, t.values) for t in whole.trials]
    other = _new_study(strategy, optuna.storages.InMemoryStorage(), seed=1)
    other.optimize(_suggest_and_score, n_trials=14)
    assert [t.params for t in other.trials] != [t.params for t in whole.trials]


@pytest.mark.parametrize("strategy", ["random", "tpe", "evolution", "nsga2"])
def test_samplers_pickle_for_ray_tune(strategy: str) -> None:
    import pickle

    sampler = make_sampler(strategy, "nb201", seed=0, population=4, multi_objective=strategy == "nsga2")
    study = _new_study(strategy, optuna.storages.InMemoryStorage())
    study.sampler = sampler
    study.optimize(_suggest_and_score, n_trials=3)
    study.sampler = pickle.loads(pickle.dumps(sampler))  # Tune stores its searcher with pickle
    study.optimize(_suggest_and_score, n_trials=3)
    assert len(study.trials) == 6


def test_multi_objective_search_returns_a_non_dominated_set(tmp_path: Path) -> None:
    result = search_blackbox("nb201", SyntheticEvaluator(), strategy="nsga2", trials=40, out=tmp_path / "run",
                             storage="memory", seed=0, progress=False, population=10)
    front = [(m["val_acc"], m["params"]) for _, m in result.pareto]
    assert len(front) >= 2
    for a, b in itertools.permutations(front, 2):
        assert not (b[0] >= a[0] and b[1] <= a[1] and b != a), f"{b} dominates {a}"
    # nothing evaluated dominates a member of the front
    for t in result.study.get_trials(states=(TrialState.COMPLETE,)):
        point = (t.values[0], t.values[1])
        assert not any(point[0] >= a[0] and point[1] <= a[1] and point != a for a in front)
    saved = json.loads((tmp_path / "run" / "pareto.json").read_text())
    assert saved["objectives"] == ["val_acc", "params"] and len(saved["members"]) == len(front)
    for member in saved["members"]:
        Genotype.load(tmp_path / "run" / member["file"]).validate("nb201")
    assert (tmp_path / "run" / "pareto.png").exists()
    assert result.metrics["val_acc"] == max(a for a, _ in front)  # genotype.json: the most accurate member


def test_objectives_are_checked_against_the_evaluator() -> None:
    with pytest.raises(NasError, match="objective 'macs' is not measured by this evaluator"):
        search_blackbox("nb201", SyntheticEvaluator(), strategy="nsga2", trials=2, storage="memory",
                        objectives="val_acc,macs", progress=False)
    with pytest.raises(NasError, match="--pruner sha works with one objective"):
        search_blackbox("nb201", SyntheticEvaluator(), strategy="tpe", trials=2, storage="memory",
                        objectives="val_acc,params", pruner="sha", progress=False)


# -- failures --------------------------------------------------------------------------------------
def test_failing_trials_are_recorded_and_the_search_goes_on() -> None:
    bad = ["|none~0|+|none~0|none~1|+|none~0|none~1|none~2|",
           "|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|"]
    # the first two trials are enqueued: a crash and a NaN
    evaluator = SyntheticEvaluator(faults={bad[0]: "raise", bad[1]: "nan"})
    result = search_blackbox("nb201", evaluator, strategy="random", trials=6, storage="memory", seed=0,
                             enqueue=bad, progress=False)
    trials = result.study.trials
    assert len(trials) == 6 and evaluator.calls == 6
    assert trials[0].state == TrialState.FAIL and trials[0].user_attrs["fail_reason"] == "RuntimeError: synthetic crash"
    assert trials[1].state == TrialState.FAIL and trials[1].user_attrs["fail_reason"] == "objective val_acc is nan"
    assert all(t.state == TrialState.COMPLETE for t in trials[2:])
    records = [json.loads(line) for line in (result.path / "metrics.jsonl").read_text().splitlines()]
    assert [r["state"] for r in records[:2]] == ["FAIL", "FAIL"] and "fail_reason" in records[0]


def test_a_user_mistake_in_the_evaluator_stops_the_search() -> None:
    class Broken(SyntheticEvaluator):
        def evaluate(self, genotype, *, report=None, workdir=None):
            raise NasError("data set folder /nowhere not found")

    with pytest.raises(NasError, match="/nowhere not found"):
        search_blackbox("nb201", Broken(), strategy="random", trials=5, storage="memory", progress=False)


def test_pruning_stops_poor_trials_on_per_epoch_reports() -> None:
    class Curves(SyntheticEvaluator):
        reports_epochs = True

        def evaluate(self, genotype, *, report=None, workdir=None):
            q = quality(genotype)
            for epoch in range(1, 13):
                report(epoch, {"val_acc": q * (1 - 0.5 ** epoch)})
            return {"val_acc": q, "params": 0}

    result = search_blackbox("nb201", Curves(), strategy="random", trials=25, storage="memory", seed=0,
                             pruner="sha", progress=False)
    pruned = result.study.get_trials(states=(TrialState.PRUNED,))
    complete = result.study.get_trials(states=(TrialState.COMPLETE,))
    assert pruned and complete
    assert all(t.last_step < 12 for t in pruned)  # stopped before the last epoch
    assert max(t.value for t in complete) >= max(t.value for t in pruned)


# -- persistence -----------------------------------------------------------------------------------
WORKER = """
import sys
from nas.strategies.blackbox.optuna_search import search_blackbox
from tests.test_optuna import SyntheticEvaluator
out, trials, seed, storage = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
search_blackbox("nb201", SyntheticEvaluator(sleep=float(sys.argv[5])), strategy="random", trials=trials, out=out,
                seed=seed, storage=None if storage == "-" else storage, study_name="shared", progress=False)
"""


def _worker(out: Path, trials: int, seed: int, storage: str = "-", sleep: float = 0.0) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", WORKER, str(out), str(trials), str(seed), storage, str(sleep)],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_a_killed_search_resumes_without_losing_a_trial(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = _worker(out, 30, 0, sleep=0.5)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        # kill while a trial is being evaluated (its worker recorded), after a few have finished
        log = out / "metrics.jsonl"
        if log.exists() and len(log.read_text().splitlines()) >= 3:
            running = optuna.load_study(study_name="shared", storage=f"sqlite:///{out / 'study.db'}").get_trials(
                states=(TrialState.RUNNING,))
            if running and "worker" in running[0].user_attrs:
                break
        time.sleep(0.1)
    assert proc.poll() is None, proc.communicate()[0]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    storage = f"sqlite:///{out / 'study.db'}"
    before = optuna.load_study(study_name="shared", storage=storage).trials
    finished = {t.number: t.params for t in before if t.state == TrialState.COMPLETE}
    assert len(finished) >= 3 and any(t.state == TrialState.RUNNING for t in before)

    running = [t for t in before if t.state == TrialState.RUNNING]

    result = search_blackbox("nb201", SyntheticEvaluator(), strategy="random", trials=30, resume=out, progress=False)
    trials = result.study.trials
    assert {t.number: t.params for t in trials if t.number in finished} == finished  # nothing lost
    # the interrupted trial ran again under its own number, with the parameters it had drawn
    requeued = [t for t in trials if t.user_attrs.get("requeued")]
    assert [t.number for t in requeued] == [t.number for t in running]
    assert requeued[0].state == TrialState.COMPLETE
    assert all(requeued[0].params[k] == v for k, v in running[0].params.items())
    assert (out / "trials" / f"{requeued[0].number:04d}" / "evaluated").read_text() == f"{os.getpid()}\n"
    assert len(trials) == 30 and all(t.state == TrialState.COMPLETE for t in trials)
    logged = [json.loads(line)["trial"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert sorted(logged) == list(range(30))


def test_two_workers_search_one_sqlite_study_together(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    other = _worker(tmp_path / "worker0", 8, 0, storage=storage, sleep=0.2)
    deadline = time.time() + 120
    while time.time() < deadline and other.poll() is None:  # join once the other worker is evaluating
        if (tmp_path / "worker0" / "trials").exists():
            break
        time.sleep(0.1)
    search_blackbox("nb201", SyntheticEvaluator(sleep=0.1), strategy="random", trials=8, out=tmp_path / "worker1",
                    seed=0, storage=storage, study_name="shared", progress=False)
    output = other.communicate(timeout=120)[0]
    assert other.returncode == 0, output
    study = optuna.load_study(study_name="shared", storage=storage)
    assert len(study.trials) == 16 and all(t.state == TrialState.COMPLETE for t in study.trials)
    # every trial was evaluated exactly once: its folder was created by one worker only
    folders = [p for i in range(2) for p in (tmp_path / f"worker{i}" / "trials").iterdir()]
    assert sorted(int(p.name) for p in folders) == list(range(16))
    by_worker: dict[str, list] = {}
    for t in study.trials:
        by_worker.setdefault(t.user_attrs["worker"], []).append(t.params)
    assert sorted(len(v) for v in by_worker.values()) == [8, 8]
    first, second = by_worker.values()
    assert first != second  # same seed, yet the second worker drew its own genotypes


def test_a_study_in_memory_cannot_be_resumed(tmp_path: Path) -> None:
    search_blackbox("nb201", SyntheticEvaluator(), strategy="random", trials=2, storage="memory",
                    out=tmp_path / "run", progress=False)
    with pytest.raises(NasError, match="kept its study in memory, so it cannot be resumed"):
        search_blackbox("nb201", SyntheticEvaluator(), strategy="random", trials=4, resume=tmp_path / "run",
                        progress=False)


# -- command line ----------------------------------------------------------------------------------
def test_nas_search_command_on_the_table(tmp_path: Path, capsys) -> None:
    from nas.cli import main

    root = shared_data("nas-bench-201")
    out = tmp_path / "run"
    code = main(["search", "--strategy", "evolution", "--space", "nb201", "--evaluator", "nb201",
                 "--nb201-root", str(root), "--nb201-dataset", "cifar100", "--trials", "12", "--population", "5",
                 "--sample-size", "2", "--enqueue", "NB201_RESNET", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert sum(line.startswith("trial ") for line in printed.splitlines()) == 12
    config = json.loads((out / "config.json").read_text())
    assert config["evaluator"]["dataset"] == "cifar100" and config["sampler"] == {"population": 5, "sample_size": 2, "distinct": "function"}
    study = optuna.load_study(study_name="evolution-nb201", storage=f"sqlite:///{out / 'study.db'}")
    assert study.trials[0].user_attrs["enqueued"] == "NB201_RESNET"
    assert Genotype.load(out / "genotype.json") == from_nb201_string(json.loads(
        (out / "best.json").read_text())["short"])
    with open(out / "trials.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["trial"]) for r in rows] == list(range(12)) and {r["status"] for r in rows} == {"complete"}
    assert json.loads((out / "best.json").read_text())["values"]["val_acc"] == max(float(r["val_acc"]) for r in rows)
    # resume with a larger budget: only the missing trials run
    assert main(["search", "--resume", str(out), "--trials", "15"]) == 0
    assert len(optuna.load_study(study_name="evolution-nb201", storage=f"sqlite:///{out / 'study.db'}").trials) == 15


def test_nas_search_command_errors_are_one_line(tmp_path: Path, capsys) -> None:
    from nas.cli import main

    code = main(["search", "--strategy", "tpe", "--space", "darts", "--evaluator", "nb201", "--out", str(tmp_path / "r")])
    assert code == 2
    assert "--evaluator nb201 scores cells of the nb201 space, not 'darts'; add --space nb201" in capsys.readouterr().err
    code = main(["search", "--strategy", "evolution", "--space", "nb201", "--evaluator", "nb201",
                 "--nb201-root", str(tmp_path / "missing"), "--out", str(tmp_path / "r2")])
    assert code == 2
    assert f"NAS-Bench-201 folder {tmp_path / 'missing'} not found" in capsys.readouterr().err
