"""Tune callbacks of a Ray Tune search: the trial log the search resumes from, and one printed
line per trial event in place of Tune's per-trial tables.

Kept apart from :mod:`nas.strategies.blackbox.ray_tune` because it imports Ray, which the
``nas`` command should not load just to parse its options.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ray import tune

from nas.errors import NasError
from nas.run import Run
from nas.space import SearchSpace
from nas.strategies.blackbox.results import plain
from nas.strategies.blackbox.sampling import params_to_genotype, short_form


class TrialBook(tune.Callback):
    """Appends a line to the run's trial log (``tune-trials.jsonl``) when a trial starts and
    when it ends: plain JSON, the only record a resumed search reads.

    ``start``: trial number, experiment, Tune's trial id, its config (the genotype's parameters).
    ``end``: the same, with status (``complete``, ``stopped`` early by the scheduler, ``error``),
    the evaluator's metrics of the last report, seconds, the error line, the trial's folder and
    its curve (``[training_iteration, epoch, first objective]`` per report). Folders are
    relative to the run folder.

    Trials are numbered in the order Tune created them: the first ``first`` trials of this
    experiment take those numbers (trials of an earlier experiment run again), the rest
    ``base``, ``base + 1``, ...
    """

    def __init__(self, run_path: str | Path, experiment: str, log: str, objectives: Sequence[str], *,
                 first: Sequence[int] = (), base: int = 0,
                 final_metrics: Callable[[dict[str, Any]], dict[str, Any]],
                 error_line: Callable[[str], str]) -> None:
        self.run_path = str(run_path)
        self.experiment = experiment
        self.log = log
        self.objectives = list(objectives)
        self.first = list(first)
        self.base = base
        self.final_metrics = final_metrics
        self.error_line = error_line
        self._numbers: dict[str, int] = {}
        self._curves: dict[str, list[list[Any]]] = {}

    def number(self, trials: list[Any], trial: Any) -> int:
        number = self._numbers.get(trial.trial_id)
        if number is None:
            index = trials.index(trial) if trial in trials else len(self._numbers)
            number = self.first[index] if index < len(self.first) else self.base + index - len(self.first)
            self._numbers[trial.trial_id] = number
        return number

    def _write(self, event: str, trials: list[Any], trial: Any, **fields: Any) -> None:
        record = {"event": event, "number": self.number(trials, trial), "experiment": self.experiment,
                  "trial_id": trial.trial_id, "config": plain(dict(trial.config or {})), **fields}
        Run(Path(self.run_path)).append_record(self.log, record)

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._curves[trial.trial_id] = []
        self._write("start", trials, trial, path=self._folder(trial))

    def on_trial_result(self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any],
                        **info: Any) -> None:
        value = result.get(self.objectives[0])
        self._curves.setdefault(trial.trial_id, []).append(
            [result.get("training_iteration"), result.get("epoch"), value if isinstance(value, (int, float)) else None])

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        result = trial.last_result or {}
        self._end(trials, trial, "complete" if result.get("completed") else "stopped", "")

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        text = ""
        if trial.error_file and Path(trial.error_file).is_file():
            text = Path(trial.error_file).read_text(errors="replace")
        self._end(trials, trial, "error", self.error_line(text) if text else "error (no message)")

    def _end(self, trials: list[Any], trial: Any, status: str, error: str) -> None:
        result = trial.last_result or {}
        seconds = result.get("time_total_s")
        self._write("end", trials, trial, status=status, metrics=self.final_metrics(result),
                    seconds=seconds if isinstance(seconds, (int, float)) else None, error=error,
                    path=self._folder(trial), curve=self._curves.pop(trial.trial_id, []))

    def _folder(self, trial: Any) -> str:
        """The trial's folder, relative to the run folder when inside it (so the run can move)."""
        path = Path(str(trial.path))
        try:
            return path.relative_to(self.run_path).as_posix()
        except ValueError:
            return str(path)


class TrialLines(tune.Callback):
    """Prints ``trial N started | cell``, ``trial N complete | val_acc 0.91 | cell``,
    ``trial N stopped early after epoch 2 | ...`` and ``trial N ERROR | ...``; N is the trial's
    number in ``trials.csv`` (``number(trials, trial)``; default: the order Tune created them)."""

    def __init__(self, space: SearchSpace, objectives: Sequence[str],
                 number: Callable[[list[Any], Any], int] | None = None) -> None:
        self.space = space
        self.objectives = list(objectives)
        self._number = number or _number

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        print(f"trial {self._number(trials, trial):4d} started  | {self._cell(trial)}", flush=True)

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        result = trial.last_result or {}
        values = " ".join(f"{name} {result[name]:.4g}" for name in self.objectives
                          if isinstance(result.get(name), (int, float)))
        how = "complete" if result.get("completed") else f"stopped early after epoch {result.get('epoch')}"
        print(f"trial {self._number(trials, trial):4d} {how} | {values} | {self._cell(trial)}", flush=True)

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        print(f"trial {self._number(trials, trial):4d} ERROR    | {self._cell(trial)} | see {trial.path}/error.txt",
              flush=True)

    def _cell(self, trial: Any) -> str:
        try:
            return short_form(params_to_genotype(trial.config or {}, self.space))
        except NasError:
            return trial.trial_id


def _number(trials: list[Any], trial: Any) -> int:
    return trials.index(trial) if trial in trials else -1
