"""Plain-PyTorch definitions of every op and network shape that ``nas`` builds, for export.

``nas export --format source`` writes this file next to the weights, with its docstring
replaced and ``ARCH`` filled in with one architecture, so the result is a network that needs
nothing but torch. Module and parameter names mirror ``nas.builders`` exactly: the state dict
of a trained model (without its auxiliary head) loads here unchanged.

The one exception to "only torch" is the ``deform_conv_3x3`` op, which is
``torchvision.ops.DeformConv2d``: torchvision is imported only when an architecture uses it.
Training-only parts (auxiliary head, drop-path) are left out: this is the inference network.
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

ARCH: dict[str, Any] = {}


class ReLUConvBN(nn.Sequential):
    def __init__(self, C_in: int, C_out: int, kernel: int, stride: int, dilation: int = 1, groups: int = 1):
        padding = dilation * (kernel - 1) // 2
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_out, kernel, stride, padding, dilation=dilation, groups=groups, bias=False),
            nn.BatchNorm2d(C_out),
        )


class SepConv(nn.Sequential):
    """Depthwise-separable convolution, applied twice."""

    def __init__(self, C_in: int, C_out: int, kernel: int, stride: int):
        pad = (kernel - 1) // 2
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_in, kernel, stride, pad, groups=C_in, bias=False),
            nn.Conv2d(C_in, C_in, 1, bias=False),
            nn.BatchNorm2d(C_in),
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_in, kernel, 1, pad, groups=C_in, bias=False),
            nn.Conv2d(C_in, C_out, 1, bias=False),
            nn.BatchNorm2d(C_out),
        )


class DilConv(nn.Sequential):
    """Dilated (rate 2) depthwise conv, then a pointwise conv."""

    def __init__(self, C_in: int, C_out: int, kernel: int, stride: int, dilation: int = 2):
        pad = dilation * (kernel - 1) // 2
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_in, kernel, stride, pad, dilation=dilation, groups=C_in, bias=False),
            nn.Conv2d(C_in, C_out, 1, bias=False),
            nn.BatchNorm2d(C_out),
        )


class Conv7x1_1x7(nn.Sequential):
    def __init__(self, C_in: int, C_out: int, stride: int):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_in, (1, 7), (1, stride), (0, 3), bias=False),
            nn.Conv2d(C_in, C_out, (7, 1), (stride, 1), (3, 0), bias=False),
            nn.BatchNorm2d(C_out),
        )


class Zero(nn.Module):
    """The ``none`` op: zeros of the output shape."""

    def __init__(self, C_out: int, stride: int):
        super().__init__()
        self.C_out = C_out
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1 and x.shape[1] == self.C_out:
            return x.mul(0.0)
        return x[:, :1, :: self.stride, :: self.stride].mul(0.0).expand(-1, self.C_out, -1, -1)


class FactorizedReduce(nn.Module):
    """Halve the resolution with two 1x1 stride-2 convs, the second on the grid shifted by one."""

    def __init__(self, C_in: int, C_out: int):
        super().__init__()
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(C_in, C_out - C_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(C_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        shifted = F.pad(x, (0, 1, 0, 1))[:, :, 1:, 1:]
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(shifted)], dim=1))


class Pool(nn.Module):
    """3x3 max / average pooling; a 1x1 ReLU-Conv-BN first when the channels change."""

    def __init__(self, kind: str, C_in: int, C_out: int, stride: int):
        super().__init__()
        self.project = ReLUConvBN(C_in, C_out, 1, 1) if C_in != C_out else None
        if kind == "max":
            self.pool: nn.Module = nn.MaxPool2d(3, stride, padding=1)
        else:
            self.pool = nn.AvgPool2d(3, stride, padding=1, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.project is not None:
            x = self.project(x)
        return self.pool(x)


def skip(C_in: int, C_out: int, stride: int) -> nn.Module:
    if stride == 2:
        return FactorizedReduce(C_in, C_out)
    if C_in != C_out:
        return ReLUConvBN(C_in, C_out, 1, 1)
    return nn.Identity()


class DeformConv(nn.Module):
    """ReLU - deformable 3x3 conv (torchvision.ops.DeformConv2d) - BN. Needs torchvision."""

    def __init__(self, C_in: int, C_out: int, stride: int):
        super().__init__()
        try:
            from torchvision.ops import DeformConv2d
        except ImportError as exc:
            raise ImportError("this network uses deform_conv_3x3, which is torchvision.ops.DeformConv2d: "
                              "install torchvision to build it") from exc
        self.relu = nn.ReLU(inplace=False)
        self.offset = nn.Conv2d(C_in, 2 * 9, 3, stride, 1)
        self.conv = DeformConv2d(C_in, C_out, 3, stride, 1, bias=False)
        self.bn = nn.BatchNorm2d(C_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        return self.bn(self.conv(x, self.offset(x)))


def _conv_bn(C_in: int, C_out: int, kernel: int, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(C_in, C_out, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(C_out)]


class SqueezeExcite(nn.Module):
    """Channel attention: global pool, bottleneck MLP, sigmoid gate."""

    def __init__(self, C: int, reduction: int = 4):
        super().__init__()
        hidden = max(8, C // reduction)
        self.fc1 = nn.Conv2d(C, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, C, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        return x * torch.sigmoid(self.fc2(torch.relu(self.fc1(s))))


class SEOp(nn.Module):
    def __init__(self, C_in: int, C_out: int, stride: int):
        super().__init__()
        self.project = ReLUConvBN(C_in, C_out, 1, stride) if (C_in != C_out or stride != 1) else None
        self.se = SqueezeExcite(C_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.project is not None:
            x = self.project(x)
        return self.se(x)


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand, depthwise kxk, optional SE, linear 1x1 project."""

    def __init__(self, C_in: int, C_out: int, stride: int, kernel: int, expansion: int, se: bool = False):
        super().__init__()
        hidden = C_in * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers += [*_conv_bn(C_in, hidden, 1), nn.ReLU6(inplace=True)]
        layers += [*_conv_bn(hidden, hidden, kernel, stride, groups=hidden), nn.ReLU6(inplace=True)]
        if se:
            layers.append(SqueezeExcite(hidden))
        layers += _conv_bn(hidden, C_out, 1)
        self.body = nn.Sequential(*layers)
        self.use_residual = stride == 1 and C_in == C_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return x + out if self.use_residual else out


