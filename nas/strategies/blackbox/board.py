"""TensorBoard for a black-box search: one run per trial, and one for the search itself.

``RUN/tensorboard/`` holds

    trial-NNNN/   the trial's reports as scalars per epoch (``val_acc``, ``train_loss``, ...),
                  its genotype (short form) as text, and at its end the final metrics
                  (``final/<name>``) and its hparams (genotype, status) for the HParams tab
    search/       ``best/<first objective>``: the best value so far, and ``trials_finished``,
                  both at step = the number of trials finished so far

so ``tensorboard --logdir RUN/tensorboard`` lists each trial once. A trial that runs again (an
interrupted trial rerun from epoch 1, or continued from a later epoch) reopens its own folder
and its points from that epoch on replace the earlier ones. Every backend drives one
:class:`TrialBoard` from the events it sees: ``start``, ``epoch`` per report, ``end``.

Each writer writes its own event file and the methods take a lock, so threads and processes
never mix their writes; a trial's folder is written by the process running the trial, ``search``
by the one that drives the search.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from nas.genotype import Genotype
from nas.strategies.blackbox.results import finite
from nas.strategies.blackbox.sampling import short_form

# trial statuses (of either backend) that count as finished; the errors among them never set the best
FINISHED = ("complete", "stopped", "pruned", "error", "fail")
ERRORS = ("error", "fail")
# the HParams tab's session status of a trial (a stopped trial ended as the search meant it to;
# the hparam ``status`` tells it apart)
_SESSION_STATUS = {"complete": "STATUS_SUCCESS", "stopped": "STATUS_SUCCESS", "pruned": "STATUS_SUCCESS",
                   "error": "STATUS_FAILURE", "fail": "STATUS_FAILURE"}


class TrialBoard:
    """RUN/tensorboard/trial-NNNN: one TensorBoard run per trial (scalars per epoch, genotype as text and hparams);
    RUN/tensorboard/search: the search's own run (best-so-far of the first objective, trials finished).

    objectives, directions: the search's metric names and ``"maximize"`` / ``"minimize"`` each;
    the first pair gives the best so far. A resumed search passes what its finished trials
    already gave: ``finished`` (how many) and ``best`` (the best value of the first objective,
    ``None`` if none yet); the ``search`` run then continues at step ``finished + 1``.
    """

    def __init__(self, run_path: str | Path, objectives: Sequence[str], directions: Sequence[str], *,
                 finished: int = 0, best: float | None = None) -> None:
        self.root = Path(run_path) / "tensorboard"
        self.objectives = list(objectives)
        self.directions = list(directions)
        self.finished = finished
        self.best = best
        self._trials: dict[int, Any] = {}  # open SummaryWriters of running trials
        self._steps: dict[int, int] = {}  # their last step: where the final metrics go
        self._search: Any = None
        self._lock = threading.Lock()

    def start(self, number: int, genotype: Genotype, *, first_epoch: int = 1) -> None:
        """Trial ``number`` (re)starts at epoch ``first_epoch``: what an earlier attempt wrote
        from that epoch on is dropped (TensorBoard hides it; from epoch 1, its files go)."""
        with self._lock:
            old = self._trials.pop(number, None)
            if old is not None:
                old.close()
            if first_epoch <= 1:  # nothing of an earlier attempt stays: no reader has to purge it
                for stale in (self.root / _trial_folder(number)).glob("events.out.tfevents.*"):
                    stale.unlink(missing_ok=True)
            writer = self._trial(number, purge_step=first_epoch)
            self._steps[number] = first_epoch
            writer.add_text("genotype", short_form(genotype), first_epoch)
            writer.flush()

    def epoch(self, number: int, epoch: int, metrics: Mapping[str, Any]) -> None:
        """The finite numbers among ``metrics`` as scalars of trial ``number`` at step ``epoch``."""
        with self._lock:
            writer = self._trial(number, purge_step=epoch)
            self._steps[number] = epoch
            for key, value in _numbers(metrics).items():
                writer.add_scalar(key, value, epoch)
            writer.flush()

    def end(self, number: int, status: str, metrics: Mapping[str, Any], genotype: Genotype | None) -> None:
        """Trial ``number`` ended with ``status`` (``complete``, ``stopped`` / ``pruned``, ``error``
        / ``fail``) and its final ``metrics``: they and the hparams go to its run, which is closed;
        a finished trial adds a step to the ``search`` run."""
        from torch.utils.tensorboard.summary import hparams

        with self._lock:
            writer = self._trial(number)
            numbers = _numbers(metrics)
            step = self._steps.pop(number, 0)
            for key, value in numbers.items():
                writer.add_scalar(f"final/{key}", value, step)
            _, start_info, _ = hparams({"genotype": short_form(genotype) if genotype is not None else "",
                                        "status": status}, {})
            writer.file_writer.add_summary(start_info, step)
            writer.file_writer.add_summary(_session_end(status), step)
            writer.close()
            del self._trials[number]
            if status not in FINISHED:
                return
            self.finished += 1
            value = numbers.get(self.objectives[0])
            if status not in ERRORS and value is not None and (
                    self.best is None or (value > self.best if self.directions[0] == "maximize" else value < self.best)):
                self.best = value
            if self._search is None:
                self._search = _writer(self.root / "search", purge_step=self.finished)
            if self.best is not None:
                self._search.add_scalar(f"best/{self.objectives[0]}", self.best, self.finished)
            self._search.add_scalar("trials_finished", self.finished, self.finished)
            self._search.flush()

    def close(self) -> None:
        """Close every writer (a trial still open keeps what it wrote)."""
        with self._lock:
            for writer in [*self._trials.values(), *([self._search] if self._search is not None else [])]:
                writer.close()
            self._trials.clear()
            self._steps.clear()
            self._search = None

    def _trial(self, number: int, *, purge_step: int | None = None) -> Any:
        """Trial ``number``'s writer, opened if need be; ``purge_step``: the step it starts at (a
        reader hides what earlier writers logged from there on)."""
        if number not in self._trials:
            self._trials[number] = _writer(self.root / _trial_folder(number), purge_step=purge_step)
        return self._trials[number]


def _trial_folder(number: int) -> str:
    return f"trial-{number:04d}"


def _writer(path: Path, *, purge_step: int | None) -> Any:
    from torch.utils.tensorboard import SummaryWriter

    # TensorBoard reads a folder's event files in name order, and a name starts with the second
    # the file was made: a reopened run's file must not share that second with an earlier one
    made = [int(p.name.split(".")[3]) for p in path.glob("events.out.tfevents.*") if p.name.split(".")[3].isdigit()]
    while made and time.time() < max(made) + 1:
        time.sleep(0.05)
    return SummaryWriter(str(path), purge_step=purge_step)


def _numbers(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The finite numbers of ``metrics`` (not booleans, not the ``epoch`` key) as floats."""
    values = {}
    for key, value in metrics.items():
        if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
            value = value.item()
        if key != "epoch" and finite(value):
            values[key] = float(value)
    return values


def _session_end(status: str) -> Any:
    """The HParams plugin's session-end summary, with the trial's outcome."""
    from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

    content = plugin_data_pb2.HParamsPluginData(
        session_end_info=plugin_data_pb2.SessionEndInfo(
            status=api_pb2.Status.Value(_SESSION_STATUS.get(status, "STATUS_UNKNOWN"))),
        version=metadata.PLUGIN_DATA_VERSION)
    info = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name=metadata.PLUGIN_NAME,
                                                                  content=content.SerializeToString()))
    return Summary(value=[Summary.Value(tag=metadata.SESSION_END_INFO_TAG, metadata=info)])
