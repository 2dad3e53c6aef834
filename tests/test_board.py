"""What TensorBoard and optuna-dashboard show for a search.

TrialBoard alone (a run per trial, reruns that replace their points, the search's best so
far), the Optuna backend end to end (a run per trial and ``search``, a requeued trial in its
own run, the study's metric names and ``short`` attributes) and a tiny DARTS run's
architecture images and histograms. Events are read the way TensorBoard's loader reads them
(purges included).
"""
from __future__ import annotations

import json
import math
import socket
import subprocess
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import optuna
import pytest
from tensorboard.backend.event_processing.plugin_event_accumulator import (
    EventAccumulator,
)
from tensorboard.util.tensor_util import make_ndarray

from nas.genotype import Genotype, from_nb201_string
from nas.strategies.blackbox.board import TrialBoard
from nas.strategies.blackbox.optuna_search import search_blackbox
from nas.strategies.blackbox.sampling import short_form
from tests.test_optuna import SyntheticEvaluator, quality

GENOTYPE = from_nb201_string("|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|none~0|none~1|avg_pool_3x3~2|")


def events(folder: Path) -> EventAccumulator:
    acc = EventAccumulator(str(folder), size_guidance={"tensors": 0})
    acc.Reload()
    return acc


def series(acc: EventAccumulator, tag: str) -> list[tuple[int, float]]:
    """(step, value) of a scalar tag, in the order TensorBoard shows them (float32: 6 digits)."""
    return [(e.step, round(float(make_ndarray(e.tensor_proto)), 6)) for e in tensors(acc, tag)]


def steps(acc: EventAccumulator, tag: str) -> list[int]:
    return [e.step for e in tensors(acc, tag)]


def tensors(acc: EventAccumulator, tag: str) -> list[Any]:
    """The events of ``tag`` (none if the run has no such tag)."""
    return acc.Tensors(tag) if tag in acc.Tags()["tensors"] else []


def runs(run: Path) -> list[str]:
    return sorted(p.name for p in (run / "tensorboard").iterdir() if p.is_dir())


# -- TrialBoard ------------------------------------------------------------------------------------
def test_a_trial_is_a_run_of_its_own_with_scalars_text_and_hparams(tmp_path: Path) -> None:
    board = TrialBoard(tmp_path, ["val_acc"], ["maximize"])
    board.start(3, GENOTYPE)
    for epoch in (1, 2):
        board.epoch(3, epoch, {"epoch": epoch, "val_acc": 0.5 + 0.1 * epoch, "train_loss": 1.0 / epoch,
                               "nan": float("nan"), "flag": True, "note": "text"})
    board.end(3, "complete", {"val_acc": 0.7, "params": 12, "run": "somewhere"}, GENOTYPE)
    board.close()
    assert runs(tmp_path) == ["search", "trial-0003"]
    acc = events(tmp_path / "tensorboard" / "trial-0003")
    assert series(acc, "val_acc") == [(1, 0.6), (2, 0.7)]
    assert steps(acc, "train_loss") == [1, 2]
    assert {"nan", "flag", "note", "epoch"}.isdisjoint(acc.Tags()["tensors"])  # numbers only
    assert series(acc, "final/params") == [(2, 12.0)]
    (text,) = acc.Tensors("genotype/text_summary")
    assert make_ndarray(text.tensor_proto).item().decode() == short_form(GENOTYPE)
    assert {"_hparams_/session_start_info", "_hparams_/session_end_info"} <= set(acc.PluginTagToContent("hparams"))
    start = acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    assert short_form(GENOTYPE).encode() in start and b"complete" in start


def test_a_rerun_trial_replaces_its_points_in_the_same_run(tmp_path: Path) -> None:
    first = TrialBoard(tmp_path, ["val_acc"], ["maximize"])
    first.start(0, GENOTYPE)
    for epoch in (1, 2, 3, 4):
        first.epoch(0, epoch, {"attempt": 1, "val_acc": 0.1 * epoch})
    first.close()  # the search stopped mid-trial
    second = TrialBoard(tmp_path, ["val_acc"], ["maximize"])
    second.start(0, GENOTYPE, first_epoch=3)  # continues from its epoch-2 checkpoint
    for epoch in (3, 4, 5):
        second.epoch(0, epoch, {"attempt": 2, "val_acc": 0.2 * epoch})
    second.close()
    acc = events(tmp_path / "tensorboard" / "trial-0000")
    assert series(acc, "attempt") == [(1, 1.0), (2, 1.0), (3, 2.0), (4, 2.0), (5, 2.0)]
    assert steps(acc, "genotype/text_summary") == [1, 3]
    third = TrialBoard(tmp_path, ["val_acc"], ["maximize"])
    third.start(0, GENOTYPE)  # starts over from epoch 1
    third.epoch(0, 1, {"attempt": 3})
    third.end(0, "complete", {}, GENOTYPE)
    third.close()
    assert runs(tmp_path) == ["search", "trial-0000"]
    acc = events(tmp_path / "tensorboard" / "trial-0000")
    assert series(acc, "attempt") == [(1, 3.0)] and series(acc, "val_acc") == []


