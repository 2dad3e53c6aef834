"""Object detectors on a multi-scale backbone, from torchvision's own pieces.

A backbone declares its four stages (strides 4, 8, 16, 32) in ``feature_info``
(:class:`nas.builders.networks.Backbone`, or a torchvision network from
:func:`nas.builders.networks.torchvision_backbone`); torchvision's ``BackboneWithFPN`` takes
the selected stages by name and adds the pyramid; the detector is torchvision's
``FasterRCNN``, ``RetinaNet`` or ``FCOS`` with anchors that match the pyramid's levels and a
small input size. Each detector is one registered head (:mod:`nas.builders.heads`).

Example::

    backbone = torchvision_backbone(name="resnet18")
    model = build_detector("retinanet", backbone, num_classes=4, min_size=128, max_size=128)
    losses = model(images, targets)          # training mode: dict of losses
    model.eval(); detections = model(images) # list of {"boxes", "scores", "labels"}
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn
from torchvision.models.detection import FCOS, FasterRCNN, RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool, LastLevelP6P7

from nas.builders.heads import get_head, register_head
from nas.builders.networks import STRIDES
from nas.errors import NasError

EXTRA_BLOCKS = ("pool", "p6p7", None)


def check_backbone(backbone: nn.Module) -> None:
    """Raise :class:`NasError` unless ``backbone`` declares its four stages in ``feature_info``."""
    info = getattr(backbone, "feature_info", None)
    if (not isinstance(info, (list, tuple)) or len(info) != 4
            or not all(isinstance(i, dict) and {"module", "num_chs", "reduction"} <= set(i) for i in info)):
        raise NasError(f"backbone {type(backbone).__name__}: needs feature_info, a list of 4 dicts "
                       f"(module, num_chs, reduction) for its stages at strides {list(STRIDES)}, got {info!r}")
    if [i["reduction"] for i in info] != list(STRIDES):
        raise NasError(f"backbone {type(backbone).__name__}: needs stages at strides {list(STRIDES)}, got "
                       f"{[i['reduction'] for i in info]}")


def pyramid_strides(levels: Sequence[int], extra_blocks: str | None) -> list[int]:
    """The stride of every map of the pyramid: the backbone levels, then the extra ones."""
    strides = [STRIDES[i] for i in levels]
    extra = {"pool": 1, "p6p7": 2, None: 0}[extra_blocks]
    return strides + [strides[-1] * 2 ** (k + 1) for k in range(extra)]


def backbone_fpn(backbone: nn.Module, *, out_channels: int = 64, extra_blocks: str | None = "pool",
                 returned_layers: Sequence[int] = (0, 1, 2, 3)) -> BackboneWithFPN:
    """torchvision's ``BackboneWithFPN`` over the backbone stages ``returned_layers`` (0..3:
    strides 4..32), keyed ``"0"`` .. ``"3"`` by level, then ``"pool"`` (``extra_blocks="pool"``,
    one max-pooled level) or ``"p6"``, ``"p7"`` (``extra_blocks="p6p7"``, two strided convs).

    Example::

        fpn = backbone_fpn(backbone, out_channels=64, extra_blocks="p6p7", returned_layers=[1, 2, 3])
        list(fpn(images))  # ['1', '2', '3', 'p6', 'p7'], strides pyramid_strides([1, 2, 3], "p6p7")
    """
    check_backbone(backbone)
    levels = list(returned_layers)
    if not levels or sorted(set(levels)) != levels or not set(levels) <= {0, 1, 2, 3}:
        raise NasError(f"returned_layers must be increasing backbone levels from 0..3 (strides 4..32), got {levels}")
    if extra_blocks not in EXTRA_BLOCKS:
        raise NasError(f"extra_blocks must be one of {EXTRA_BLOCKS}, got {extra_blocks!r}")
    return _fpn(backbone, levels, out_channels, extra_blocks)


def _fpn(backbone: nn.Module, levels: list[int], out_channels: int, extra_blocks: str | None) -> BackboneWithFPN:
    info = backbone.feature_info
    extra = None
    if extra_blocks == "pool":
        extra = LastLevelMaxPool()
    elif extra_blocks == "p6p7":
        # Equal widths make P6 read the FPN's P5 rather than the raw C5 map (torchvision's
        # RetinaNet v1 and FCOS), which keeps the extra convs small for any backbone width.
        extra = LastLevelP6P7(out_channels, out_channels)
    return BackboneWithFPN(backbone, return_layers={info[i]["module"]: str(i) for i in levels},
                           in_channels_list=[info[i]["num_chs"] for i in levels], out_channels=out_channels,
                           extra_blocks=extra)


def _anchor_sizes(anchor_size: int, levels: int) -> list[int]:
    # one anchor size per pyramid level, doubling with each level
    return [anchor_size * 2**i for i in range(levels)]


@register_head("detection", "fasterrcnn")
def fasterrcnn(backbone: nn.Module, num_classes: int, *, fpn_channels: int = 64,
               returned_layers: Sequence[int] = (0, 1, 2, 3), anchor_size: int = 16, **kw: Any) -> nn.Module:
    """Faster R-CNN on all four levels plus a max-pooled one, as in torchvision; aspect ratios 0.5, 1, 2."""
    levels = list(returned_layers)
    fpn = _fpn(backbone, levels, fpn_channels, "pool")
    sizes = _anchor_sizes(anchor_size, len(levels) + 1)
    anchors = AnchorGenerator(tuple((s,) for s in sizes), ((0.5, 1.0, 2.0),) * len(sizes))
    roi_pool = MultiScaleRoIAlign(featmap_names=[str(i) for i in levels], output_size=7, sampling_ratio=2)
    # A 256-wide box head instead of torchvision's 1024: few classes and small images need far
    # less, and the two linear layers otherwise dominate the parameter count.
    representation = 256
    return FasterRCNN(fpn, rpn_anchor_generator=anchors, box_roi_pool=roi_pool,
                      box_head=TwoMLPHead(fpn_channels * 7 * 7, representation),
                      box_predictor=FastRCNNPredictor(representation, num_classes), **kw)


@register_head("detection", "retinanet")
def retinanet(backbone: nn.Module, num_classes: int, *, fpn_channels: int = 64,
              returned_layers: Sequence[int] = (1, 2, 3), anchor_size: int = 16, **kw: Any) -> nn.Module:
    """RetinaNet from stride 8 with P6/P7, as in its paper; three octave scales per anchor size."""
    levels = list(returned_layers)
    fpn = _fpn(backbone, levels, fpn_channels, "p6p7")
    sizes = _anchor_sizes(anchor_size, len(levels) + 2)
    octaves = (1.0, 2 ** (1 / 3), 2 ** (2 / 3))
    anchors = AnchorGenerator(tuple(tuple(int(s * o) for o in octaves) for s in sizes), ((0.5, 1.0, 2.0),) * len(sizes))
    return RetinaNet(fpn, num_classes, anchor_generator=anchors, **kw)


@register_head("detection", "fcos")
def fcos(backbone: nn.Module, num_classes: int, *, fpn_channels: int = 64, returned_layers: Sequence[int] = (1, 2, 3),
         anchor_size: int = 16, **kw: Any) -> nn.Module:
    """FCOS from stride 8 with P6/P7, as in its paper; one point per location sized by the level's stride."""
    levels = list(returned_layers)
    fpn = _fpn(backbone, levels, fpn_channels, "p6p7")
    # FCOS assigns each ground-truth box to a level by comparing its size with 4x and 8x the
    # anchor size, so the anchor size must be the level's stride, not a scaled one.
    strides = pyramid_strides(levels, "p6p7")
    anchors = AnchorGenerator(tuple((s,) for s in strides), ((1.0,),) * len(strides))
    return FCOS(fpn, num_classes, anchor_generator=anchors, **kw)


