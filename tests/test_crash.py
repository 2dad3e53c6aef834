"""Kill runs with SIGKILL, again and again, then resume them until they finish: the records must
come out whole and the result must be the one of an uninterrupted run with the same seed.

Each scenario kills one run at least ten times: at every named kill point of its code
(:func:`nas.faults.kill_point`, through ``NAS_KILL_AT``) and at random moments (the test sleeps a
seeded random time, then kills). Every process is ``nas.cli.main`` in a child forked from a
forkserver that has imported torch, Optuna and nas already, so a start costs a fraction of a
second, not a fresh interpreter.

Checked after the last resume: ``best.pt`` holds the epoch and weights ``result.json`` names as
best (and ``nas export --checkpoint best`` exports them); per-epoch logs hold each epoch once, in
order; no trial is left RUNNING; every finished trial is in ``metrics.jsonl`` once; and records,
weights, genotypes, the best trial and the Pareto set equal those of an uninterrupted run.
"""
from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import random
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState

from nas.cli import main
from nas.strategies import registered_strategies
from tests.conftest import REPO, shared_data

CTX = multiprocessing.get_context("forkserver")
PRELOAD = ["torch", "torch.utils.tensorboard", "optuna", "optuna.storages._rdb.storage", "sqlalchemy", "alembic",
           "matplotlib.pyplot", "sklearn.datasets", "safetensors.torch", "nas.cli", "nas.cli.cmd_train",
           "nas.cli.cmd_search", "nas.cli.cmd_export", "nas.train.engine", "nas.strategies.oneshot.search",
           "nas.strategies.blackbox.search", "nas.evaluators", "nas.export", "tests.test_crash"]
NB201_CELL = "|nor_conv_3x3~0|+|nor_conv_3x3~0|skip_connect~1|+|skip_connect~0|nor_conv_1x1~1|avg_pool_3x3~2|"
TIMING = ("epoch_time_s", "images_per_s", "peak_mem_mib", "seconds", "run")  # wall-clock figures and trial folders
Kill = str | None  # a kill point ("train.after_last@2"), or None for a random moment


WARM = "NAS_CRASH_TEST_FORKSERVER"  # set while the forkserver starts: it imports this module and warms up


def _warm_up() -> None:
    """What every `nas` process would otherwise do first, done once in the forkserver: the
    digits at 16 px, the NAS-Bench-201 table, matplotlib's first figure (its fonts)."""
    import io

    import matplotlib.pyplot as plt

    from nas.data.digits import _arrays
    from nas.evaluators.nb201_table import load_nb201_table
    from tests.conftest import SHARED_DATA

    _arrays(16, 0.2, 0)
    if (SHARED_DATA / "nas-bench-201").exists():
        load_nb201_table(SHARED_DATA / "nas-bench-201", "cifar10")
    fig, ax = plt.subplots()
    ax.plot([0, 1], label="warm")
    ax.legend()
    fig.tight_layout()
    fig.savefig(io.BytesIO(), format="png")
    plt.close(fig)


if os.environ.get(WARM) == "1":
    _warm_up()


def _child(argv: list[str], kill_at: str | None, log: str) -> None:
    """One `nas` process (in a forkserver child)."""
    if kill_at:
        os.environ["NAS_KILL_AT"] = kill_at
    else:
        os.environ.pop("NAS_KILL_AT", None)
    torch.set_num_threads(1)
    with open(log, "a") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        print(f"--- nas {' '.join(argv)}  (NAS_KILL_AT={kill_at})", flush=True)
        code = main(argv)
    sys.exit(code)


@pytest.fixture(scope="module")
def forkserver() -> None:
    """Start the forkserver once, with the heavy imports done."""
    CTX.set_forkserver_preload(PRELOAD)
    os.environ[WARM] = "1"
    try:
        proc = CTX.Process(target=time.sleep, args=(0,))
        proc.start()
    finally:
        del os.environ[WARM]
    proc.join()


