"""One printed line per Ray Tune trial event, in place of Tune's per-trial tables.

Kept apart from :mod:`nas.strategies.blackbox.ray_tune` because it imports Ray, which the
``nas`` command should not load just to parse its options.
"""
from __future__ import annotations

from typing import Any, Sequence

from ray import tune

from nas.errors import NasError
from nas.space import SearchSpace
from nas.strategies.blackbox.sampling import params_to_genotype, short_form


class TrialLines(tune.Callback):
    """Prints ``trial N started | cell``, ``trial N complete | val_acc 0.91 | cell``,
    ``trial N stopped early after epoch 2 | ...`` and ``trial N ERROR | ...``; N counts trials
    in the order Tune created them, as ``trials.csv`` does."""

    def __init__(self, space: SearchSpace, objectives: Sequence[str]) -> None:
        self.space = space
        self.objectives = list(objectives)

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        print(f"trial {_number(trials, trial):4d} started  | {self._cell(trial)}", flush=True)

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        result = trial.last_result or {}
        values = " ".join(f"{name} {result[name]:.4g}" for name in self.objectives
                          if isinstance(result.get(name), (int, float)))
        how = "complete" if result.get("completed") else f"stopped early after epoch {result.get('epoch')}"
        print(f"trial {_number(trials, trial):4d} {how} | {values} | {self._cell(trial)}", flush=True)

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        print(f"trial {_number(trials, trial):4d} ERROR    | {self._cell(trial)} | see {trial.path}/error.txt",
              flush=True)

    def _cell(self, trial: Any) -> str:
        try:
            return short_form(params_to_genotype(trial.config or {}, self.space))
        except NasError:
            return trial.trial_id


def _number(trials: list[Any], trial: Any) -> int:
    return trials.index(trial) if trial in trials else -1