class Inception(nn.Module):
    """1x1 | 1x1-3x3 | 1x1-3x3-3x3 | pool-1x1 branches, concatenated, projected."""

    def __init__(self, C_in: int, C_out: int, stride: int):
        super().__init__()
        b = max(C_out // 4, 4)
        self.relu = nn.ReLU(inplace=False)
        self.branch1 = nn.Sequential(*_conv_bn(C_in, b, 1, stride))
        self.branch3 = nn.Sequential(*_conv_bn(C_in, b, 1), nn.ReLU(inplace=True), *_conv_bn(b, b, 3, stride))
        self.branch33 = nn.Sequential(*_conv_bn(C_in, b, 1), nn.ReLU(inplace=True), *_conv_bn(b, b, 3),
                                      nn.ReLU(inplace=True), *_conv_bn(b, b, 3, stride))
        self.branch_pool = nn.Sequential(nn.MaxPool2d(3, stride, 1), *_conv_bn(C_in, b, 1))
        self.project = nn.Sequential(nn.ReLU(inplace=False), *_conv_bn(4 * b, C_out, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        out = torch.cat([self.branch1(x), self.branch3(x), self.branch33(x), self.branch_pool(x)], dim=1)
        return self.project(out)


class ResidualBlock(nn.Module):
    """ResNet basic (two 3x3) or bottleneck (1x1-3x3-1x1) block with a shortcut."""

    def __init__(self, C_in: int, C_out: int, stride: int, bottleneck: bool):
        super().__init__()
        if bottleneck:
            mid = max(C_out // 4, 4)
            body = [*_conv_bn(C_in, mid, 1), nn.ReLU(inplace=True), *_conv_bn(mid, mid, 3, stride),
                    nn.ReLU(inplace=True), *_conv_bn(mid, C_out, 1)]
        else:
            body = [*_conv_bn(C_in, C_out, 3, stride), nn.ReLU(inplace=True), *_conv_bn(C_out, C_out, 3)]
        self.body = nn.Sequential(*body)
        if stride == 1 and C_in == C_out:
            self.shortcut: nn.Module = nn.Identity()
        else:
            self.shortcut = nn.Sequential(*_conv_bn(C_in, C_out, 1, stride))
        self.relu = nn.ReLU(inplace=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


def make_op(name: str, C_in: int, C_out: int, stride: int) -> nn.Module:
    """The op called ``name`` (the names of ``nas ops``); a ValueError for an unknown name."""
    if name == "none":
        return Zero(C_out, stride)
    if name == "skip_connect":
        return skip(C_in, C_out, stride)
    if name in ("max_pool_3x3", "avg_pool_3x3"):
        return Pool(name[:3], C_in, C_out, stride)
    if name == "conv_7x1_1x7":
        return Conv7x1_1x7(C_in, C_out, stride)
    if name == "deform_conv_3x3":
        return DeformConv(C_in, C_out, stride)
    if name == "squeeze_excite":
        return SEOp(C_in, C_out, stride)
    if name == "inception":
        return Inception(C_in, C_out, stride)
    if name in ("res_basic", "res_bottleneck"):
        return ResidualBlock(C_in, C_out, stride, bottleneck=name == "res_bottleneck")
    if m := re.fullmatch(r"(?:nor_)?conv_([135])x\1", name):
        return ReLUConvBN(C_in, C_out, int(m[1]), stride)
    if m := re.fullmatch(r"sep_conv_([357])x\1", name):
        return SepConv(C_in, C_out, int(m[1]), stride)
    if m := re.fullmatch(r"dil_conv_([35])x\1", name):
        return DilConv(C_in, C_out, int(m[1]), stride)
    if m := re.fullmatch(r"grouped_conv_3x3_g(\d+)", name):
        return ReLUConvBN(C_in, C_out, 3, stride, groups=math.gcd(math.gcd(C_in, C_out), int(m[1])))
    if m := re.fullmatch(r"inverted_residual_k([357])_e(\d+)(_se)?", name):
        return InvertedResidual(C_in, C_out, stride, int(m[1]), int(m[2]), se=bool(m[3]))
    raise ValueError(f"unknown op {name!r}")


class Cell(nn.Module):
    """Nodes sum their incoming ops; the output concatenates (or takes) the listed nodes."""

    def __init__(self, cell: dict[str, Any], *, inputs: int, C_pp: int, C_p: int, C: int, reduction: bool,
                 reduction_prev: bool):
        super().__init__()
        self.inputs = inputs
        self.reduction = reduction
        if inputs == 2:
            self.preprocess0 = FactorizedReduce(C_pp, C) if reduction_prev else ReLUConvBN(C_pp, C, 1, 1)
        self.preprocess1 = ReLUConvBN(C_p, C, 1, 1) if C_p != C else nn.Identity()
        self.ops = nn.ModuleList()
        self.wiring: list[list[tuple[int, int]]] = []  # per node: (source node, index into self.ops)
        for node_edges in cell["nodes"]:
            wires = []
            for op, src in node_edges:
                if op == "none":  # contributes zeros
                    continue
                wires.append((src, len(self.ops)))
                self.ops.append(make_op(op, C, C, 2 if reduction and src < inputs else 1))
            self.wiring.append(wires)
        self.concat = list(cell["concat"])
        self.C = C
        self.out_channels = C * len(self.concat)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)] if self.inputs == 2 else [self.preprocess1(s1)]
        for wires in self.wiring:
            total = None
            for src, k in wires:
                h = self.ops[k](states[src])
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
    """Between NAS-Bench-201 stages: two ReLU-Conv-BN 3x3 (the first with stride 2) plus an
    average-pool + 1x1 conv shortcut."""

    def __init__(self, C_in: int, C_out: int):
        super().__init__()
        self.conv_a = ReLUConvBN(C_in, C_out, 3, 2)
        self.conv_b = ReLUConvBN(C_out, C_out, 3, 1)
        self.downsample = nn.Sequential(nn.AvgPool2d(2, 2), nn.Conv2d(C_in, C_out, 1, bias=False))
        self.out_channels = C_out

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        return self.conv_b(self.conv_a(s1)) + self.downsample(s1)


class CellStack(nn.Module):
    def __init__(self, arch: dict[str, Any], *, C: int, C_stem: int, plan: list[bool]):
        super().__init__()
        self.cells = nn.ModuleList()
        C_pp, C_p, C_curr, reduction_prev = C_stem, C_stem, C, False
        for reduction in plan:
            if reduction:
                C_curr *= 2
            if reduction and arch["reduction"] == "residual":
                cell: nn.Module = ResidualReduction(C_p, C_curr)
            else:
                cell = Cell(arch["cells"]["reduction" if reduction else "normal"], inputs=arch["inputs"],
                            C_pp=C_pp, C_p=C_p, C=C_curr, reduction=reduction, reduction_prev=reduction_prev)
            self.cells.append(cell)
            C_pp, C_p, reduction_prev = C_p, cell.out_channels, reduction
        self.out_channels = C_p


class CellNetwork(nn.Module):
    """Stem, cells with reductions at 1/3 and 2/3 of the depth, global pooling, classifier."""

    def __init__(self, arch: dict[str, Any]):
        super().__init__()
        C, layers = arch["init_channels"], arch["layers"]
        C_stem = arch["stem_multiplier"] * C
        self.stem = nn.Sequential(*_conv_bn(arch["in_channels"], C_stem, 3))
        reductions = (layers // 3, 2 * layers // 3)
        self.body = CellStack(arch, C=C, C_stem=C_stem, plan=[i in reductions for i in range(layers)])
        C_out = self.body.out_channels
        self.head = (nn.Sequential(nn.BatchNorm2d(C_out), nn.ReLU(inplace=True)) if arch["head"] == "bn_relu"
                     else nn.Identity())
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_out, arch["num_classes"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s0 = s1 = self.stem(x)
        for cell in self.body.cells:
            s0, s1 = s1, cell(s0, s1)
        return self.classifier(self.global_pool(self.head(s1)).flatten(1))


class ChainBody(nn.Module):
    def __init__(self, stages: list[dict[str, Any]], C_in: int):
        super().__init__()
        self.stages = nn.ModuleList()
        for stage in stages:
            blocks = []
            for i, op in enumerate(stage["blocks"]):
                blocks.append(make_op(op, C_in, stage["channels"], stage["stride"] if i == 0 else 1))
                C_in = stage["channels"]
            self.stages.append(nn.Sequential(*blocks))
        self.out_channels = C_in


class ChainNetwork(nn.Module):
    """MobileNet-style: stem, stages of blocks, 1x1 head conv, pooling, dropout, classifier."""

    def __init__(self, arch: dict[str, Any]):
        super().__init__()
        C_stem, C_head = arch["stem_channels"], arch["head_channels"]
        self.stem = nn.Sequential(*_conv_bn(arch["in_channels"], C_stem, 3, arch["stem_stride"]),
                                  nn.ReLU6(inplace=True))
        self.body = ChainBody(arch["stages"], C_stem)
        self.head = nn.Sequential(*_conv_bn(self.body.out_channels, C_head, 1), nn.ReLU6(inplace=True))
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(arch["dropout"])
        self.classifier = nn.Linear(C_head, arch["num_classes"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for stage in self.body.stages:
            x = stage(x)
        return self.classifier(self.dropout(self.global_pool(self.head(x)).flatten(1)))


def build(arch: dict[str, Any] | None = None) -> nn.Module:
    """The network of ``arch`` (default: this file's ``ARCH``) with fresh weights, in eval mode."""
    arch = ARCH if arch is None else arch
    network = CellNetwork(arch) if arch["kind"] == "cell" else ChainNetwork(arch)
    return network.eval()


def load(weights: str | Path | None = None) -> nn.Module:
    """The model of :func:`build` with its trained weights, in eval mode.

    ``weights`` defaults to ``model.safetensors`` next to this file when the safetensors
    package is installed, else ``model_state_dict.pt`` (read with ``weights_only=True``).
    """
    here = Path(__file__).resolve().parent
    if weights is None:
        try:
            from safetensors.torch import load_file  # noqa: F401
            weights = here / "model.safetensors"
        except ImportError:
            weights = here / "model_state_dict.pt"
    weights = Path(weights)
    if weights.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(weights))
    else:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    model = build()
    model.load_state_dict(state)
    return model.eval()


if __name__ == "__main__":
    net = load()
    size = ARCH.get("input_size", 32)
    print(net(torch.zeros(1, ARCH["in_channels"], size, size)).shape)
