"""Measuring a network: parameters, multiply-adds, activation memory and latency.

One :func:`measure` for every model ``nas`` builds: a classifier (a batch of images in,
logits out), a detector (a list of images in, torchvision style) or a segmenter. For detectors
and segmenters the backbone alone is measured too (``backbone_params``, ``backbone_macs``).
"""
from __future__ import annotations

import statistics
import time
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

MACS_CONVENTION = ("MACs = multiply-accumulates of convolutions and matrix products in one forward pass "
                   "of one image, counted by torch.utils.flop_counter (which reports FLOPs = 2 x MACs); "
                   "element-wise ops, pooling and normalisation (for detectors also RoI align and NMS) "
                   "are not counted")


def count_parameters(model: nn.Module, *, exclude: str = "auxiliary") -> int:
    """Trainable parameters, without those of modules whose name contains ``exclude`` (the
    auxiliary head, as papers report)."""
    return sum(p.numel() for n, p in model.named_parameters() if p.requires_grad and not (exclude and exclude in n))


def task_backbone(model: nn.Module) -> nn.Module:
    """The multi-scale backbone inside a detector or segmenter (without a detector's FPN)."""
    backbone = model.backbone
    return backbone.body if hasattr(backbone, "fpn") else backbone


def _outputs(obj: Any) -> list[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, dict):
        obj = list(obj.values())
    if isinstance(obj, (list, tuple)):
        return [t for o in obj for t in _outputs(o)]
    return []


def _example(model: nn.Module, input_size: tuple[int, ...], batch_size: int, task: str) -> Any:
    """Seeded images in the model's input form: a batch tensor, or a list for a detector (whose
    work after the backbone depends on the pixels, so they are the same for every call)."""
    device = next(model.parameters()).device
    x = torch.rand(batch_size, *input_size, generator=torch.Generator().manual_seed(0)).to(device)
    return list(x) if task == "detection" else x


@torch.no_grad()
def _run(model: nn.Module, x: Any, fn=None) -> Any:
    was_training = model.training
    model.eval()
    try:
        return (fn or model)(x)
    finally:
        model.train(was_training)


def count_macs(model: nn.Module, input_size: tuple[int, ...], *, task: str = "classification") -> int:
    counter = FlopCounterMode(display=False)
    with counter:
        _run(model, _example(model, input_size, 1, task))
    return counter.get_total_flops() // 2


def activation_bytes(model: nn.Module, input_size: tuple[int, ...], *, task: str = "classification") -> int:
    """Bytes of all leaf-module outputs in one forward pass of one image: the activations a
    training step keeps for the backward pass (an upper bound where ops share storage)."""
    total = 0

    def hook(_module, _inputs, output):
        nonlocal total
        total += sum(t.numel() * t.element_size() for t in _outputs(output))

    handles = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
    try:
        _run(model, _example(model, input_size, 1, task))
    finally:
        for h in handles:
            h.remove()
    return total


def latency_ms(model: nn.Module, input_size: tuple[int, ...], *, task: str = "classification", batch_size: int = 1,
               repeats: int = 20, warmup: int = 3) -> float:
    """Median forward latency in milliseconds (eval mode) on the model's device."""
    device = next(model.parameters()).device
    x = _example(model, input_size, batch_size, task)
    times = []

    def timed(inputs: Any) -> None:
        for i in range(warmup + repeats):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            model(inputs)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if i >= warmup:
                times.append((time.perf_counter() - start) * 1000)

    _run(model, x, timed)
    return statistics.median(times)


def measure(model: nn.Module, input_size: tuple[int, ...] = (3, 32, 32), *, task: str = "classification",
            latency: bool = True, batch_size: int = 1, repeats: int = 20) -> dict[str, Any]:
    """Parameters, MACs, activation memory (MiB) and median latency (ms) of ``model``; for a
    detector or segmenter (``task``) also its backbone's parameters and MACs.

    >>> from nas.builders import build_classifier
    >>> from nas.genotype import get_reference
    >>> m = measure(build_classifier(get_reference("NB201_RESNET")), latency=False)
    >>> m["params"]
    559386
    """
    device = next(model.parameters()).device
    result: dict[str, Any] = {
        "params": count_parameters(model),
        "macs": count_macs(model, input_size, task=task),
        "activation_mib": activation_bytes(model, input_size, task=task) / 2**20,
        "input_size": list(input_size),
        "device": str(device),
    }
    if task != "classification":
        backbone = task_backbone(model)
        result["backbone_params"] = count_parameters(backbone)
        result["backbone_macs"] = count_macs(backbone, input_size)
    if latency:
        result["latency_ms"] = latency_ms(model, input_size, task=task, batch_size=batch_size, repeats=repeats)
        result["latency_batch_size"] = batch_size
    return result
