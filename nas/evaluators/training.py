"""Score a genotype by training it briefly: the evaluator of real black-box searches.

Each evaluation is one :func:`nas.train.train` run (its own run folder under the search's
``trials/NNNN``), so per-epoch curves, checkpoints and the trained weights of every trial stay
inspectable. Per-epoch reports go to the search (pruning). The metrics are the trainer's last
epoch (``val_acc`` as a fraction, ``val_loss``, ``train_loss``, ``best_val_acc``), the test
split's ``test_acc`` / ``test_loss``, and the network's ``params``, ``macs``,
``activation_mib`` and, when asked for, ``latency_ms``.

A search selects on ``val_acc``, measured on a part of the training set held out from training
(``val_fraction``, 20% by default, the same images for every trial); the data set's test split
is scored once per trial (``test_acc``) and never steers the search, so it stays an honest
estimate of the found architecture.

>>> evaluator = TrainingEvaluator("digits", epochs=1, init_channels=4, layers=3)  # doctest: +SKIP
>>> evaluator.evaluate(get_reference("DARTS_V2"))["val_acc"]  # doctest: +SKIP
"""
from __future__ import annotations

import dataclasses
import json
import math
import tempfile
from pathlib import Path
from typing import Any

from nas.errors import NasError
from nas.evaluators.base import Evaluator, Report
from nas.genotype import Genotype
from nas.space import SearchSpace, load_space, space_from_dict


class TrialDiverged(RuntimeError):
    """Training produced a NaN or infinite loss: the trial fails, the search goes on."""


class TrainingEvaluator(Evaluator):
    """Short training of each genotype on ``dataset``.

    dataset, data_root: as for ``nas train`` (default ``digits``, embedded).
    space: the space the genotypes belong to (default: each genotype's own).
    epochs, batch_size, init_channels, layers, device, seed: the training run; unset values
        come from the data set's recipe (:func:`nas.train.recipe`).
    measure_latency: also measure ``latency_ms`` (batch 1, on the training device) for a
        latency objective.
    val_fraction: share of the training images held out to compute ``val_acc`` (default 0.2);
        0 validates on the test split instead (then ``test_acc`` is not reported and the search
        selects on the test split).
    train_settings: any other :class:`nas.train.TrainConfig` field (``lr``, ``train_subset``,
        ``max_train_batches``, ...).
    """

    objective = "val_acc"

    def __init__(self, dataset: str = "digits", *, space: SearchSpace | str | dict[str, Any] | None = None,
                 data_root: str | Path | None = None, epochs: int = 3, batch_size: int | None = None,
                 init_channels: int | None = None, layers: int | None = None, device: str = "auto", seed: int = 0,
                 measure_latency: bool = False, val_fraction: float = 0.2, **train_settings: Any) -> None:
        from nas.train import TrainConfig, recipe

        self.dataset = dataset
        if isinstance(space, dict):  # as written by config()
            space = space_from_dict(space, source="evaluator config")
        self.search_space = load_space(space) if space is not None else None
        self.space = self.search_space.name if self.search_space is not None else ""
        self.data_root = None if data_root is None else str(data_root)
        self.epochs = epochs
        self.measure_latency = measure_latency
        self.train_settings = dict(train_settings)
        known = {f.name for f in dataclasses.fields(TrainConfig)}
        unknown = sorted(set(train_settings) - known)
        if unknown:
            raise NasError(f"unknown training setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        overrides = {"epochs": epochs, "batch_size": batch_size, "init_channels": init_channels, "layers": layers,
                     "device": device, "seed": seed, "val_fraction": val_fraction, **train_settings}
        base = recipe(dataset)
        # a search trains hundreds of networks: export the weights' source only, not every format
        self.train_config = dataclasses.replace(
            base, export_formats=(), **{k: v for k, v in overrides.items() if v is not None}).check()

    @property
    def provides(self) -> tuple[str, ...]:
        names = ("val_acc", "best_val_acc", "val_loss", "train_loss", "train_acc", "params", "macs", "activation_mib")
        held_out = ("test_acc", "test_loss") if self.train_config.val_fraction > 0 else ()
        return names + held_out + (("latency_ms",) if self.measure_latency else ())

    def evaluate(self, genotype: Genotype, *, report: Report | None = None,
                 workdir: Path | None = None) -> dict[str, Any]:
        if workdir is not None:
            return {**self._train(genotype, Path(workdir), report), "run": str(workdir)}
        with tempfile.TemporaryDirectory(prefix="nas-trial-") as tmp:
            return self._train(genotype, Path(tmp) / "run", report)

    def _train(self, genotype: Genotype, out: Path, report: Report | None) -> dict[str, Any]:
        from nas.measure import latency_ms
        from nas.train import train

        def on_epoch(epoch: int, metrics: dict[str, Any]) -> None:
            loss = metrics.get("train_loss")
            if isinstance(loss, float) and not math.isfinite(loss):
                raise TrialDiverged(f"training loss became {loss} in epoch {epoch}")
            if report is not None:
                report(epoch, metrics)

        result = train(genotype, self.dataset, config=self.train_config, space=self.search_space, out=out,
                       report=on_epoch, progress=False, data_root=self.data_root)
        metrics = {k: v for k, v in result.metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        for name in ("train_loss", "val_loss", "val_acc"):
            value = metrics.get(name)
            if value is not None and not math.isfinite(value):
                raise TrialDiverged(f"{name} is {value} after training")
        size = json.loads((result.run / "model.json").read_text())
        metrics.update({k: size[k] for k in ("params", "macs", "activation_mib") if k in size})
        if self.measure_latency:
            metrics["latency_ms"] = latency_ms(result.model, tuple(size["input_size"]))
        return metrics

    def config(self) -> dict[str, Any]:
        cfg = self.train_config
        return {"name": "train", "dataset": self.dataset, "data_root": self.data_root,
                "space": self.search_space.to_dict() if self.search_space is not None else None,
                "epochs": cfg.epochs, "batch_size": cfg.batch_size, "init_channels": cfg.init_channels,
                "layers": cfg.layers, "device": cfg.device, "seed": cfg.seed, "val_fraction": cfg.val_fraction,
                "measure_latency": self.measure_latency, **self.train_settings}
