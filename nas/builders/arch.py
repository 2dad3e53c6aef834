"""One ``build(arch)`` for every model: plain data in, a freshly initialised ``nn.Module`` out.

``arch`` is what :meth:`nas.builders.ModelSpec.arch` writes (ints, strings, lists, dicts):
``{"task": "classification", "kind": "cell" | "chain", ...classifier arguments}`` or
``{"task": "detection" | "segmentation", "head": name, "num_classes": n, "backbone": {"kind":
..., ...backbone arguments}, "options": {...head arguments}}``. The exported ``model.py``
holds this very function and the classes it reaches, so the engine and the export build the
network the same way.
"""
from __future__ import annotations

from torch import nn

import nas.builders.detection  # noqa: F401  (registers the detectors)
import nas.builders.segmentation  # noqa: F401  (registers the segmentation heads)
from nas.builders.heads import HEADS
from nas.builders.networks import BACKBONES, CellClassifier, ChainClassifier


def build(arch: dict) -> nn.Module:
    """The network of ``arch`` with fresh weights (drawn from torch's global generator)."""
    if arch["task"] == "classification":
        kwargs = {k: v for k, v in arch.items() if k not in ("task", "kind")}
        return CellClassifier(**kwargs) if arch["kind"] == "cell" else ChainClassifier(**kwargs)
    backbone = build_backbone(arch["backbone"])
    return HEADS[arch["task"]][arch["head"]](backbone, arch["num_classes"], **arch["options"])


def build_backbone(arch: dict) -> nn.Module:
    """The backbone of ``arch`` (``{"kind": "cell" | "chain" | "torchvision", ...its arguments}``)."""
    return BACKBONES[arch["kind"]](**{k: v for k, v in arch.items() if k != "kind"})
