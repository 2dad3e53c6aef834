"""Training a genotype from scratch: ``train("DARTS_V2", "cifar10", data_root="data")``.

Runs go into run folders (config, metrics, TensorBoard, checkpoints, curves, export) and can be
resumed bit-identically on the CPU; :func:`recipe` gives the default settings per data set.
"""
from nas.checkpoint import load_checkpoint, load_model
from nas.train.config import TrainConfig, recipe
from nas.train.trainer import TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "load_checkpoint", "load_model", "recipe", "train"]
