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
from nas.strategies.blackbox.results import finite, metric_text, plain
from nas.strategies.blackbox.sampling import params_to_genotype, short_form


class TrialBook(tune.Callback):
    """Appends a line to the run's trial log (``tune-trials.jsonl``) when a trial starts and
    when it ends: plain JSON, the only record a resumed search reads; and writes each trial's
    TensorBoard run (:class:`~nas.strategies.blackbox.board.TrialBoard`, ``RUN/tensorboard/``).

    ``start``: trial number, experiment, Tune's trial id, its config (the genotype's parameters).
    ``end``: the same, with status (``complete``, ``stopped`` early by the scheduler, ``error``),
    the evaluator's metrics of the last report, seconds, the error line, the trial's own folder
    ``path`` (``trials/NNNN``), Tune's folder of it ``tune_path``, and its curve
    (``[training_iteration, epoch, first objective]`` per report). Folders are relative to the
    run folder. A trial's number is the one its config carries under ``number_key`` (left out
    of the logged config); ``finished`` are the trials of earlier experiments.
    """

    def __init__(self, run_path: str | Path, experiment: str, log: str, objectives: Sequence[str],
                 directions: Sequence[str], space: SearchSpace, *, number_key: str,
                 finished: dict[int, dict[str, Any]] | None = None,
                 final_metrics: Callable[[dict[str, Any]], dict[str, Any]],
                 error_line: Callable[[str], str]) -> None:
        self.run_path = str(run_path)
        self.experiment = experiment
        self.log = log
        self.objectives = list(objectives)
        self.space = space
        self.number_key = number_key
        self.final_metrics = final_metrics
        self.error_line = error_line
        self._curves: dict[str, list[list[Any]]] = {}
        self._started: set[str] = set()  # trials whose TensorBoard run is open
        finished = finished or {}
        best = best_value([r["metrics"].get(self.objectives[0]) for r in finished.values() if r["status"] != "error"],
                          directions[0])
        self._board_args = (self.run_path, self.objectives, list(directions), len(finished), best)
        self._board: Any = None

    @property
    def board(self) -> Any:
        """The TensorBoard writer, made on first use (Tune pickles its callbacks before the search)."""
        if self._board is None:
            from nas.strategies.blackbox.board import TrialBoard

            path, objectives, directions, finished, best = self._board_args
            self._board = TrialBoard(path, objectives, directions, finished=finished, best=best)
        return self._board

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_board": None}

    def _write(self, event: str, trial: Any, **fields: Any) -> None:
        number = self.number(trial.config)
        config = {k: v for k, v in plain(dict(trial.config or {})).items() if k != self.number_key}
        record = {"event": event, "number": number, "experiment": self.experiment,
                  "trial_id": trial.trial_id, "config": config, **fields}
        Run(Path(self.run_path)).append_record(self.log, record)

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._curves[trial.trial_id] = []
        self._write("start", trial, path=self._own(trial), tune_path=self._folder(trial))

    def on_trial_result(self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any],
                        **info: Any) -> None:
        value = result.get(self.objectives[0])
        epoch = result.get("epoch")
        self._curves.setdefault(trial.trial_id, []).append(
            [result.get("training_iteration"), epoch, value if isinstance(value, (int, float)) else None])
        number = self.number(trial.config)
        step = epoch if isinstance(epoch, int) else 1
        if trial.trial_id not in self._started:  # from its first report on: a continued trial purges nothing before
            self._started.add(trial.trial_id)
            self.board.start(number, self._genotype(trial), first_epoch=step)
        if not result.get("completed"):
            self.board.epoch(number, step, self.final_metrics(result))

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        result = trial.last_result or {}
        self._end(trial, "complete" if result.get("completed") else "stopped", "")

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        text = ""
        if trial.error_file and Path(trial.error_file).is_file():
            text = Path(trial.error_file).read_text(errors="replace")
        self._end(trial, "error", self.error_line(text) if text else "error (no message)")

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        if self._board is not None:
            self._board.close()

    def _end(self, trial: Any, status: str, error: str) -> None:
        result = trial.last_result or {}
        seconds = result.get("time_total_s")
        metrics = self.final_metrics(result)
        self._write("end", trial, status=status, metrics=metrics,
                    seconds=seconds if isinstance(seconds, (int, float)) else None, error=error,
                    path=self._own(trial), tune_path=self._folder(trial), curve=self._curves.pop(trial.trial_id, []))
        if trial.trial_id not in self._started:
            self.board.start(self.number(trial.config), self._genotype(trial))
        self._started.discard(trial.trial_id)
        self.board.end(self.number(trial.config), status, metrics, self._genotype(trial))

    def number(self, config: dict[str, Any]) -> int:
        return int(config[self.number_key])

    def _genotype(self, trial: Any) -> Any:
        return params_to_genotype(trial.config or {}, self.space)

    def _own(self, trial: Any) -> str:
        return f"trials/{self.number(trial.config):04d}"

    def _folder(self, trial: Any) -> str:
        """Tune's folder of the trial, relative to the run folder when inside it (so the run can move)."""
        path = Path(str(trial.path))
        try:
            return path.relative_to(self.run_path).as_posix()
        except ValueError:
            return str(path)


