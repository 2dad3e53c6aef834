"""Semantic segmentation heads on a multi-scale backbone.

The backbone returns its four maps (strides 4, 8, 16, 32) from ``forward`` and declares them
in ``feature_info`` (:class:`nas.builders.networks.Backbone`, or a torchvision network wrapped by
``create_feature_extractor``). Every model built here maps ``(N, 3, H, W)`` images to
``(N, num_classes, H, W)`` logits at the input resolution: a plain tensor, not a dict, so
tracing and ONNX export take it as is. Each head is one registered builder
(:mod:`nas.builders.heads`); FCN and DeepLabV3 are torchvision's ``FCNHead`` / ``DeepLabHead``.

Example::

    model = build_segmenter("unet", backbone, num_classes=4)
    logits = model(images)            # (N, 4, H, W)
    labels = logits.argmax(dim=1)     # (N, H, W)
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.segmentation.deeplabv3 import DeepLabHead
from torchvision.models.segmentation.fcn import FCNHead

from nas.builders.detection import check_backbone
from nas.builders.heads import get_head, heads, register_head
from nas.builders.networks import STRIDES
from nas.errors import NasError


def _resize_to(x: Tensor, size: Sequence[int]) -> Tensor:
    # Inputs whose sides are not multiples of 32 leave the decoder a few pixels off.
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


class HeadSegmenter(nn.Module):
    """A backbone with a single-map head (FCN or DeepLabV3) upsampled bilinearly.

    ``forward(x)`` returns ``(N, num_classes, H, W)`` logits.
    """

    def __init__(self, backbone: nn.Module, head: nn.Module, feature: str) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.feature = feature

    def forward(self, x: Tensor) -> Tensor:
        logits = self.head(self.backbone(x)[self.feature])
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


def _conv_bn_relu(c_in: int, c_out: int) -> nn.Sequential:
    conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


def _up_bn_relu(c_in: int, c_out: int) -> nn.Sequential:
    up = nn.ConvTranspose2d(c_in, c_out, 2, stride=2, bias=False)
    return nn.Sequential(up, nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class UNetDecoder(nn.Module):
    """U-Net decoder over the four contract levels.

    From stride 32 down to stride 4, each step doubles the resolution with a 2x2 transposed
    convolution to the next level's width, concatenates that level's map (the skip) and
    mixes them with two 3x3 conv-BN-ReLU layers. Two more transposed convolutions take
    stride 4 to full resolution, then a 1x1 conv gives the class logits.
    """

    def __init__(self, channels: Sequence[int], num_classes: int) -> None:
        super().__init__()
        self.ups = nn.ModuleList()
        self.fuses = nn.ModuleList()
        for deep, shallow in zip(channels[:0:-1], channels[-2::-1]):
            self.ups.append(nn.ConvTranspose2d(deep, shallow, 2, stride=2))
            self.fuses.append(nn.Sequential(_conv_bn_relu(2 * shallow, shallow), _conv_bn_relu(shallow, shallow)))
        # Full-resolution layers are the most expensive, so they run at half the stride-4 width.
        width = max(channels[0] // 2, 8)
        self.final = nn.Sequential(
            _up_bn_relu(channels[0], width), _up_bn_relu(width, width), nn.Conv2d(width, num_classes, 1)
        )

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        x = features[-1]
        for up, fuse, skip in zip(self.ups, self.fuses, features[-2::-1]):
            x = _resize_to(up(x), skip.shape[-2:])
            x = fuse(torch.cat([x, skip], dim=1))
        return self.final(x)


class UNetSegmenter(nn.Module):
    """A backbone with a :class:`UNetDecoder`; ``forward(x)`` returns ``(N, num_classes, H, W)``."""

    def __init__(self, backbone: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.decoder = UNetDecoder([info["num_chs"] for info in backbone.feature_info], num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return _resize_to(self.decoder(list(self.backbone(x).values())), x.shape[-2:])


@register_head("segmentation", "fcn")
def fcn(backbone: nn.Module, num_classes: int, *, feature_stride: int = 32, **kw: Any) -> nn.Module:
    """torchvision's ``FCNHead`` on the map at ``feature_stride``, upsampled bilinearly."""
    info = backbone.feature_info[STRIDES.index(feature_stride)]
    return HeadSegmenter(backbone, FCNHead(info["num_chs"], num_classes), info["module"])


@register_head("segmentation", "deeplabv3")
def deeplabv3(backbone: nn.Module, num_classes: int, *, feature_stride: int = 32,
              atrous_rates: Sequence[int] = (6, 12, 18), **kw: Any) -> nn.Module:
    """torchvision's ASPP ``DeepLabHead`` (dilations ``atrous_rates``) on the map at ``feature_stride``."""
    info = backbone.feature_info[STRIDES.index(feature_stride)]
    head = DeepLabHead(info["num_chs"], num_classes, atrous_rates=tuple(atrous_rates))
    return HeadSegmenter(backbone, head, info["module"])


@register_head("segmentation", "unet")
def unet(backbone: nn.Module, num_classes: int, **kw: Any) -> nn.Module:
    """U-Net decoder over all four levels, with skip connections and learnable upsampling."""
    return UNetSegmenter(backbone, num_classes)


def build_segmenter(kind: str, backbone: nn.Module, num_classes: int, *, feature_stride: int = 32,
                    atrous_rates: Sequence[int] = (6, 12, 18), **kw: Any) -> nn.Module:
    """Build a registered segmenter (``"fcn"``, ``"deeplabv3"``, ``"unet"``) on ``backbone``.

    ``num_classes`` counts the background (class 0). ``"fcn"`` puts torchvision's
    ``FCNHead`` and ``"deeplabv3"`` its ASPP ``DeepLabHead`` (dilations ``atrous_rates``) on
    the backbone map at ``feature_stride`` (32 or 16; at 16 the last stage goes unused) and
    upsamples bilinearly; ``"unet"`` decodes all four levels with skip connections and
    learnable upsampling. The model's ``forward(x)`` returns ``(N, num_classes, H, W)`` logits.

    Example::

        model = build_segmenter("deeplabv3", backbone, num_classes=21, feature_stride=16)
        model(torch.zeros(2, 3, 128, 128)).shape  # (2, 21, 128, 128)
    """
    if kind not in heads("segmentation"):
        raise NasError(f"unknown segmenter {kind!r}; choose one of {', '.join(heads('segmentation'))}")
    builder = get_head("segmentation", kind)
    if num_classes < 2:
        raise NasError(f"num_classes counts the background and must be at least 2, got {num_classes}")
    check_backbone(backbone)
    if feature_stride not in (16, 32):
        raise NasError(f"feature_stride must be 16 or 32, got {feature_stride}")
    if kind in ("fcn", "deeplabv3"):
        kw["feature_stride"] = feature_stride
    if kind == "deeplabv3":
        kw["atrous_rates"] = tuple(atrous_rates)
    return builder(backbone, num_classes, **kw)