@pytest.mark.parametrize("direction", ["maximize", "minimize"])
def test_the_search_run_shows_the_best_so_far(tmp_path: Path, direction: str) -> None:
    outcomes = [("complete", 0.5), ("complete", 0.3), ("error", 0.99 if direction == "maximize" else 0.01),
                ("complete", 0.8), ("stopped", 0.1), ("complete", float("nan")), ("fail", None),
                ("complete", 0.6)]
    board = TrialBoard(tmp_path, ["val_acc"], [direction])
    for number, (status, value) in enumerate(outcomes[:5]):
        board.start(number, GENOTYPE)
        board.end(number, status, {} if value is None else {"val_acc": value}, GENOTYPE)
    board.close()
    resumed = TrialBoard(tmp_path, ["val_acc"], [direction], finished=board.finished, best=board.best)
    for number, (status, value) in enumerate(outcomes[5:], start=5):
        resumed.end(number, status, {} if value is None else {"val_acc": value}, GENOTYPE)
    resumed.close()
    pick = max if direction == "maximize" else min
    expected, best = [], None
    for step, (status, value) in enumerate(outcomes, start=1):
        if status not in ("error", "fail") and value is not None and math.isfinite(value):
            best = value if best is None else pick(best, value)
        expected.append((step, round(best, 6)))
    acc = events(tmp_path / "tensorboard" / "search")
    assert series(acc, "best/val_acc") == expected
    assert series(acc, "trials_finished") == [(n, float(n)) for n in range(1, len(outcomes) + 1)]
    values = [v for _, v in expected]
    assert values == sorted(values, reverse=direction == "minimize")  # monotone
    assert values[-1] == (0.8 if direction == "maximize" else 0.1)


# -- the Optuna backend ----------------------------------------------------------------------------
class Curves(SyntheticEvaluator):
    """Reports val_acc rising over three epochs, and which ``attempt`` at the trial this is."""

    def __init__(self, attempt: int = 1) -> None:
        super().__init__()
        self.attempt = attempt

    def evaluate(self, genotype: Genotype, *, report=None, workdir=None) -> dict[str, Any]:
        self.calls += 1
        q = quality(genotype)
        for epoch in (1, 2, 3):
            report(epoch, {"epoch": epoch, "val_acc": q * epoch / 3, "attempt": self.attempt})
        return {"val_acc": q, "params": 1}


def test_an_optuna_search_shows_one_run_per_trial_and_names_its_metrics(tmp_path: Path) -> None:
    out = tmp_path / "run"
    enqueued = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
    result = search_blackbox("nb201", Curves(), strategy="random", trials=4, out=out, seed=0, enqueue=[enqueued],
                             progress=False)
    assert runs(out) == ["search", "trial-0000", "trial-0001", "trial-0002", "trial-0003"]
    assert not list((out / "tensorboard").glob("events.*"))  # no scalar series of one big run
    for trial in result.study.trials:
        acc = events(out / "tensorboard" / f"trial-{trial.number:04d}")
        assert steps(acc, "val_acc") == [1, 2, 3]
        assert series(acc, "final/val_acc") == [(3, round(trial.value, 6))]
        genotype = Genotype.from_dict(trial.user_attrs["genotype"])
        assert trial.user_attrs["short"] == short_form(genotype)  # what optuna-dashboard lists
    assert result.study.trials[0].user_attrs["short"] == enqueued
    values = [t.value for t in result.study.trials]
    search = events(out / "tensorboard" / "search")
    assert series(search, "best/val_acc") == [(n, round(max(values[:n]), 6)) for n in range(1, 5)]
    stored = optuna.load_study(study_name="random-nb201", storage=f"sqlite:///{out / 'study.db'}")
    assert stored.metric_names == ["val_acc"] and result.study.metric_names == ["val_acc"]

    resumed = search_blackbox("nb201", Curves(), strategy="random", trials=6, resume=out, progress=False)
    assert len(resumed.study.trials) == 6 and len(runs(out)) == 7
    search = events(out / "tensorboard" / "search")
    assert steps(search, "best/val_acc") == list(range(1, 7))
    assert series(search, "trials_finished")[-1] == (6, 6.0)


def test_several_objectives_are_named_in_the_study(tmp_path: Path) -> None:
    result = search_blackbox("nb201", SyntheticEvaluator(), strategy="nsga2", trials=3, storage="memory",
                             objectives="val_acc,params", out=tmp_path / "run", progress=False, population=2)
    assert result.study.metric_names == ["val_acc", "params"]
    assert len(runs(tmp_path / "run")) == 4


