"""Cells and the blocks between them, built from plain data as static modules.

A cell is described as ``{"nodes": [[[op, source], ...], ...], "concat": [...]}`` (what
:meth:`nas.builders.ModelSpec.arch` writes from a validated genotype): these classes read only
ints, strings and lists, so the source export copies them as they are.
"""
from __future__ import annotations

import torch
from torch import nn

from nas.ops import create_op
from nas.ops.conv import FactorizedReduce, ReLUConvBN


def drop_path(x: torch.Tensor, drop_prob: float) -> torch.Tensor:
    """Zero whole samples of a branch with probability ``drop_prob`` (scaled to keep the mean)."""
    keep = 1.0 - drop_prob
    mask = x.new_empty(x.shape[0], 1, 1, 1).bernoulli_(keep)
    return x.div(keep) * mask


class Cell(nn.Module):
    """One cell: nodes sum their incoming ops; the output concatenates (or takes) nodes.

    ``C_pp`` / ``C_p`` are the channels of the two previous cells' outputs; both are first
    mapped to ``C`` channels (a factorized reduce when the previous cell halved the grid).
    Edges from the cell inputs have stride 2 in a reduction cell.
    """

    def __init__(self, cell: dict, *, inputs: int, C_pp: int, C_p: int, C: int,
                 reduction: bool, reduction_prev: bool):
        super().__init__()
        self.inputs = inputs
        self.reduction = reduction
        if inputs == 2:
            self.preprocess0 = FactorizedReduce(C_pp, C) if reduction_prev else ReLUConvBN(C_pp, C, 1, 1)
        self.preprocess1 = ReLUConvBN(C_p, C, 1, 1) if C_p != C else nn.Identity()
        self.ops = nn.ModuleList()
        self.wiring: list[list[tuple[int, int]]] = []  # per node: (source, index into self.ops)
        for node_edges in cell["nodes"]:
            wires = []
            for op, src in node_edges:
                if op == "none":  # contributes zeros: build nothing
                    continue
                stride = 2 if reduction and src < inputs else 1
                wires.append((src, len(self.ops)))
                self.ops.append(create_op(op, C, C, stride))
            self.wiring.append(wires)
        self.concat = list(cell["concat"])
        self.C = C
        self.out_channels = C * len(self.concat)
        self.drop_prob = 0.0

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)] if self.inputs == 2 else [self.preprocess1(s1)]
        for wires in self.wiring:
            total = None
            for src, k in wires:
                op = self.ops[k]
                h = op(states[src])
                if self.training and self.drop_prob > 0 and not isinstance(op, nn.Identity):
                    h = drop_path(h, self.drop_prob)
                total = h if total is None else total + h
            if total is None:  # every edge is `none`: the node is zero
                ref = states[0]
                stride = 2 if self.reduction else 1
                total = ref.new_zeros(ref.shape[0], self.C, -(-ref.shape[2] // stride), -(-ref.shape[3] // stride))
            states.append(total)
        if len(self.concat) == 1:
            return states[self.concat[0]]
        return torch.cat([states[i] for i in self.concat], dim=1)


class ResidualReduction(nn.Module):
    """The reduction block between NAS-Bench-201 stages: two ReLU-Conv-BN 3x3 (first with
    stride 2) plus an average-pool + 1x1 conv shortcut."""

    def __init__(self, C_in: int, C_out: int):
        super().__init__()
        self.conv_a = ReLUConvBN(C_in, C_out, 3, 2)
        self.conv_b = ReLUConvBN(C_out, C_out, 3, 1)
        self.downsample = nn.Sequential(nn.AvgPool2d(2, 2), nn.Conv2d(C_in, C_out, 1, bias=False))
        self.out_channels = C_out
        self.drop_prob = 0.0

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        return self.conv_b(self.conv_a(s1)) + self.downsample(s1)


class AuxiliaryHead(nn.Module):
    """DARTS' auxiliary classifier on the 2/3-depth features (any input size: adaptive pool)."""

    def __init__(self, C: int, num_classes: int):
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(2),
            nn.Conv2d(C, 128, 1, bias=False), nn.BatchNorm2d(128), nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False), nn.BatchNorm2d(768), nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))
