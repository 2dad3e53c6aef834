"""Ray Tune backend: a real local Ray (2 CPUs) with tiny trials.

One Ray starts for the whole module. Trials score NAS-Bench-201 cells with a synthetic
evaluator whose learning curve rises towards a quality set by the cell's ops, so that ASHA has
clearly different curves to compare; it sleeps briefly per epoch and writes a line per start
into its folder, which shows whether a trial ran again.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("ray.tune")

from nas.errors import NasError
from nas.evaluators.base import Evaluator, Report
from nas.genotype import Genotype, from_nb201_string, to_nb201_string
from nas.strategies.blackbox.ray_cluster import RayConnection, connect_ray
from nas.strategies.blackbox.ray_tune import search_ray
from nas.strategies.blackbox.results import pareto_front

REPO = Path(__file__).resolve().parent.parent
OP_QUALITY = {"none": 0.0, "skip_connect": 0.2, "avg_pool_3x3": 0.4, "nor_conv_1x1": 0.7, "nor_conv_3x3": 1.0}
GOOD = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
RAISES = "|avg_pool_3x3~0|+|none~0|skip_connect~1|+|none~0|none~1|avg_pool_3x3~2|"
DIVERGES = "|nor_conv_1x1~0|+|skip_connect~0|none~1|+|avg_pool_3x3~0|none~1|skip_connect~2|"


def quality(genotype: Genotype) -> float:
    ops = [op for _, cell in genotype.cells for node in cell.nodes for op, _ in node]
    return sum(OP_QUALITY[op] for op in ops) / len(ops)


class CurveEvaluator(Evaluator):
    """val_acc after epoch e is quality * (1 - 0.5**e); ``faults`` maps arch strings to
    ``"raise"`` or ``"nan"`` (at epoch 2)."""

    objective = "val_acc"
    space = "nb201"
    provides = ("val_acc", "params")
    reports_epochs = True

    def __init__(self, epochs: int = 8, sleep: float = 0.05, faults: dict[str, str] | None = None,
                 resumable: bool = False) -> None:
        self.epochs = epochs
        self.sleep = sleep
        self.faults = dict(faults or {})
        self.resumable = resumable  # keeps its last epoch in epoch.txt and continues after it

    def can_continue(self, workdir: Path) -> bool:
        return self.resumable and (workdir / "epoch.txt").is_file()

    def evaluate(self, genotype: Genotype, *, report: Report | None = None,
                 workdir: Path | None = None) -> dict[str, Any]:
        assert workdir is not None
        workdir.mkdir(parents=True, exist_ok=True)
        first = int((workdir / "epoch.txt").read_text()) + 1 if self.can_continue(workdir) else 1
        with open(workdir / "starts.txt", "a") as f:
            f.write("start\n" if first == 1 else f"continue at {first}\n")
        fault = self.faults.get(to_nb201_string(genotype))
        value = quality(genotype) * (1 - 0.5 ** (first - 1))
        for epoch in range(first, self.epochs + 1):
            time.sleep(self.sleep)
            value = quality(genotype) * (1 - 0.5 ** epoch)
            if fault == "raise" and epoch == 2:
                raise RuntimeError("synthetic failure in epoch 2")
            if fault == "nan" and epoch == 2:
                value = float("nan")
            if self.resumable:
                (workdir / "epoch.txt").write_text(str(epoch))
            if report is not None:
                report(epoch, {"val_acc": value})
        convs = sum(op.startswith("nor_conv") for _, c in genotype.cells for n in c.nodes for op, _ in n)
        return {"val_acc": value, "params": 1000 + 100 * convs}

    def config(self) -> dict[str, Any]:
        return {"name": "curve", "epochs": self.epochs}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    """A local Ray with 2 CPUs and its dashboard; the token lives in a temporary file."""
    import ray

    with pytest.MonkeyPatch.context() as mp:
        # every variable the backend sets is registered here, so it is restored afterwards
        mp.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path_factory.mktemp("ray-auth") / "token"))
        mp.delenv("RAY_AUTH_TOKEN", raising=False)
        mp.delenv("RAY_ADDRESS", raising=False)
        mp.setenv("RAY_AUTH_MODE", "token")
        mp.setenv("PYTHONPATH", os.environ.get("PYTHONPATH", ""))
        mp.setenv("RAY_CHDIR_TO_TRIAL_DIR", "0")
        mp.setenv("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
        connection = connect_ray(num_cpus=2, object_store_memory=200 * 2**20, dashboard_port=_free_port(),
                                 log_to_driver=False)
        try:
            yield connection
        finally:
            ray.shutdown()


@pytest.fixture(scope="module")
def asha_run(cluster: RayConnection, tmp_path_factory: pytest.TempPathFactory):
    """8 random trials x 8 epochs under ASHA (grace 1, factor 2)."""
    out = tmp_path_factory.mktemp("asha") / "run"
    return search_ray("nb201", CurveEvaluator(epochs=8), strategy="random", trials=8, seed=0, out=out, reuse_actors=True,
                      progress=False)


def test_asha_stops_poor_trials_early_and_keeps_the_best(asha_run) -> None:
    table = asha_run.trials
    assert len(table) == 8
    stopped = table[table["status"] == "stopped"]
    complete = table[table["status"] == "complete"]
    assert len(stopped) >= 1 and len(complete) >= 1
    assert (stopped["epoch"] < 8).all()
    assert (complete["epoch"] == 8).all()
    # curves never cross, so the best cell is never stopped: the result is the best of all 8
    qualities = [quality(Genotype.from_json(g)) for g in table["genotype_json"]]
    assert quality(asha_run.genotype) == max(qualities)
    assert asha_run.metrics["val_acc"] == pytest.approx(max(qualities) * (1 - 0.5 ** 8))
    assert asha_run.metrics["params"] >= 1000  # the evaluator's final metrics reached the result


def test_run_folder_holds_the_usual_outputs(asha_run) -> None:
    path = asha_run.path
    config = json.loads((path / "config.json").read_text())
    assert config["backend"] == "ray" and config["scheduler"] == "asha" and config["max_epochs"] == 8
    assert (path / "versions.json").is_file()
    genotype = Genotype.load(path / "genotype.json").validate("nb201")
    assert genotype == asha_run.genotype
    best = json.loads((path / "best.json").read_text())
    assert best["values"]["val_acc"] == pytest.approx(asha_run.metrics["val_acc"])
    assert len((path / "trials.csv").read_text().strip().splitlines()) == 9
    assert len((path / "metrics.jsonl").read_text().splitlines()) == 8
    assert (path / "history.png").stat().st_size > 1000
    log = [json.loads(line) for line in (path / "tune-trials.jsonl").read_text().splitlines()]
    assert sorted(r["number"] for r in log if r["event"] == "start") == list(range(8))
    ends = {r["number"]: r for r in log if r["event"] == "end"}
    assert sorted(ends) == list(range(8))
    assert {r["status"] for r in ends.values()} == {"complete", "stopped"}
    for number, end in ends.items():  # the log says what trials.csv says, curve included
        row = asha_run.trials[asha_run.trials["trial"] == number].iloc[0]
        assert end["status"] == row["status"] and end["metrics"]["val_acc"] == pytest.approx(row["val_acc"])
        epochs = [point[1] for point in end["curve"]]  # a complete trial's final report repeats its last epoch
        assert epochs == list(range(1, int(row["epoch"]) + 1)) + ([8] if end["status"] == "complete" else [])
    # Tune's files per trial under tune/trial_NNNN, the evaluator's own folder trials/NNNN, and one
    # TensorBoard run per trial (Tune's own event files are left out) next to the search's
    assert sorted(p.name for p in (path / "tune").glob("trial_*")) == [f"trial_{n:04d}" for n in range(8)]
    assert not list((path / "tune").rglob("events.out.tfevents*"))
    for number in range(8):
        assert (path / "tune" / f"trial_{number:04d}" / "result.json").is_file()
        assert (path / "trials" / f"{number:04d}" / "starts.txt").read_text() == "start\n"
        assert list((path / "tensorboard" / f"trial-{number:04d}").glob("events.out.tfevents*"))
    assert list((path / "tensorboard" / "search").glob("events.out.tfevents*"))
    rows = asha_run.trials
    assert list(rows["path"]) == [str(path.resolve() / "trials" / f"{n:04d}") for n in range(8)]


def test_dashboard_lists_the_trials_and_wants_the_token(cluster: RayConnection, asha_run) -> None:
    import ray

    assert cluster.token and cluster.dashboard_url.startswith("http://127.0.0.1:")
    token_file = Path(os.environ["RAY_AUTH_TOKEN_PATH"])
    assert token_file.read_text().strip() == cluster.token
    assert token_file.stat().st_mode & 0o077 == 0  # readable by its owner only
    text = cluster.instructions()
    assert cluster.dashboard_url in text and cluster.token in text and "Authorization: Bearer" in text

    status, body = cluster.get("/api/v0/actors?detail=1&limit=1000")
    assert status == 200
    job = ray.get_runtime_context().get_job_id()
    trial_actors = [a for a in body["data"]["result"]["result"]
                    if a.get("repr_name") == "nas_trial" and a.get("job_id") == job]
    assert trial_actors, "the dashboard should list the actors that ran this search's trials"
    status, jobs = cluster.get("/api/jobs/")
    assert status == 200 and any(j.get("job_id") == job for j in jobs)

    assert cluster.get("/api/jobs/", authenticated=False)[0] == 401
    intruder = dataclasses.replace(cluster, token="0" * 64)
    assert intruder.get("/api/v0/actors")[0] == 403


def test_errors_and_nan_are_recorded_and_two_objectives_give_a_pareto_set(cluster, tmp_path: Path,
                                                                            capsys) -> None:
    """Tune's own random search (tune.choice per decision), three enqueued cells first: one
    raises, one diverges to NaN, one is good; the search goes on past the failures."""
    evaluator = CurveEvaluator(epochs=3, sleep=0.01, faults={RAISES: "raise", DIVERGES: "nan"})
    result = search_ray("nb201", evaluator, strategy="random", ray_search="basic", trials=5, seed=3, reuse_actors=True,
                        objectives="val_acc,params", enqueue=[RAISES, GOOD, DIVERGES], out=tmp_path / "run",
                        progress=True)
    printed = capsys.readouterr().out
    assert f"ERROR    | {RAISES}" in printed and "complete | val_acc" in printed
    assert "5 trials: 3 complete, 0 stopped, 2 error" in printed

    table = result.trials
    by_arch = {to_nb201_string(Genotype.from_json(row["genotype_json"])): row for _, row in table.iterrows()}
    assert by_arch[RAISES]["status"] == "error"
    assert "synthetic failure in epoch 2" in by_arch[RAISES]["error"]
    assert by_arch[DIVERGES]["status"] == "error"
    assert "TrialDiverged" in by_arch[DIVERGES]["error"] and "nan" in by_arch[DIVERGES]["error"]
    assert by_arch[GOOD]["status"] == "complete"
    assert "synthetic failure" in (result.path / "trials.csv").read_text()

    config = json.loads((result.path / "config.json").read_text())
    assert config["scheduler"] == "none"  # ASHA on one objective would cut Pareto members
    complete = table[table["status"] == "complete"]
    values = complete[["val_acc", "params"]].astype(float).values.tolist()
    expected = {int(complete.iloc[i]["trial"]) for i in pareto_front(values, ["maximize", "minimize"])}
    members = json.loads((result.path / "pareto.json").read_text())["members"]
    assert {m["trial"] for m in members} == expected
    for member in members:
        Genotype.load(result.path / member["file"]).validate("nb201")
    assert (result.path / "pareto.png").is_file()
    # GOOD has the best val_acc a cell can reach here, so it leads the front and is the result
    assert result.genotype == from_nb201_string(GOOD)


class Payload:
    """Unpickling this writes ``marker``: what a crafted run folder would do to ``pickle.load``."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('unpickled')",)