def build_detector(kind: str, backbone: nn.Module, num_classes: int, *, fpn_channels: int = 64, min_size: int = 128,
                   max_size: int = 128, returned_layers: Sequence[int] | None = None, anchor_size: int = 16,
                   **kw: Any) -> nn.Module:
    """Build a registered detector (``"fasterrcnn"``, ``"retinanet"``, ``"fcos"``) on ``backbone``.

    ``num_classes`` counts the background, as in torchvision: labels run ``1..num_classes-1``.
    Images are resized so that their short side is ``min_size`` (long side at most
    ``max_size``); the defaults suit the 128-pixel shapes data. There is one anchor size per
    pyramid level, ``anchor_size`` pixels on the finest level and doubling with each level; the
    16-pixel default covers objects an eighth of a 128-pixel image wide (torchvision's COCO
    defaults start at 32). FCOS ignores ``anchor_size``. ``returned_layers`` overrides the
    backbone levels the detector reads (Faster R-CNN all four, RetinaNet and FCOS 1..3). Extra
    keyword arguments go to the torchvision class (e.g. ``box_score_thresh``).

    Example::

        model = build_detector("fasterrcnn", backbone, num_classes=4)
        loss = sum(model([image], [target]).values())
    """
    builder = get_head("detection", kind)
    if num_classes < 2:
        raise NasError(f"num_classes counts the background and must be at least 2, got {num_classes}")
    if anchor_size < 1:
        raise NasError(f"anchor_size must be a positive number of pixels, got {anchor_size}")
    if kind == "fcos" and fpn_channels % 32:
        # torchvision's FCOS head normalises with GroupNorm(32, channels).
        raise NasError(f"fcos needs fpn_channels divisible by 32, got {fpn_channels}")
    check_backbone(backbone)
    if returned_layers is not None:
        levels = list(returned_layers)
        if not levels or sorted(set(levels)) != levels or not set(levels) <= {0, 1, 2, 3}:
            raise NasError(f"returned_layers must be increasing backbone levels from 0..3 (strides 4..32), got "
                           f"{levels}")
        kw["returned_layers"] = levels
    return builder(backbone, num_classes, fpn_channels=fpn_channels, min_size=min_size, max_size=max_size,
                   anchor_size=anchor_size, **kw)