class Runner:
    """Starts `nas` processes for one run folder ``out`` and kills them as told."""

    def __init__(self, out: Path, new: list[str], *, seed: int) -> None:
        self.out = out
        self.new = [*new, "--out", str(out)]
        self.resume = [new[0], "--resume", str(out)]
        self.log = out.with_name(out.name + ".log")
        self.rng = random.Random(seed)
        self.kills: list[str] = []

    def start(self, kill_at: str | None = None) -> multiprocessing.process.BaseProcess:
        argv = self.resume if (self.out / "config.json").is_file() else self.new
        proc = CTX.Process(target=_child, args=(argv, kill_at, str(self.log)))
        proc.start()
        return proc

    def tail(self) -> str:
        return self.log.read_text()[-3000:] if self.log.exists() else ""

    def finish(self, proc: multiprocessing.process.BaseProcess, timeout: float = 300) -> int:
        proc.join(timeout)
        if proc.is_alive():
            proc.kill()
            proc.join()
            pytest.fail(f"a `nas` process ran for more than {timeout}s:\n{self.tail()}")
        return proc.exitcode

    def reference(self, records: Callable[[], int], *, then: float = 2) -> float:
        """Run uninterrupted; returns a window for random kills: the time until the first record
        appeared plus that of ``then`` records after it."""
        proc, started, first = self.start(), time.perf_counter(), None
        while proc.is_alive():
            if first is None and records():
                first = time.perf_counter() - started
            time.sleep(0.005)
        assert self.finish(proc) == 0, self.tail()
        total, count = time.perf_counter() - started, records()
        assert first is not None and count >= 2, "the run logged fewer than two records"
        return first + then * (total - first) / count

    def crash(self, schedule: list[Kill], *, window: float, records: Callable[[], int], total: int, still: str,
              cap: int = 1, after_kill: Callable[[], None] = lambda: None) -> None:
        """Kill one process per ``schedule`` entry, then resume until the run is done.

        A kill point must be reached (the process dies by SIGKILL). A random moment is a random
        delay in [0, ``window``) s, cut short once the process wrote ``cap`` new records (of the
        ``total`` the run writes, ``records()`` so far), so that the kill points after it still
        find work to die in; where too few records are left for them, the ``still`` point (one
        that saves nothing) is used instead.
        """
        for i, kill in enumerate(schedule):
            if kill is None and total - records() - cap - 1 < _needed([k for k in schedule[i + 1:] if k]):
                kill = still
            if kill is None:
                delay = self.rng.uniform(0, window)
                before, proc = records(), self.start()
                deadline = time.perf_counter() + delay
                while proc.is_alive() and time.perf_counter() < deadline and records() - before < cap:
                    time.sleep(0.002)
                if not proc.is_alive():
                    pytest.fail(f"the run ended (exit {proc.exitcode}) before a random kill:\n{self.tail()}")
                proc.kill()
                assert self.finish(proc) == -9
                self.kills.append(f"random {delay:.2f}s")
            else:
                code = self.finish(self.start(kill))
                assert code == -9, f"kill point {kill} was not reached (exit {code}) after {self.kills}:\n{self.tail()}"
                self.kills.append(kill)
            after_kill()
        for _ in range(3):  # resume until done (once, as nothing kills it now)
            if self.finish(self.start()) == 0:
                return
        pytest.fail(f"resuming did not finish the run:\n{self.tail()}")


# points a process dies at right after saving its n-th record (epoch checkpoint, trial told);
# at the others it dies before saving the n-th; the ``before_result`` ones come after every record
SAVED = ("train.after_last", "train.after_best", "darts.after_checkpoint", "blackbox.after_tell", "blackbox.after_log")


def _needed(kills: list[str]) -> int:
    """Records that must be left for every one of ``kills`` (``point@n``), in turn, to be reached."""
    need = 0
    for kill in reversed(kills):
        point, _, nth = kill.partition("@")
        if point.endswith("before_result"):
            continue
        n = int(nth or 1)
        need = max(n, (n if point in SAVED else n - 1) + need)
    return need


def _schedule(named: list[str], randoms: int) -> list[Kill]:
    """Kill points and random moments, alternating."""
    out: list[Kill] = []
    for i in range(max(len(named), randoms)):
        out += named[i:i + 1] + [None] * (i < randoms)
    return out


def _count(path: Path) -> Callable[[], int]:
    """The number of complete lines in ``path`` now (a record being written is not one yet)."""
    return lambda: path.read_bytes().count(b"\n") if path.exists() else 0


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _untimed(records: list) -> list:
    return [_clean(r) for r in records]


def _clean(obj):
    """``obj`` without the TIMING keys, at every depth."""
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items() if k not in TIMING}
    if isinstance(obj, list):
        return [_clean(v) for v in obj]
    return obj


def _kill_points(prefix: str) -> set[str]:
    """The kill points named in the package's code."""
    names = set()
    for path in (REPO / "nas").rglob("*.py"):
        names.update(re.findall(r'kill_point\("([a-z_]+\.[a-z_]+)"\)', path.read_text()))
    return {n for n in names if n.startswith(prefix)}


def _covers(schedule: list[Kill], prefix: str) -> None:
    named = {k.partition("@")[0] for k in schedule if k}
    assert _kill_points(prefix) <= named, f"kill points not exercised: {_kill_points(prefix) - named}"