def best_value(values: Sequence[Any], direction: str) -> float | None:
    """The best finite number of ``values`` by ``direction`` (``maximize`` / ``minimize``), or None."""
    numbers = [float(v) for v in values if finite(v)]
    if not numbers:
        return None
    return max(numbers) if direction == "maximize" else min(numbers)


class SearchGauges(tune.Callback):
    """The search's progress as Ray metrics (``ray.util.metrics``), which the Ray dashboard's
    Metrics page and any Prometheus scraping the nodes' metrics export port see:
    ``nas_search_trials{run, state}`` (complete, stopped, error, running, pending) and
    ``nas_search_best{run, objective}`` (the best first objective so far). Exported names carry
    Ray's ``ray_`` prefix."""

    STATES = ("complete", "stopped", "error", "running", "pending")

    def __init__(self, run: str, objectives: Sequence[str], directions: Sequence[str],
                 finished: dict[int, dict[str, Any]] | None = None) -> None:
        self.run = run
        self.objective = objectives[0]
        self.direction = directions[0]
        self.ended: dict[str, int] = dict.fromkeys(self.STATES[:3], 0)
        values = []
        for record in (finished or {}).values():
            self.ended[record["status"]] += 1
            if record["status"] != "error":
                values.append(record["metrics"].get(self.objective))
        self.best = best_value(values, self.direction)
        self._trials = self._best = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_trials": None, "_best": None}

    def _gauges(self) -> tuple[Any, Any]:
        if self._trials is None:
            from ray.util.metrics import Gauge

            self._trials = Gauge("nas_search_trials", description="trials of a nas search by state",
                                 tag_keys=("run", "state"))
            self._best = Gauge("nas_search_best", description="best objective of a nas search so far",
                               tag_keys=("run", "objective"))
        return self._trials, self._best

    def _publish(self, trials: list[Any]) -> None:
        gauge, best = self._gauges()
        live = {"running": sum(t.status == "RUNNING" for t in trials),
                "pending": sum(t.status == "PENDING" for t in trials)}
        for state in self.STATES:
            gauge.set(self.ended.get(state, live.get(state, 0)), tags={"run": self.run, "state": state})
        if self.best is not None:
            best.set(self.best, tags={"run": self.run, "objective": self.objective})

    def on_step_begin(self, iteration: int, trials: list[Any], **info: Any) -> None:
        if iteration % 20 == 0:  # running / pending change without a trial event too
            self._publish(trials)

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._publish(trials)

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        result = trial.last_result or {}
        self.ended["complete" if result.get("completed") else "stopped"] += 1
        self.best = best_value([self.best, result.get(self.objective)], self.direction)
        self._publish(trials)

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.ended["error"] += 1
        self._publish(trials)

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        self._publish(trials)


class TrialLines(tune.Callback):
    """Prints ``trial N started | cell``, ``trial N epoch E | val_acc 0.85 | cell``,
    ``trial N complete | val_acc 0.91 | cell``, ``trial N stopped early after epoch 2 | ...`` and
    ``trial N ERROR | ...``; N is the trial's number in ``trials.csv``, ``number(trial)``."""

    def __init__(self, space: SearchSpace, objectives: Sequence[str], *, number: Callable[[Any], int]) -> None:
        self.space = space
        self.objectives = list(objectives)
        self._number = number

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        print(f"trial {self._number(trial):4d} started  | {self._cell(trial)}", flush=True)

    def on_trial_result(self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any],
                        **info: Any) -> None:
        if result.get("completed") or result.get("epoch") is None:
            return
        print(f"trial {self._number(trial):4d} epoch {result['epoch']:3d} | {metric_text(result, self.objectives)} | "
              f"{self._cell(trial)}", flush=True)

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        result = trial.last_result or {}
        values = metric_text(result, self.objectives)
        how = "complete" if result.get("completed") else f"stopped early after epoch {result.get('epoch')}"
        print(f"trial {self._number(trial):4d} {how} | {values} | {self._cell(trial)}", flush=True)

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        print(f"trial {self._number(trial):4d} ERROR    | {self._cell(trial)} | see {trial.path}/error.txt",
              flush=True)


    def _cell(self, trial: Any) -> str:
        try:
            return short_form(params_to_genotype(trial.config or {}, self.space))
        except NasError:
            return trial.trial_id