def test_a_requeued_trial_continues_its_own_run(tmp_path: Path) -> None:
    out = tmp_path / "run"
    search_blackbox("nb201", Curves(), strategy="random", trials=1, out=out, seed=0, progress=False)
    # what a worker killed in mid-trial leaves: trial 1 RUNNING, claimed by a process that is
    # gone, and the two epochs it reported in TensorBoard (its writer never closed)
    gone = subprocess.Popen(["true"])
    gone.wait()
    study = optuna.load_study(study_name="random-nb201", storage=f"sqlite:///{out / 'study.db'}")
    trial = study.ask()
    trial.set_user_attr("worker", f"{socket.gethostname()}:{gone.pid}")
    killed = TrialBoard(out, ["val_acc"], ["maximize"])
    killed.start(trial.number, GENOTYPE)
    for epoch in (1, 2):
        killed.epoch(trial.number, epoch, {"attempt": 1, "val_acc": 0.9})
    assert series(events(out / "tensorboard" / "trial-0001"), "attempt") == [(1, 1.0), (2, 1.0)]  # flushed

    result = search_blackbox("nb201", Curves(attempt=2), strategy="random", trials=3, resume=out, progress=False)
    rerun = result.study.trials[1]
    assert rerun.user_attrs.get("requeued") == 1 and rerun.state == optuna.trial.TrialState.COMPLETE
    assert runs(out) == ["search", "trial-0000", "trial-0001", "trial-0002"]
    acc = events(out / "tensorboard" / "trial-0001")
    assert series(acc, "attempt") == [(1, 2.0), (2, 2.0), (3, 2.0)]  # each epoch once, from the rerun
    search = events(out / "tensorboard" / "search")
    assert steps(search, "trials_finished") == [1, 2, 3]


# -- DARTS -----------------------------------------------------------------------------------------
def test_a_darts_search_shows_its_architecture_weights_over_time(tmp_path: Path) -> None:
    from nas.strategies.oneshot.search import search_darts
    from nas.strategies.oneshot.settings import DartsConfig

    config = DartsConfig(epochs=2, batch_size=16, init_channels=4, layers=3, image_size=8, max_steps=1)
    result = search_darts("nb201", "digits", config=config, out=tmp_path / "nb201", progress=False, plots=True)
    acc = events(result.path / "tensorboard")
    assert "alphas/normal" in acc.PluginTagToContent("images")
    assert "alpha/normal" in acc.PluginTagToContent("histograms")
    assert steps(acc, "alphas/normal") == [1, 2] and steps(acc, "alpha/normal") == [1, 2]
    width, height, png = make_ndarray(tensors(acc, "alphas/normal")[0].tensor_proto)[:3]
    assert int(width) > 100 and int(height) > 50 and png.startswith(b"\x89PNG")
    texts = [make_ndarray(e.tensor_proto).item().decode() for e in tensors(acc, "genotype/text_summary")]
    assert len(texts) == 2 and texts[-1] == json.loads((result.path / "result.json").read_text())["short"]
    assert steps(acc, "val_acc") == [1, 2]
    # one histogram per cell type; images only with plots
    darts = search_darts("darts", "digits", config=replace(config, epochs=1), out=tmp_path / "darts",
                         progress=False, plots=False)
    acc = events(darts.path / "tensorboard")
    assert {"alpha/normal", "alpha/reduction"} <= set(acc.PluginTagToContent("histograms"))
    assert "images" not in acc.ActivePlugins()


def test_a_resumed_darts_search_replaces_what_it_logged_after_its_checkpoint(tmp_path: Path) -> None:
    from torch.utils.tensorboard import SummaryWriter

    from nas.strategies.oneshot.search import search_darts
    from nas.strategies.oneshot.settings import DartsConfig

    class Interrupted(Exception):
        pass

    def stop(epoch: int, metrics: dict) -> None:
        raise Interrupted

    config = DartsConfig(epochs=2, batch_size=16, init_channels=4, layers=3, image_size=8, max_steps=1)
    with pytest.raises(Interrupted):
        search_darts("nb201", "digits", config=config, out=tmp_path / "run", progress=False, plots=False,
                     report=stop)
    with SummaryWriter(str(tmp_path / "run" / "tensorboard")) as stale:  # epoch 2 of a search killed before
        stale.add_scalar("val_acc", 123.0, 2)                               # its checkpoint
    time.sleep(1.1)  # a later process: event files are read in the order of the second they were made
    search_darts(resume=tmp_path / "run", progress=False, plots=False)
    acc = events(tmp_path / "run" / "tensorboard")
    assert steps(acc, "val_acc") == [1, 2] and 123.0 not in [v for _, v in series(acc, "val_acc")]
    assert steps(acc, "alpha/normal") == [1, 2]
