"""Convolutions, pooling, identity and zero: the DARTS / NAS-Bench-201 primitives.

Convolution ops follow DARTS' ReLU-Conv-BN order, so a cell's nodes (sums of op outputs) stay
un-normalised until the next op's ReLU.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import DeformConv2d

from nas.ops.registry import register


class ReLUConvBN(nn.Sequential):
    def __init__(self, C_in: int, C_out: int, kernel: int, stride: int, affine: bool = True,
                 dilation: int = 1, groups: int = 1):
        padding = dilation * (kernel - 1) // 2
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_out, kernel, stride, padding, dilation=dilation, groups=groups, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )


class SepConv(nn.Sequential):
    """Depthwise-separable convolution applied twice (DARTS' ``sep_conv``)."""

    def __init__(self, C_in: int, C_out: int, stride: int, affine: bool = True, kernel: int = 3):
        pad = (kernel - 1) // 2
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_in, kernel, stride, pad, groups=C_in, bias=False),
            nn.Conv2d(C_in, C_in, 1, bias=False),
            nn.BatchNorm2d(C_in, affine=affine),
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_in, kernel, 1, pad, groups=C_in, bias=False),
            nn.Conv2d(C_in, C_out, 1, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )


class DilConv(nn.Sequential):
    """Dilated (rate 2) depthwise conv followed by a pointwise conv."""

    def __init__(self, C_in: int, C_out: int, stride: int, affine: bool = True, kernel: int = 3, dilation: int = 2):
        pad = dilation * (kernel - 1) // 2
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_in, kernel, stride, pad, dilation=dilation, groups=C_in, bias=False),
            nn.Conv2d(C_in, C_out, 1, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )


class Conv7x1_1x7(nn.Sequential):
    def __init__(self, C_in: int, C_out: int, stride: int, affine: bool = True):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_in, (1, 7), (1, stride), (0, 3), bias=False),
            nn.Conv2d(C_in, C_out, (7, 1), (stride, 1), (3, 0), bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )


class Zero(nn.Module):
    """The ``none`` op: a zero tensor of the output shape (no gradient path)."""

    def __init__(self, C_out: int, stride: int):
        super().__init__()
        self.C_out = C_out
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1 and x.shape[1] == self.C_out:
            return x.mul(0.0)
        return x[:, :1, :: self.stride, :: self.stride].mul(0.0).expand(-1, self.C_out, -1, -1)


class FactorizedReduce(nn.Module):
    """Halve the resolution with two offset 1x1 convs (stride 2) concatenated."""

    def __init__(self, C_in: int, C_out: int, affine: bool = True):
        super().__init__()
        self.relu = nn.ReLU(inplace=False)
        # A 1x1 conv of stride 2 is a 1x1 conv of the even (or odd) pixels: the pixels are
        # picked first, so no strided 1x1 kernel runs (and none computes discarded outputs).
        self.conv_1 = nn.Conv2d(C_in, C_out // 2, 1, bias=False)
        self.conv_2 = nn.Conv2d(C_in, C_out - C_out // 2, 1, bias=False)
        self.bn = nn.BatchNorm2d(C_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        # The second conv sees the grid shifted by one pixel; padding keeps odd sizes aligned.
        odd = F.pad(x, (0, 1, 0, 1))[:, :, 1::2, 1::2]
        return self.bn(torch.cat([self.conv_1(x[:, :, ::2, ::2]), self.conv_2(odd)], dim=1))


class Pool(nn.Module):
    """3x3 max / average pooling; a 1x1 ReLU-Conv-BN first when the channels change."""

    def __init__(self, C_in: int, C_out: int, stride: int, affine: bool = True, kind: str = "max"):
        super().__init__()
        self.project = ReLUConvBN(C_in, C_out, 1, 1, affine) if C_in != C_out else None
        if kind == "max":
            self.pool = nn.MaxPool2d(3, stride, padding=1)
        else:
            self.pool = nn.AvgPool2d(3, stride, padding=1, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.project is not None:
            x = self.project(x)
        return self.pool(x)


def zero(C_in: int, C_out: int, stride: int, affine: bool = True) -> nn.Module:
    return Zero(C_out, stride)


def conv(C_in: int, C_out: int, stride: int, affine: bool = True, kernel: int = 3, groups: int = 1) -> nn.Module:
    """ReLU-Conv-BN; ``groups`` is capped to a common divisor of both widths (ResNeXt style)."""
    return ReLUConvBN(C_in, C_out, kernel, stride, affine, groups=math.gcd(math.gcd(C_in, C_out), groups))


def skip(C_in: int, C_out: int, stride: int, affine: bool = True) -> nn.Module:
    if stride == 2:
        return FactorizedReduce(C_in, C_out, affine)
    if C_in != C_out:
        return ReLUConvBN(C_in, C_out, 1, 1, affine)
    return nn.Identity()


class DeformConv(nn.Module):
    """ReLU - deformable 3x3 conv (offsets predicted by a zero-initialised conv) - BN."""

    def __init__(self, C_in: int, C_out: int, stride: int, affine: bool = True):
        super().__init__()
        self.relu = nn.ReLU(inplace=False)
        self.offset = nn.Conv2d(C_in, 2 * 9, 3, stride, 1)
        nn.init.zeros_(self.offset.weight)
        nn.init.zeros_(self.offset.bias)
        self.conv = DeformConv2d(C_in, C_out, 3, stride, 1, bias=False)
        self.bn = nn.BatchNorm2d(C_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        return self.bn(self.conv(x, self.offset(x)))


register("none", "zero output: removes the edge", parametric=False)(zero)
register("skip_connect", "identity; factorized reduce at stride 2", parametric=False)(skip)
register("max_pool_3x3", "3x3 max pooling", parametric=False, kind="max")(Pool)
register("avg_pool_3x3", "3x3 average pooling (padding excluded)", parametric=False, kind="avg")(Pool)
for _k in (1, 3, 5):
    register(f"conv_{_k}x{_k}", f"ReLU-Conv{_k}x{_k}-BN", kernel=_k)(conv)
for _k in (1, 3):
    register(f"nor_conv_{_k}x{_k}", f"ReLU-Conv{_k}x{_k}-BN (NAS-Bench-201 name)", kernel=_k)(conv)
for _k in (3, 5, 7):
    register(f"sep_conv_{_k}x{_k}", f"depthwise-separable {_k}x{_k}, applied twice", kernel=_k)(SepConv)
for _k in (3, 5):
    register(f"dil_conv_{_k}x{_k}", f"dilated (rate 2) depthwise-separable {_k}x{_k}", kernel=_k)(DilConv)
for _g in (2, 4, 8, 16, 32):
    register(f"grouped_conv_3x3_g{_g}", f"ReLU-grouped Conv3x3 ({_g} groups, ResNeXt style)-BN", kernel=3,
             groups=_g)(conv)
register("conv_7x1_1x7", "factorized 7x7: 1x7 then 7x1")(Conv7x1_1x7)
register("deform_conv_3x3", "deformable 3x3 conv (torchvision.ops.DeformConv2d)")(DeformConv)
