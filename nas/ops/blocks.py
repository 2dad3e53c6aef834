"""Multi-layer blocks: inverted residual (MobileNetV2), squeeze-and-excitation, inception-style
multi-branch, and ResNet basic / bottleneck blocks.

Block names carry their settings (``inverted_residual_k5_e6_se``) so that a genotype stays a
list of plain names and the registry stays the one place that builds ops.
"""
from __future__ import annotations

import torch
from torch import nn

from nas.ops.conv import ReLUConvBN
from nas.ops.registry import register


def _conv_bn(C_in: int, C_out: int, kernel: int, stride: int = 1, groups: int = 1, affine: bool = True):
    return [nn.Conv2d(C_in, C_out, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(C_out, affine=affine)]


class SqueezeExcite(nn.Module):
    """Channel attention: global pool, bottleneck MLP, sigmoid gate (Hu et al., 2018)."""

    def __init__(self, C: int, reduction: int = 4):
        super().__init__()
        hidden = max(8, C // reduction)
        self.fc1 = nn.Conv2d(C, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, C, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        return x * torch.sigmoid(self.fc2(torch.relu(self.fc1(s))))


class SEOp(nn.Module):
    """Squeeze-and-excitation as a cell op; a 1x1 ReLU-Conv-BN first when shape changes."""

    def __init__(self, C_in: int, C_out: int, stride: int, affine: bool = True):
        super().__init__()
        self.project = ReLUConvBN(C_in, C_out, 1, stride, affine) if (C_in != C_out or stride != 1) else None
        self.se = SqueezeExcite(C_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.project is not None:
            x = self.project(x)
        return self.se(x)


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand, depthwise kxk, optional SE, linear 1x1 project."""

    def __init__(self, C_in: int, C_out: int, stride: int, affine: bool = True, kernel: int = 3,
                 expansion: int = 6, se: bool = False):
        super().__init__()
        hidden = C_in * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers += [*_conv_bn(C_in, hidden, 1, affine=affine), nn.ReLU6(inplace=True)]
        layers += [*_conv_bn(hidden, hidden, kernel, stride, groups=hidden, affine=affine), nn.ReLU6(inplace=True)]
        if se:
            layers.append(SqueezeExcite(hidden))
        layers += _conv_bn(hidden, C_out, 1, affine=affine)
        self.body = nn.Sequential(*layers)
        self.use_residual = stride == 1 and C_in == C_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return x + out if self.use_residual else out


class Inception(nn.Module):
    """Inception-style block: 1x1 | 1x1-3x3 | 1x1-3x3-3x3 | pool-1x1, concatenated, projected."""

    def __init__(self, C_in: int, C_out: int, stride: int, affine: bool = True):
        super().__init__()
        b = max(C_out // 4, 4)
        self.relu = nn.ReLU(inplace=False)
        self.branch1 = nn.Sequential(*_conv_bn(C_in, b, 1, stride, affine=affine))
        self.branch3 = nn.Sequential(*_conv_bn(C_in, b, 1, affine=affine), nn.ReLU(inplace=True),
                                     *_conv_bn(b, b, 3, stride, affine=affine))
        self.branch33 = nn.Sequential(*_conv_bn(C_in, b, 1, affine=affine), nn.ReLU(inplace=True),
                                      *_conv_bn(b, b, 3, affine=affine), nn.ReLU(inplace=True),
                                      *_conv_bn(b, b, 3, stride, affine=affine))
        self.branch_pool = nn.Sequential(nn.MaxPool2d(3, stride, 1), *_conv_bn(C_in, b, 1, affine=affine))
        self.project = nn.Sequential(nn.ReLU(inplace=False), *_conv_bn(4 * b, C_out, 1, affine=affine))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        out = torch.cat([self.branch1(x), self.branch3(x), self.branch33(x), self.branch_pool(x)], dim=1)
        return self.project(out)


class ResidualBlock(nn.Module):
    """ResNet basic (two 3x3) or bottleneck (1x1-3x3-1x1, width C_out/4) block with shortcut."""

    def __init__(self, C_in: int, C_out: int, stride: int, affine: bool = True, bottleneck: bool = False):
        super().__init__()
        if bottleneck:
            mid = max(C_out // 4, 4)
            body = [*_conv_bn(C_in, mid, 1, affine=affine), nn.ReLU(inplace=True),
                    *_conv_bn(mid, mid, 3, stride, affine=affine), nn.ReLU(inplace=True),
                    *_conv_bn(mid, C_out, 1, affine=affine)]
        else:
            body = [*_conv_bn(C_in, C_out, 3, stride, affine=affine), nn.ReLU(inplace=True),
                    *_conv_bn(C_out, C_out, 3, affine=affine)]
        self.body = nn.Sequential(*body)
        if stride == 1 and C_in == C_out:
            self.shortcut: nn.Module = nn.Identity()
        else:
            self.shortcut = nn.Sequential(*_conv_bn(C_in, C_out, 1, stride, affine=affine))
        self.relu = nn.ReLU(inplace=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


register("squeeze_excite", "squeeze-and-excitation channel gate")(SEOp)
register("inception", "inception-style: 1x1 | 3x3 | 3x3-3x3 | pool-proj branches, concat, 1x1")(Inception)
register("res_basic", "ResNet basic block: two 3x3 convs + shortcut", bottleneck=False)(ResidualBlock)
register("res_bottleneck", "ResNet bottleneck: 1x1-3x3-1x1 (width C/4) + shortcut", bottleneck=True)(ResidualBlock)
for _k in (3, 5, 7):
    for _e in (1, 3, 4, 6):
        for _se in (False, True):
            register(f"inverted_residual_k{_k}_e{_e}" + ("_se" if _se else ""),
                     f"MobileNetV2 inverted residual, kernel {_k}, expansion {_e}" + (", with SE" if _se else ""),
                     kernel=_k, expansion=_e, se=_se)(InvertedResidual)
