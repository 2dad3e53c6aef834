"""Training any model ``nas`` builds: ``train("DARTS_V2", "cifar10", data_root="data")``,
``train("DARTS_V2", task="detection", head="fcos")``.

One engine (:mod:`nas.train.engine`: a loop with hooks) and one adapter per task
(:mod:`nas.train.tasks`); runs go into run folders (config, metrics, TensorBoard, checkpoints,
curves, export) and resume bit-identically on the CPU. :class:`TrainConfig` and :func:`recipe`
(:mod:`nas.train.config`, no torch) hold the settings and the defaults per data set and task.
"""
from __future__ import annotations

from typing import Any

from nas.train.config import TrainConfig, recipe

__all__ = ["TrainConfig", "TrainResult", "init_backbone_from", "load_checkpoint", "load_model", "recipe", "train",
           "train_detector", "train_segmenter"]

_ENGINE = {"TrainResult", "train", "train_detector", "train_segmenter"}


def __getattr__(name: str) -> Any:
    # the engine imports torch: loaded on first use, so that the settings (and `nas train --help`) stay light
    if name in _ENGINE:
        from nas.train import engine

        return getattr(engine, name)
    if name in ("load_checkpoint", "load_model"):
        from nas import checkpoint

        return getattr(checkpoint, name)
    if name == "init_backbone_from":
        from nas.train.transfer import init_backbone_from

        return init_backbone_from
    raise AttributeError(f"module 'nas.train' has no attribute {name!r}")