# -- the records --------------------------------------------------------------------------------------
def test_per_epoch_logs_are_trimmed_by_epoch_and_torn_lines_dropped(tmp_path: Path) -> None:
    from nas.run import Run

    run = Run(tmp_path)
    lines = ['{"epoch": 1, "a": 1}', '{"epoch": 1, "a": 2}', '{"epoch": 3, "a": 3}', '{"epoch": 2, "a": 4}']
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines) + '\n{"epoch": 4, "a"')  # torn by a kill
    assert [r["a"] for r in run.read_records("metrics.jsonl")] == [1, 2, 3, 4]
    run.append_record("metrics.jsonl", {"epoch": 5})  # starts a line of its own after the torn one
    assert [r["epoch"] for r in run.read_records("metrics.jsonl")] == [1, 1, 3, 2, 5]
    # resuming after the checkpoint of epoch 3: each epoch once, in order, never by line count
    assert run.trim_epochs("metrics.jsonl", 3) == [{"epoch": 1, "a": 1}, {"epoch": 2, "a": 4}, {"epoch": 3, "a": 3}]
    assert [json.loads(line)["epoch"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]
    assert run.trim_epochs("genotypes.jsonl", 0) == [] and (tmp_path / "genotypes.jsonl").read_text() == ""


# -- training ------------------------------------------------------------------------------------------
EPOCHS = 10
TRAIN = ["train", "--genotype", NB201_CELL, "--dataset", "digits", "--epochs", str(EPOCHS), "--image-size", "16",
         "--init-channels", "4", "--layers", "3", "--batch-size", "16", "--train-subset", "64", "--val-subset", "48",
         "--max-train-batches", "3", "--seed", "1", "--no-progress"]


def _held_epoch(path: Path) -> int | None:
    return int(torch.load(path, weights_only=True)["epoch"]) if path.exists() else None


def test_a_training_killed_again_and_again_ends_as_an_uninterrupted_one(tmp_path: Path, forkserver) -> None:
    ref = Runner(tmp_path / "whole", TRAIN, seed=0)
    window = ref.reference(_count(ref.out / "metrics.jsonl"))
    whole = json.loads((ref.out / "result.json").read_text())["metrics"]
    accuracy = [r["val_acc"] for r in _lines(ref.out / "metrics.jsonl")]
    improving = [e for e in range(1, EPOCHS + 1) if accuracy[e - 1] > max([-1.0] + accuracy[:e - 1])]
    # training is deterministic: this run improves in each of epochs 1, 2 and 3 (the schedule below
    # needs that; later epochs round differently on different CPUs, and may improve again)
    assert improving[:3] == [1, 2, 3] and whole["best_epoch"] == improving[-1], improving

    run = Runner(tmp_path / "killed", TRAIN, seed=1)
    ckpt = run.out / "checkpoints"
    stale: list[int] = []

    def after_kill() -> None:  # what a kill left: best.pt behind the best epoch that last.pt names
        if (ckpt / "last.pt").exists():
            best = int(torch.load(ckpt / "last.pt", weights_only=True)["best"]["epoch"])
            if _held_epoch(ckpt / "best.pt") != best:
                stale.append(best)

    # after_last: dies after writing last.pt, before copying it to best.pt: in epoch 1 (no
    # best.pt yet); after_best in epoch 2, after its copy; after_last in epoch 3, the best one,
    # which leaves best.pt with epoch 2 for good unless resume repairs it
    schedule = ["train.after_last@1", "train.after_best@1", "train.after_last@1"] + _schedule(
        ["train.after_log@1", "train.after_curves@1", "train.after_log@2", "train.after_last@1"], randoms=4) + \
        ["train.before_result"]
    _covers(schedule, "train.")
    run.crash(schedule, window=window, records=_count(run.out / "metrics.jsonl"), total=EPOCHS,
              still="train.after_log@1", after_kill=after_kill)
    assert len(run.kills) >= 10, run.kills
    assert stale[:2] == [1, 3], stale  # the repair was needed, twice

    result = json.loads((run.out / "result.json").read_text())["metrics"]
    assert _untimed([result]) == _untimed([whole])
    best = torch.load(ckpt / "best.pt", weights_only=True)
    want = torch.load(ref.out / "checkpoints" / "best.pt", weights_only=True)
    assert best["epoch"] == result["best_epoch"] == whole["best_epoch"]
    assert all(torch.equal(best["model"][k], v) for k, v in want["model"].items())
    records = _lines(run.out / "metrics.jsonl")
    assert [r["epoch"] for r in records] == list(range(1, EPOCHS + 1))
    assert _untimed(records) == _untimed(_lines(ref.out / "metrics.jsonl"))
    with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
        assert main(["export", str(run.out), "--checkpoint", "best", "--out", str(tmp_path / "best")]) == 0
    exported = torch.load(tmp_path / "best" / "model_state_dict.pt", weights_only=True)
    assert all(torch.equal(exported[k], v) for k, v in want["model"].items())


# -- DARTS -----------------------------------------------------------------------------------------------
DARTS_EPOCHS = 8
DARTS = ["search", "--strategy", "darts", "--space", "nb201", "--dataset", "digits", "--epochs", str(DARTS_EPOCHS),
         "--max-steps", "2", "--init-channels", "4", "--layers", "3", "--image-size", "16", "--batch-size", "16",
         "--seed", "3"]


def test_a_darts_search_killed_again_and_again_ends_as_an_uninterrupted_one(tmp_path: Path, forkserver) -> None:
    ref = Runner(tmp_path / "whole", DARTS, seed=0)
    window = ref.reference(_count(ref.out / "metrics.jsonl"))
    run = Runner(tmp_path / "killed", DARTS, seed=2)
    # twice after logging and before the checkpoint, the first time with no checkpoint yet
    schedule = _schedule(["darts.after_log@1", "darts.after_log@1", "darts.after_genotype@1",
                          "darts.after_checkpoint@1", "darts.after_log@2", "darts.after_genotype@2",
                          "darts.after_checkpoint@2"], randoms=4) + ["darts.before_result"]
    _covers(schedule, "darts.")
    run.crash(schedule, window=window, records=_count(run.out / "metrics.jsonl"), total=DARTS_EPOCHS,
              still="darts.after_log@1")
    assert len(run.kills) >= 10, run.kills

    epochs = list(range(1, DARTS_EPOCHS + 1))
    assert [r["epoch"] for r in _lines(run.out / "metrics.jsonl")] == epochs
    assert [r["epoch"] for r in _lines(run.out / "genotypes.jsonl")] == epochs
    assert _untimed(_lines(run.out / "metrics.jsonl")) == _untimed(_lines(ref.out / "metrics.jsonl"))
    assert _lines(run.out / "genotypes.jsonl") == _lines(ref.out / "genotypes.jsonl")
    result, whole = (json.loads((r.out / "result.json").read_text()) for r in (run, ref))
    assert result["genotype"] == whole["genotype"] and result["epochs"] == DARTS_EPOCHS
    last = f"alphas/epoch_{DARTS_EPOCHS:03d}.json"
    assert json.loads((run.out / last).read_text()) == json.loads((ref.out / last).read_text())


def test_a_darts_checkpoint_of_another_kind_or_damaged_is_one_line(tmp_path: Path, forkserver, capsys) -> None:
    runner = Runner(tmp_path / "run", [*DARTS[:DARTS.index("--epochs") + 1], "1",
                                       *DARTS[DARTS.index("--epochs") + 2:]], seed=0)
    assert runner.finish(runner.start()) == 0, runner.tail()
    out, checkpoint = runner.out, runner.out / "checkpoints" / "last.pt"
    state = torch.load(checkpoint, weights_only=True)
    wider = {**state, "model": {k: torch.zeros(*(n + 1 for n in v.shape)) if v.dim() else v
                                for k, v in state["model"].items()}}
    damaged = {
        "a train checkpoint": lambda: torch.save({"format": 1, "epoch": 1, "model": {}, "spec": {}}, checkpoint),
        "a truncated file": lambda: checkpoint.write_bytes(checkpoint.read_bytes()[:2000]),
        "another supernet's": lambda: torch.save(wider, checkpoint),
    }
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and p != checkpoint}
    for what, damage in damaged.items():
        damage()
        capsys.readouterr()
        assert main(["search", "--resume", str(out)]) == 2, what
        err = capsys.readouterr().err.strip()
        assert err.startswith("nas search: error: ") and len(err.splitlines()) == 1, (what, err)
        assert str(checkpoint) in err and len(err) < 300, (what, err)
        assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and p != checkpoint} == before, what


