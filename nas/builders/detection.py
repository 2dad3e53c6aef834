"""Object detectors on top of a multi-scale backbone.

The backbone contract used throughout :mod:`nas.builders`: an ``nn.Module`` whose
``forward(x)`` returns an ``OrderedDict[str, Tensor]`` with keys ``"0".."3"`` at strides
4, 8, 16 and 32, and which has the attributes ``out_channels_list`` (the channels of those
four maps, in order) and ``strides == [4, 8, 16, 32]``.

:class:`BackboneFPN` turns such a backbone into the single-width pyramid that torchvision's
detection models expect; :func:`build_detector` wires it into torchvision's ``FasterRCNN``,
``RetinaNet`` or ``FCOS`` with anchors that match the pyramid's levels and a small input size.

Example::

    backbone = torchvision_backbone("resnet18")
    model = build_detector("retinanet", backbone, num_classes=4, min_size=128, max_size=128)
    losses = model(images, targets)          # training mode: dict of losses
    model.eval(); detections = model(images) # list of {"boxes", "scores", "labels"}
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn
from torchvision.models import mobilenet_v3_large, resnet18
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.detection import FCOS, FasterRCNN, RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.ops import FeaturePyramidNetwork, MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import ExtraFPNBlock, LastLevelMaxPool, LastLevelP6P7

from nas.errors import NasError

BACKBONE_STRIDES = [4, 8, 16, 32]
DETECTOR_KINDS = ("fasterrcnn", "retinanet", "fcos")
EXTRA_BLOCKS = ("pool", "p6p7", None)

# Backbone levels (indices into the four contract levels) each detector reads by default:
# Faster R-CNN uses all four plus a max-pooled level, as in torchvision; RetinaNet and FCOS
# start at stride 8 and add P6/P7, as in their papers.
_DEFAULT_LEVELS = {"fasterrcnn": (0, 1, 2, 3), "retinanet": (1, 2, 3), "fcos": (1, 2, 3)}
_DEFAULT_EXTRA = {"fasterrcnn": "pool", "retinanet": "p6p7", "fcos": "p6p7"}


def check_backbone(backbone: nn.Module) -> None:
    """Raise :class:`NasError` unless ``backbone`` declares the four-level contract."""
    name = type(backbone).__name__
    channels = getattr(backbone, "out_channels_list", None)
    if not isinstance(channels, (list, tuple)) or len(channels) != 4:
        raise NasError(
            f"backbone {name}: needs an attribute out_channels_list with the channels of its 4 "
            f"feature maps (strides 4, 8, 16, 32), got {channels!r}"
        )
    strides = getattr(backbone, "strides", None)
    if strides is None or list(strides) != BACKBONE_STRIDES:
        raise NasError(f"backbone {name}: needs strides == {BACKBONE_STRIDES}, got {strides!r}")


class BackboneFPN(nn.Module):
    """A contract backbone followed by a ``torchvision.ops.FeaturePyramidNetwork``.

    ``forward(x)`` returns an ``OrderedDict`` of ``out_channels``-wide maps: the selected
    backbone levels under their keys (``"0".."3"``), then ``"pool"`` (``extra_blocks="pool"``,
    one extra level by max pooling) or ``"p6"``, ``"p7"`` (``extra_blocks="p6p7"``, two
    extra strided convs). ``strides`` lists the stride of every output, in order, and
    ``featmap_names`` the keys of the levels that are backbone maps.

    Example::

        fpn = BackboneFPN(backbone, out_channels=64, extra_blocks="p6p7", returned_layers=[1, 2, 3])
        fpn.strides  # [8, 16, 32, 64, 128]
    """

    def __init__(
        self,
        backbone: nn.Module,
        *,
        out_channels: int = 64,
        extra_blocks: str | None = "pool",
        returned_layers: Sequence[int] = (0, 1, 2, 3),
    ) -> None:
        super().__init__()
        check_backbone(backbone)
        levels = list(returned_layers)
        if not levels or sorted(set(levels)) != levels or not set(levels) <= {0, 1, 2, 3}:
            raise NasError(
                f"returned_layers must be increasing backbone levels from 0..3 (strides 4..32), got {levels}"
            )
        if extra_blocks not in EXTRA_BLOCKS:
            raise NasError(f"extra_blocks must be one of {EXTRA_BLOCKS}, got {extra_blocks!r}")
        extra: ExtraFPNBlock | None = None
        strides = [BACKBONE_STRIDES[i] for i in levels]
        if extra_blocks == "pool":
            extra = LastLevelMaxPool()
            strides.append(strides[-1] * 2)
        elif extra_blocks == "p6p7":
            # Equal widths make P6 read the FPN's P5 rather than the raw C5 map (torchvision's
            # RetinaNet v1 and FCOS), which keeps the extra convs small for any backbone width.
            extra = LastLevelP6P7(out_channels, out_channels)
            strides += [strides[-1] * 2, strides[-1] * 4]
        self.body = backbone
        self.levels = levels
        self.featmap_names = [str(i) for i in levels]
        self.fpn = FeaturePyramidNetwork(
            [backbone.out_channels_list[i] for i in levels], out_channels, extra_blocks=extra
        )
        self.out_channels = out_channels
        self.strides = strides

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        features = self.body(x)
        return self.fpn(OrderedDict((name, features[name]) for name in self.featmap_names))


def build_detector(
    kind: str,
    backbone: nn.Module,
    num_classes: int,
    *,
    fpn_channels: int = 64,
    min_size: int = 128,
    max_size: int = 128,
    returned_layers: Sequence[int] | None = None,
    anchor_size: int = 16,
    **kw: Any,
) -> nn.Module:
    """Build a torchvision detector (``"fasterrcnn"``, ``"retinanet"`` or ``"fcos"``).

    ``num_classes`` counts the background, as in torchvision: labels run ``1..num_classes-1``
    (``ShapesDataset.num_classes`` and ``CocoDetection.num_classes`` are in this form).
    Images are resized so that their short side is ``min_size`` (long side at most
    ``max_size``); the defaults suit the 128-pixel shapes data. There is one anchor size per
    pyramid level, ``anchor_size`` pixels on the finest level and doubling with each level,
    so the anchors match however many levels the pyramid has; Faster R-CNN uses aspect
    ratios 0.5, 1, 2 and RetinaNet adds three octave scales per size. The 16-pixel default
    covers objects an eighth of a 128-pixel image wide (torchvision's COCO defaults start at
    32). FCOS ignores ``anchor_size``: its one point per location is sized by the level's
    stride. Extra keyword arguments go to the torchvision class (e.g. ``box_score_thresh``,
    ``score_thresh``, ``detections_per_img``).

    Training mode: ``model(images, targets)`` returns a dict of losses; eval mode:
    ``model(images)`` returns one ``{"boxes", "scores", "labels"}`` dict per image.

    Example::

        model = build_detector("fasterrcnn", backbone, num_classes=4)
        loss = sum(model([image], [target]).values())
    """
    if kind not in DETECTOR_KINDS:
        raise NasError(f"unknown detector {kind!r}; choose one of {', '.join(DETECTOR_KINDS)}")
    if num_classes < 2:
        raise NasError(f"num_classes counts the background and must be at least 2, got {num_classes}")
    if anchor_size < 1:
        raise NasError(f"anchor_size must be a positive number of pixels, got {anchor_size}")
    if kind == "fcos" and fpn_channels % 32:
        # torchvision's FCOS head normalises with GroupNorm(32, channels).
        raise NasError(f"fcos needs fpn_channels divisible by 32, got {fpn_channels}")
    levels = _DEFAULT_LEVELS[kind] if returned_layers is None else returned_layers
    fpn = BackboneFPN(
        backbone, out_channels=fpn_channels, extra_blocks=_DEFAULT_EXTRA[kind], returned_layers=levels
    )
    sizes = [anchor_size * 2**i for i in range(len(fpn.strides))]
    common = dict(min_size=min_size, max_size=max_size, **kw)
    if kind == "fasterrcnn":
        anchors = AnchorGenerator(tuple((s,) for s in sizes), ((0.5, 1.0, 2.0),) * len(sizes))
        roi_pool = MultiScaleRoIAlign(featmap_names=fpn.featmap_names, output_size=7, sampling_ratio=2)
        # A 256-wide box head instead of torchvision's 1024: few classes and small images
        # need far less, and the two linear layers otherwise dominate the parameter count.
        representation = 256
        return FasterRCNN(
            fpn,
            rpn_anchor_generator=anchors,
            box_roi_pool=roi_pool,
            box_head=TwoMLPHead(fpn_channels * 7 * 7, representation),
            box_predictor=FastRCNNPredictor(representation, num_classes),
            **common,
        )
    if kind == "retinanet":
        octaves = (1.0, 2 ** (1 / 3), 2 ** (2 / 3))
        anchors = AnchorGenerator(
            tuple(tuple(int(s * o) for o in octaves) for s in sizes), ((0.5, 1.0, 2.0),) * len(sizes)
        )
        return RetinaNet(fpn, num_classes, anchor_generator=anchors, **common)
    # FCOS assigns each ground-truth box to a level by comparing its size with 4x and 8x the
    # anchor size, so the anchor size must be the level's stride, not a scaled one.
    anchors = AnchorGenerator(tuple((s,) for s in fpn.strides), ((1.0,),) * len(fpn.strides))
    return FCOS(fpn, num_classes, anchor_generator=anchors, **common)


class FeatureBackbone(nn.Module):
    """Wrap a module returning four feature maps into the backbone contract.

    ``body(x)`` must return a dict whose values, in order, are the maps at strides 4, 8, 16
    and 32; they are re-keyed ``"0".."3"``.
    """

    def __init__(self, body: nn.Module, out_channels_list: Sequence[int]) -> None:
        super().__init__()
        self.body = body
        self.out_channels_list = list(out_channels_list)
        self.strides = list(BACKBONE_STRIDES)

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        return OrderedDict((str(i), f) for i, f in enumerate(self.body(x).values()))


TORCHVISION_BACKBONES = ("resnet18", "mobilenet_v3_large")


def torchvision_backbone(name: str) -> FeatureBackbone:
    """A randomly initialised torchvision network wrapped to the four-level contract.

    ``"resnet18"`` returns ``layer1..layer4`` (64, 128, 256, 512 channels);
    ``"mobilenet_v3_large"`` returns the last block at each stride (24, 40, 112, 960). No
    weights are downloaded: these are baselines to train from scratch against a searched
    backbone under the same recipe.

    Example::

        backbone = torchvision_backbone("resnet18")
        [f.shape[-1] for f in backbone(torch.zeros(1, 3, 64, 64)).values()]  # [16, 8, 4, 2]
    """
    if name == "resnet18":
        layers = {"layer1": "0", "layer2": "1", "layer3": "2", "layer4": "3"}
        return FeatureBackbone(IntermediateLayerGetter(resnet18(weights=None), layers), [64, 128, 256, 512])
    if name == "mobilenet_v3_large":
        # The last block before each downsampling: features[3], [6], [12] and [16] end the
        # stride-4, 8, 16 and 32 stages of torchvision's MobileNetV3-Large.
        layers = {"3": "0", "6": "1", "12": "2", "16": "3"}
        body = IntermediateLayerGetter(mobilenet_v3_large(weights=None).features, layers)
        return FeatureBackbone(body, [24, 40, 112, 960])
    raise NasError(f"unknown torchvision backbone {name!r}; choose one of {', '.join(TORCHVISION_BACKBONES)}")