def plant_payloads(run: Path, marker: Path) -> None:
    """Every pickle Tune would read to restore ``run/tune`` (tuner, searcher, trials, errors, the
    experiment state's pickled fields), and a ``tune-2`` experiment made to be restored next."""
    payload = pickle.dumps(Payload(marker))
    state = json.dumps({"trial_data": [[json.dumps({"config": {"_type": "CLOUDPICKLE_FALLBACK",
                                                               "value": payload.hex()}}), "{}"]],
                        "runner_data": {"_type": "CLOUDPICKLE_FALLBACK", "value": payload.hex()}})
    for experiment in (run / "tune", run / "tune-2"):
        experiment.mkdir(exist_ok=True)
        pickles = [*experiment.glob("searcher-state-*.pkl"), *experiment.glob("trial_*/*.pkl"),
                   experiment / "tuner.pkl", experiment / "searcher-state-2099-01-01_00-00-00.pkl",
                   experiment / "callback-states-2099-01-01_00-00-00.pkl"]
        for path in pickles:
            path.write_bytes(payload)
        for path in [*experiment.glob("experiment_state-*.json"), experiment / "experiment_state-2099-01-01_00-00-00.json"]:
            path.write_text(state)
    assert not marker.exists()


def _log(run: Path) -> list[dict[str, Any]]:
    path = run / "tune-trials.jsonl"
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:  # caught in mid-write
            pass
    return records