# -- black-box ---------------------------------------------------------------------------------------
BLACKBOX = [name for name, cls in registered_strategies().items() if cls.kind == "blackbox"]


def _study(run: Path) -> optuna.Study:
    config = json.loads((run / "config.json").read_text())
    return optuna.load_study(study_name=config["study_name"], storage=f"sqlite:///{run / 'study.db'}")


def _outcome(run: Path) -> dict:
    """What a search found: best.json (with its trial), and the Pareto set of several objectives."""
    found = {"best": json.loads((run / "best.json").read_text())}
    if (run / "pareto.json").exists():
        found["pareto"] = json.loads((run / "pareto.json").read_text())["members"]
    return _clean(found)


def _check_search(run: Runner, ref: Runner, trials: int) -> None:
    study = _study(run.out)
    states = [t.state for t in study.trials]
    assert TrialState.RUNNING not in states and TrialState.WAITING not in states
    assert len(study.trials) == trials and set(states) == {TrialState.COMPLETE}
    # every trial drew what the uninterrupted search drew under its number, and scored the same
    assert [(t.number, t.params, t.values) for t in study.trials] == \
        [(t.number, t.params, t.values) for t in _study(ref.out).trials]
    records = _lines(run.out / "metrics.jsonl")
    assert sorted(r["trial"] for r in records) == list(range(trials))  # each finished trial once
    assert _untimed(sorted(records, key=lambda r: r["trial"])) == _untimed(_lines(ref.out / "metrics.jsonl"))
    assert _outcome(run.out) == _outcome(ref.out)


