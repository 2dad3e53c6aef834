"""Measuring a network: parameters, multiply-adds, activation memory and latency."""
from __future__ import annotations

import statistics
import time
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

MACS_CONVENTION = ("MACs = multiply-accumulates of convolutions and matrix products in one forward pass "
                   "of one image, counted by torch.utils.flop_counter (which reports FLOPs = 2 x MACs); "
                   "element-wise ops, pooling and normalisation are not counted")


def count_parameters(model: nn.Module, *, exclude: str = "auxiliary") -> int:
    """Trainable parameters, without those of modules whose name contains ``exclude`` (the
    auxiliary head, as papers report)."""
    return sum(p.numel() for n, p in model.named_parameters() if p.requires_grad and not (exclude and exclude in n))


def _outputs(obj: Any) -> list[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, dict):
        obj = list(obj.values())
    if isinstance(obj, (list, tuple)):
        return [t for o in obj for t in _outputs(o)]
    return []


@torch.no_grad()
def count_macs(model: nn.Module, input_size: tuple[int, ...]) -> int:
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    with counter:
        model(torch.zeros(1, *input_size, device=device))
    model.train(was_training)
    return counter.get_total_flops() // 2


@torch.no_grad()
def activation_bytes(model: nn.Module, input_size: tuple[int, ...]) -> int:
    """Bytes of all leaf-module outputs in one forward pass of one image: the activations a
    training step keeps for the backward pass (an upper bound where ops share storage)."""
    device = next(model.parameters()).device
    total = 0

    def hook(_module, _inputs, output):
        nonlocal total
        total += sum(t.numel() * t.element_size() for t in _outputs(output))

    handles = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
    was_training = model.training
    model.eval()
    try:
        model(torch.zeros(1, *input_size, device=device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return total


@torch.no_grad()
def latency_ms(model: nn.Module, input_size: tuple[int, ...], *, batch_size: int = 1, repeats: int = 20,
               warmup: int = 3) -> float:
    """Median forward latency in milliseconds (eval mode) on the model's device."""
    device = next(model.parameters()).device
    x = torch.randn(batch_size, *input_size, device=device)
    was_training = model.training
    model.eval()
    times = []
    for i in range(warmup + repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        model(x)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= warmup:
            times.append((time.perf_counter() - start) * 1000)
    model.train(was_training)
    return statistics.median(times)


def measure(model: nn.Module, input_size: tuple[int, ...] = (3, 32, 32), *, latency: bool = True,
            batch_size: int = 1, repeats: int = 20) -> dict[str, Any]:
    """Parameters, MACs, activation memory (MiB) and median latency (ms) of ``model``.

    >>> from nas.builders import build_classifier
    >>> from nas.genotype import get_reference
    >>> m = measure(build_classifier(get_reference("NB201_RESNET")), latency=False)
    >>> m["params"]
    559386
    """
    device = next(model.parameters()).device
    result: dict[str, Any] = {
        "params": count_parameters(model),
        "macs": count_macs(model, input_size),
        "activation_mib": activation_bytes(model, input_size) / 2**20,
        "input_size": list(input_size),
        "device": str(device),
    }
    if latency:
        result["latency_ms"] = latency_ms(model, input_size, batch_size=batch_size, repeats=repeats)
        result["latency_batch_size"] = batch_size
    return result