def _uninterrupted_tpe_genotypes(seed: int, count: int) -> list[Genotype]:
    """What a TPE search with this seed proposes, one trial at a time (its first 10 are its startup
    trials, each drawn from the trial's own seed)."""
    import optuna

    from nas.strategies.blackbox.optuna_search import make_sampler
    from nas.strategies.blackbox.sampling import suggest_genotype

    study = optuna.create_study(sampler=make_sampler("tpe", "nb201", seed=seed), direction="maximize")
    genotypes = []
    for _ in range(count):
        trial = study.ask()
        genotypes.append(suggest_genotype(trial, "nb201"))
        study.tell(trial, quality(genotypes[-1]))
    return genotypes


def test_killed_search_resumes_from_its_trial_log_and_never_unpickles_the_run_folder(
        cluster: RayConnection, tmp_path: Path) -> None:
    run = tmp_path / "run"
    script = ("import sys\n"
              "from tests.test_ray import CurveEvaluator\n"
              "from nas.strategies.blackbox.ray_tune import search_ray\n"
              "search_ray('nb201', CurveEvaluator(epochs=3, sleep=0.5, resumable=True), strategy='tpe', trials=6,\n"
              "           seed=1, reuse_actors=True,\n"
              "           scheduler='none', max_concurrent=1, out=sys.argv[1], address=sys.argv[2], progress=False)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen([sys.executable, "-c", script, str(run), cluster.address], cwd=REPO, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 150
        while True:  # killed while a trial runs, after two finished and an epoch of the third
            log = _log(run)
            ended = {r["number"] for r in log if r["event"] == "end"}
            running = {r["number"] for r in log} - ended
            if len(ended) >= 2 and any((run / "trials" / f"{n:04d}" / "epoch.txt").is_file() for n in running):
                break
            if process.poll() is not None:
                pytest.fail("the search ended before it could be killed: " + process.stderr.read().decode()[-2000:])
            if time.time() > deadline:
                pytest.fail("no two trials finished within 150 s")
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
        process.stderr.close()
    log = _log(run)
    finished = {r["number"]: r["trial_id"] for r in log if r["event"] == "end"}
    unfinished = {r["number"] for r in log if r["event"] == "start"} - set(finished)
    assert len(finished) < 6 and unfinished
    marker = tmp_path / "unpickled.txt"
    plant_payloads(run, marker)

    interrupted = {n: int((run / "trials" / f"{n:04d}" / "epoch.txt").read_text()) for n in unfinished
                   if (run / "trials" / f"{n:04d}" / "epoch.txt").is_file()}
    assert interrupted
    result = search_ray("nb201", CurveEvaluator(epochs=3, sleep=0.5, resumable=True), strategy="tpe", trials=6,
                        resume=run, progress=False)
    assert not marker.exists(), "a pickle from the run folder was unpickled"
    table = result.trials
    assert list(table["trial"]) == list(range(6)) and (table["status"] == "complete").all()
    for number, trial_id in finished.items():  # kept, not run again
        row = table[table["trial"] == number].iloc[0]
        assert row["trial_id"] == trial_id
        assert (run / "trials" / f"{number:04d}" / "starts.txt").read_text() == "start\n"
        assert Path(row["tune_path"]).parent.name == "tune"
    # the resume ran in a fresh experiment (tune-2 was taken): the unfinished trials again, under their
    # own numbers and in their own folders, continuing after their last epoch; then the rest
    again = table[~table["trial"].isin(list(finished))]
    assert {Path(p).parent.name for p in again["tune_path"]} == {"tune-3"}
    assert sorted(p.name for p in (run / "tune-3").glob("trial_*")) == [f"trial_{n:04d}" for n in again["trial"]]
    ends = {r["number"]: r for r in _log(run) if r["event"] == "end"}
    for number in again["trial"]:
        starts = (run / "trials" / f"{number:04d}" / "starts.txt").read_text()
        if number in interrupted:
            assert starts == f"start\ncontinue at {interrupted[number] + 1}\n"
            if interrupted[number] < 3:  # its reports in the new experiment begin after the last epoch it had
                assert [p[1] for p in ends[number]["curve"]][0] == interrupted[number] + 1  # noqa: RUF015
        else:
            assert starts == "start\n"
    assert sorted(p.name for p in (run / "tensorboard").iterdir()) == ["search"] + [f"trial-{n:04d}" for n in range(6)]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    for number in interrupted:  # one TensorBoard run, each epoch once
        board = EventAccumulator(str(run / "tensorboard" / f"trial-{number:04d}"))
        board.Reload()
        assert [event.step for event in board.Scalars("val_acc")] == [1, 2, 3]
    assert (run / "tune" / "tuner.pkl").read_bytes() == pickle.dumps(Payload(marker))  # nothing deleted
    # every trial once, in the order an uninterrupted search proposes them
    expected = _uninterrupted_tpe_genotypes(seed=1, count=6)
    assert [Genotype.from_json(g) for g in table["genotype_json"]] == expected
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 6
    assert quality(Genotype.load(run / "genotype.json")) == max(quality(g) for g in expected)


@pytest.mark.parametrize("distinct", ["off", "function"])
@pytest.mark.parametrize("strategy", ["random", "tpe", "evolution", "local", "nsga2"])
def test_a_rebuilt_study_proposes_what_the_uninterrupted_one_does(strategy: str, distinct: str) -> None:
    """The study a resume rebuilds from the trial log (trial 0 was enqueued; trial 10 was running at
    the kill: it is asked again, with its own number and parameters) proposes what one
    uninterrupted study proposes."""
    import optuna

    from nas.space import load_space
    from nas.strategies.blackbox.optuna_search import make_sampler
    from nas.strategies.blackbox.ray_tune import TrialLog, rebuilt_study
    from nas.strategies.blackbox.sampling import genotype_to_params, suggest_genotype

    space = load_space("nb201")
    objectives = ["val_acc", "params"] if strategy == "nsga2" else ["val_acc"]
    directions = ["maximize", "minimize"][:len(objectives)]

    def sampler():
        return make_sampler(strategy, space, seed=5, population=4, sample_size=2, multi_objective=len(objectives) > 1,
                            distinct=distinct)

    def values(genotype: Genotype) -> list[float]:
        convs = sum(op.startswith("nor_conv") for _, c in genotype.cells for n in c.nodes for op, _ in n)
        return [quality(genotype), 1000.0 + 100 * convs][:len(objectives)]

    def tell(study, trial, genotype):
        study.tell(trial, values(genotype) if len(objectives) > 1 else values(genotype)[0])

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    reference = optuna.create_study(sampler=sampler(), directions=directions)
    reference.enqueue_trial(genotype_to_params(from_nb201_string(GOOD), space))  # --enqueue GOOD
    genotypes = []
    for _ in range(14):
        trial = reference.ask()
        genotypes.append(suggest_genotype(trial, space))
        tell(reference, trial, genotypes[-1])

    log = TrialLog()
    for number, genotype in enumerate(genotypes[:11]):
        record = {"event": "end", "number": number, "config": genotype_to_params(genotype, space), "status": "complete",
                  "metrics": dict(zip(objectives, values(genotype))), "curve": [[1, 1, quality(genotype)]]}
        (log.finished if number < 10 else log.unfinished)[number] = record
    the_sampler = sampler()
    storage, running = rebuilt_study(log, space, the_sampler, objectives, directions, enqueued=1)
    study = optuna.load_study(study_name="optuna", storage=storage, sampler=the_sampler)
    assert [t.number for t in running] == [10]
    assert suggest_genotype(running[0], space) == genotypes[10]
    tell(study, running[0], genotypes[10])
    for expected in genotypes[11:]:
        trial = study.ask()
        genotype = suggest_genotype(trial, space)
        assert genotype == expected
        tell(study, trial, genotype)


def test_a_run_folder_without_a_sound_trial_log_is_refused_before_anything_runs(asha_run, tmp_path: Path) -> None:
    marker = tmp_path / "unpickled.txt"
    evaluator = CurveEvaluator(epochs=8)
    # made with Tune's own experiment state only: refused, nothing unpickled
    legacy = tmp_path / "legacy"
    shutil.copytree(asha_run.path, legacy)
    (legacy / "tune-trials.jsonl").unlink()
    config = json.loads((legacy / "config.json").read_text())
    del config["trial_log"]
    (legacy / "config.json").write_text(json.dumps(config))
    plant_payloads(legacy, marker)
    with pytest.raises(NasError, match="keeps no trial log .* never restored"):
        search_ray("nb201", evaluator, strategy="random", trials=8, resume=legacy, progress=False)
    # a damaged line is named, not guessed at
    damaged = tmp_path / "damaged"
    shutil.copytree(asha_run.path, damaged)
    with open(damaged / "tune-trials.jsonl", "a") as f:
        f.write(json.dumps({"event": "end", "number": 3, "config": {"normal.node1.from0": "nor_conv_9x9"},
                            "status": "complete", "metrics": {}}) + "\n")
    with pytest.raises(NasError, match=r"tune-trials.jsonl: line 17: 'config' is no genotype"):
        search_ray("nb201", evaluator, strategy="random", trials=8, resume=damaged, progress=False)
    with pytest.raises(NasError, match="has started 8 trials"):
        search_ray("nb201", evaluator, strategy="random", trials=7, resume=asha_run.path, progress=False)
    for folder in (legacy, damaged):
        assert not (folder / "tune-3").exists()
    assert not marker.exists()
    # a finished search resumed: nothing to run, the same outputs from the log
    done = tmp_path / "done"
    shutil.copytree(asha_run.path, done)
    (done / "trials.csv").unlink()
    result = search_ray("nb201", evaluator, strategy="random", trials=8, resume=done, progress=False)
    assert result.genotype == asha_run.genotype and len(result.trials) == 8
    assert (done / "trials.csv").read_text() == (asha_run.path / "trials.csv").read_text().replace(
        str(asha_run.path), str(done))  # the trials' folders are those of the run where it is now
    assert not (done / "tune-2").exists()


def test_mistakes_are_refused_with_a_clear_message(cluster, tmp_path: Path) -> None:
    evaluator = CurveEvaluator()
    with pytest.raises(NasError, match="--ray-search basic draws random genotypes only"):
        search_ray("nb201", evaluator, strategy="tpe", trials=2, ray_search="basic", out=tmp_path / "a")
    with pytest.raises(NasError, match="--scheduler"):
        search_ray("nb201", evaluator, strategy="random", trials=2, scheduler="fifo", out=tmp_path / "b")
    with pytest.raises(NasError, match="a trial asks for 3 CPU"):
        search_ray("nb201", evaluator, strategy="random", trials=2, cpus_per_trial=3, out=tmp_path / "c")
    assert not (tmp_path / "c").exists()  # refused before a run folder was made
    with pytest.raises(NasError, match="not a run folder"):
        search_ray("nb201", evaluator, strategy="random", trials=2, resume=tmp_path / "missing")


@pytest.mark.slow  # the command's job path runs by default in tests/test_ray_dashboard.py
def test_nas_search_backend_ray_on_the_nas_bench_201_tables(cluster, tmp_path: Path, capsys) -> None:
    from nas.cli import main
    from nas.genotype import resolve_genotype
    from nas.strategies.blackbox.distinct import function_key

    root = REPO.parent / "shared" / "data" / "nas-bench-201"
    if not (root / "nb201_12epoch_val_test.csv").is_file():
        pytest.skip(f"NAS-Bench-201 tables not present at {root} (see ../shared/data/README.md)")
    out = tmp_path / "run"
    common = ["search", "--backend", "ray", "--strategy", "evolution", "--space", "nb201", "--evaluator", "nb201",
              "--nb201-root", str(root)]
    assert main([*common, "--trials", "8", "--population", "4", "--sample-size", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"Ray dashboard: {cluster.dashboard_url}" in printed and cluster.token in printed
    assert "8 trials: 8 complete" in printed
    found = resolve_genotype(str(out))  # what nas train --genotype RUN reads
    best = json.loads((out / "best.json").read_text())
    with open(out / "trials.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert found.validate("nb201") == Genotype.from_dict(best["genotype"])
    assert best["values"]["val_acc"] == pytest.approx(max(float(r["val_acc"]) for r in rows))
    config = json.loads((out / "config.json").read_text())
    assert config["strategy"] == "evolution" and config["scheduler"] == "none"  # the table reports no epochs
    assert config["sampler"]["distinct"] == "function"
    assert len({function_key(from_nb201_string(r["genotype"])) for r in rows}) == 8

    first = {int(r["trial"]): r["trial_id"] for r in rows}

    # a resume may add trials: one more, in a new experiment; the first 8 stay as they were
    assert main([*common, "--resume", str(out), "--trials", "7"]) == 2
    assert "has started 8 trials (8 finished); pass --trials 8 or more" in capsys.readouterr().err
    assert main([*common, "--resume", str(out), "--trials", "9"]) == 0
    assert "9 trials: 9 complete" in capsys.readouterr().out
    with open(out / "trials.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["trial"]) for r in rows] == list(range(9))
    assert {int(r["trial"]): r["trial_id"] for r in rows[:8]} == first
    assert Path(rows[8]["tune_path"]).parent == out / "tune-2" and rows[8]["path"] == str(out / "trials" / "0008")
    assert json.loads((out / "config.json").read_text())["trials"] == 9



def test_the_command_refuses_what_a_ray_search_cannot_resume_or_take(asha_run, tmp_path: Path, capsys) -> None:
    from nas.cli import main

    root = REPO.parent / "shared" / "data" / "nas-bench-201"
    if not (root / "nb201_12epoch_val_test.csv").is_file():
        pytest.skip(f"NAS-Bench-201 tables not present at {root} (see ../shared/data/README.md)")
    common = ["search", "--backend", "ray", "--strategy", "evolution", "--space", "nb201", "--evaluator", "nb201",
              "--nb201-root", str(root)]
    # a run folder with Tune's experiment state but no trial log: one line, exit 2, nothing unpickled
    legacy = tmp_path / "legacy"
    (legacy / "tune").mkdir(parents=True)
    config = json.loads((asha_run.path / "config.json").read_text())
    del config["trial_log"]
    config["evaluator"] = {"name": "nb201", "root": str(root), "dataset": "cifar10"}
    (legacy / "config.json").write_text(json.dumps(config))
    marker = tmp_path / "unpickled.txt"
    plant_payloads(legacy, marker)
    assert main([*common, "--resume", str(legacy)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nas search: error: run ") and "no trial log" in err and len(err.splitlines()) == 1
    assert not marker.exists()
    assert main([*common, "--trials", "2", "--pruner", "sha", "--out", str(tmp_path / "other")]) == 2
    assert "--pruner belongs to --backend optuna" in capsys.readouterr().err
    optuna_backend = [arg for arg in common if arg not in ("--backend", "ray")]
    assert main([*optuna_backend, "--trials", "2", "--keep-ray", "--out", str(tmp_path / "kept")]) == 2
    assert "--keep-ray belongs to --backend ray" in capsys.readouterr().err and not (tmp_path / "kept").exists()


@pytest.mark.slow
def test_real_training_trials_report_every_epoch(cluster, tmp_path: Path) -> None:
    from nas.evaluators.training import TrainingEvaluator

    evaluator = TrainingEvaluator("digits", space="nb201", epochs=2, init_channels=4, batch_size=32, device="cpu",
                                  train_subset=128, val_subset=64)
    result = search_ray("nb201", evaluator, strategy="random", trials=2, scheduler="none", out=tmp_path / "run",
                        progress=False)
    table = result.trials
    assert (table["status"] == "complete").all() and (table["epoch"] == 2).all()
    assert (table["params"] > 0).all() and table["val_acc"].between(0, 1).all()
    for _, row in table.iterrows():
        train_run = Path(row["path"])
        assert len((train_run / "metrics.jsonl").read_text().splitlines()) == 2  # the trainer's own run folder
        progress = (Path(row["tune_path"]) / "progress.csv").read_text().splitlines()
        assert len(progress) == 1 + 3  # header, two epochs, the final report