BLACKBOX_KILLS = {  # per strategy: kill points (evolution, reported as reseeding on resume, the most)
    "evolution": (["blackbox.trial_started@1", "blackbox.trial_running@3", "blackbox.before_tell@2",
                   "blackbox.after_tell@4", "blackbox.suggesting@9", "blackbox.after_log@2",
                   "blackbox.trial_started@5", "blackbox.after_tell@1", "blackbox.suggesting@40"], 6, 30),
    None: (["blackbox.trial_started@2", "blackbox.suggesting@14", "blackbox.after_tell@3",
            "blackbox.before_tell@2", "blackbox.suggesting@3"], 2, 20),
}


# evolution and local search (the strategies whose state is the study's history) by default; the others with -m slow
@pytest.mark.parametrize("strategy", [s if s in ("evolution", "local") else pytest.param(s, marks=pytest.mark.slow)
                                      for s in BLACKBOX])
def test_a_search_on_the_table_killed_again_and_again_ends_as_an_uninterrupted_one(strategy: str, tmp_path: Path,
                                                                                   forkserver) -> None:
    named, randoms, trials = BLACKBOX_KILLS.get(strategy, BLACKBOX_KILLS[None])
    argv = ["search", "--strategy", strategy, "--space", "nb201", "--evaluator", "nb201", "--nb201-root",
            str(shared_data("nas-bench-201")), "--trials", str(trials), "--seed", "7"]
    if strategy in ("evolution", "nsga2"):
        argv += ["--population", "6"] + (["--sample-size", "3"] if strategy == "evolution" else [])
    ref = Runner(tmp_path / "whole", argv, seed=0)
    window = ref.reference(_count(ref.out / "metrics.jsonl"), then=4)
    run = Runner(tmp_path / "killed", argv, seed=3)
    schedule = _schedule(named, randoms)
    if strategy == "evolution":
        _covers(schedule, "blackbox.")
    run.crash(schedule, window=window, records=_count(run.out / "metrics.jsonl"), total=trials,
              still="blackbox.trial_running@1", cap=3)
    assert len(run.kills) >= (10 if strategy == "evolution" else len(schedule)), run.kills
    _check_search(run, ref, trials)


def test_a_search_of_training_trials_killed_again_and_again_ends_as_an_uninterrupted_one(tmp_path: Path,
                                                                                         forkserver) -> None:
    trials = 3
    argv = ["search", "--strategy", "evolution", "--population", "2", "--sample-size", "1", "--space", "nb201",
            "--evaluator", "train", "--epochs-per-trial", "2", "--trial-batch-size", "16", "--trial-init-channels",
            "4", "--trial-layers", "3", "--trial-setting", "image_size=16", "--trial-setting", "train_subset=48",
            "--trial-setting", "max_train_batches=1", "--trials", str(trials), "--seed", "5"]
    ref = Runner(tmp_path / "whole", argv, seed=0)
    window = ref.reference(_count(ref.out / "metrics.jsonl"), then=0.5)
    run = Runner(tmp_path / "killed", argv, seed=4)
    # inside a trial's training too: its half-written trial folder is cleared and the trial re-run
    schedule = _schedule(["train.after_log@2", "blackbox.after_tell@1", "train.after_last@1"], randoms=1)
    run.crash(schedule, window=window, records=_count(run.out / "metrics.jsonl"), total=trials,
              still="train.after_log@1")
    _check_search(run, ref, trials)
    assert sorted(p.name for p in (run.out / "trials").iterdir()) == [f"{i:04d}" for i in range(trials)]
