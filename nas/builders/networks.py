"""Networks from plain data: classifiers and multi-scale backbones, for cell and chain spaces.

Both are built from the same pieces: a stem, a sequence of cells (or inverted-residual blocks)
with reductions, and a head (classifier) or named stages (backbone). The classes read only
ints, strings, lists and dicts (what :meth:`nas.builders.ModelSpec.arch` writes once the
genotype is validated), so the source export copies them as they are.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn
from torchvision.models import mobilenet_v3_large, resnet18
from torchvision.models.feature_extraction import create_feature_extractor

from nas.builders.cells import AuxiliaryHead, Cell, ResidualReduction
from nas.errors import NasError
from nas.ops import create_op


def reduction_layers(layers: int) -> tuple[int, ...]:
    """Reductions at 1/3 and 2/3 of the depth, as in DARTS (and NAS-Bench-201: 5 + 1 + 5 + 1 + 5)."""
    return (layers // 3, 2 * layers // 3)


class CellStack(nn.Module):
    """Cells in sequence; ``plan[i]`` says whether layer ``i`` halves the grid (doubling C).

    ``cells`` holds the ``"normal"`` and ``"reduction"`` cell descriptions; ``reduction ==
    "residual"`` puts NAS-Bench-201's residual block in place of reduction cells. ``forward(x)``
    gives ``x`` to the first cell as both of its inputs and returns the last cell's output.
    """

    def __init__(self, cells: dict, *, inputs: int, reduction: str, C: int, C_in: int, plan: list[bool]):
        super().__init__()
        self.cells = nn.ModuleList()
        C_pp, C_p, C_curr, reduction_prev = C_in, C_in, C, False
        self.channels: list[int] = []
        for reduces in plan:
            if reduces:
                C_curr *= 2
            if reduces and reduction == "residual":
                cell: nn.Module = ResidualReduction(C_p, C_curr)
            else:
                cell = Cell(cells["reduction" if reduces else "normal"], inputs=inputs, C_pp=C_pp, C_p=C_p,
                            C=C_curr, reduction=reduces, reduction_prev=reduction_prev)
            self.cells.append(cell)
            C_pp, C_p, reduction_prev = C_p, cell.out_channels, reduces
            self.channels.append(C_p)

    def set_drop_path(self, prob: float) -> None:
        for cell in self.cells:
            cell.drop_prob = prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s0 = s1 = x
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1)
        return s1


def _conv_bn_act(C_in: int, C_out: int, kernel: int, stride: int,
                 act: type[nn.Module] | None = None) -> list[nn.Module]:
    layers = [nn.Conv2d(C_in, C_out, kernel, stride, (kernel - 1) // 2, bias=False), nn.BatchNorm2d(C_out)]
    return layers + ([act(inplace=True)] if act else [])


class CellClassifier(nn.Module):
    """Stem, stacked cells with reductions, optional auxiliary head, global pooling, classifier.

    In training mode with an auxiliary head, ``forward`` returns ``(logits, aux_logits)``;
    otherwise the logits alone.
    """

    def __init__(self, *, cells: dict, inputs: int, num_classes: int, init_channels: int, layers: int,
                 reduction: str = "cell", in_channels: int = 3, auxiliary: bool = False, stem_multiplier: int = 3,
                 head: str | None = None):
        super().__init__()
        C_stem = stem_multiplier * init_channels
        self.stem = nn.Sequential(*_conv_bn_act(in_channels, C_stem, 3, 1))
        reductions = reduction_layers(layers)
        self.body = CellStack(cells, inputs=inputs, reduction=reduction, C=init_channels, C_in=C_stem,
                              plan=[i in reductions for i in range(layers)])
        self.aux_index = reductions[1] if auxiliary else -1
        self.auxiliary = AuxiliaryHead(self.body.channels[self.aux_index], num_classes) if auxiliary else None
        C_out = self.body.channels[-1]
        self.head = nn.Sequential(nn.BatchNorm2d(C_out), nn.ReLU(inplace=True)) if head == "bn_relu" else nn.Identity()
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_out, num_classes)

    def set_drop_path(self, prob: float) -> None:
        self.body.set_drop_path(prob)

    def forward(self, x: torch.Tensor):
        s0 = s1 = self.stem(x)
        aux = None
        for i, cell in enumerate(self.body.cells):
            s0, s1 = s1, cell(s0, s1)
            if i == self.aux_index and self.auxiliary is not None and self.training:
                aux = self.auxiliary(s1)
        logits = self.classifier(self.global_pool(self.head(s1)).flatten(1))
        return (logits, aux) if aux is not None else logits


class ChainBody(nn.Module):
    """Inverted-residual blocks stage by stage; the first block of a stage carries its stride.

    ``stages`` is a list of ``{"channels", "stride", "blocks": [op names]}``.
    """

    def __init__(self, stages: list[dict], C_in: int):
        super().__init__()
        self.stages = nn.ModuleList()
        self.channels: list[int] = []
        for stage in stages:
            layers = []
            for i, op in enumerate(stage["blocks"]):
                layers.append(create_op(op, C_in, stage["channels"], stage["stride"] if i == 0 else 1))
                C_in = stage["channels"]
            self.stages.append(nn.Sequential(*layers))
            self.channels.append(C_in)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.stages:
            x = stage(x)
        return x


class ChainClassifier(nn.Module):
    """MobileNet-style: stem, searched stages, 1x1 head conv, pooling, dropout, classifier."""

    def __init__(self, *, stages: list[dict], num_classes: int, in_channels: int = 3, stem_channels: int = 32,
                 stem_stride: int = 1, head_channels: int = 1280, dropout: float = 0.2):
        super().__init__()
        self.stem = nn.Sequential(*_conv_bn_act(in_channels, stem_channels, 3, stem_stride, nn.ReLU6))
        self.body = ChainBody(stages, stem_channels)
        self.head = nn.Sequential(*_conv_bn_act(self.body.channels[-1], head_channels, 1, 1, nn.ReLU6))
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(head_channels, num_classes)

    def set_drop_path(self, prob: float) -> None:
        """Chains have no multi-branch cells; drop-path does not apply."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for stage in self.body.stages:
            x = stage(x)
        return self.classifier(self.dropout(self.global_pool(self.head(x)).flatten(1)))


STRIDES = (4, 8, 16, 32)  # the strides of a backbone's four feature maps
TORCHVISION_BACKBONES = ("resnet18", "mobilenet_v3_large")


class Backbone(nn.Module):
    """Multi-scale features of a genotype: children ``stem``, ``stage1`` .. ``stage4`` (strides 4 .. 32).

    The stages run one after the other, each from the previous one's output, so torchvision's
    wrappers take the maps by name as they do for a ResNet's ``layer1`` .. ``layer4``::

        BackboneWithFPN(backbone, return_layers={"stage2": "0", "stage3": "1", "stage4": "2"},
                        in_channels_list=[info["num_chs"] for info in backbone.feature_info[1:]], out_channels=64)
        create_feature_extractor(backbone, {"stage4": "out"})

    ``feature_info`` declares each stage (timm's keys: ``module``, ``num_chs``, ``reduction``);
    ``out_channels`` is the width of the last (stride-32) map, the attribute torchvision reads
    of a backbone whose last map feeds a head. ``forward(x)`` itself returns all four maps as an
    ``OrderedDict`` keyed by stage name.
    """

    def __init__(self, stem: nn.Module, stages: Sequence[nn.Module], channels: Sequence[int]):
        super().__init__()
        self.stem = stem
        for i, stage in enumerate(stages):
            self.add_module(f"stage{i + 1}", stage)
        self.feature_info = [{"module": f"stage{i + 1}", "num_chs": c, "reduction": s}
                             for i, (c, s) in enumerate(zip(channels, STRIDES))]
        self.out_channels = channels[-1]

    def set_drop_path(self, prob: float) -> None:
        for stage in self.children():
            if isinstance(stage, CellStack):
                stage.set_drop_path(prob)

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        out: OrderedDict[str, torch.Tensor] = OrderedDict()
        x = self.stem(x)
        for info in self.feature_info:
            x = getattr(self, info["module"])(x)
            out[info["module"]] = x
        return out


def cell_backbone(*, cells: dict, inputs: int, init_channels: int, reduction: str = "cell", stem_multiplier: int = 3,
                  cells_per_stage: int = 1, in_channels: int = 3) -> Backbone:
    """A stride-4 stem (two stride-2 convs), then four stages of ``cells_per_stage`` normal cells,
    each stage after the first opening with a reduction cell."""
    C_stem = stem_multiplier * init_channels
    stem = nn.Sequential(*_conv_bn_act(in_channels, C_stem // 2, 3, 2, nn.ReLU),
                         *_conv_bn_act(C_stem // 2, C_stem, 3, 2))
    stages, channels = [], []
    C, C_in = init_channels, C_stem
    for k in range(4):
        plan = ([True] if k else []) + [False] * cells_per_stage
        stage = CellStack(cells, inputs=inputs, reduction=reduction, C=C, C_in=C_in, plan=plan)
        C, C_in = C * (2 if k else 1), stage.channels[-1]
        stages.append(stage)
        channels.append(C_in)
    return Backbone(stem, stages, channels)


def chain_backbone(*, stages: list[dict], stem_channels: int = 32, in_channels: int = 3) -> Backbone:
    """A stride-4 stem, then the space's stages grouped by resolution: each backbone stage ends
    with the last space stage before a stride-2 one (the space has exactly three)."""
    stem = nn.Sequential(*_conv_bn_act(in_channels, stem_channels // 2, 3, 2, nn.ReLU6),
                         *_conv_bn_act(stem_channels // 2, stem_channels, 3, 2, nn.ReLU6))
    groups: list[list[dict]] = [[]]
    for i, stage in enumerate(stages):
        if stage["stride"] == 2 and i > 0:
            groups.append([])
        groups[-1].append(stage)
    bodies, channels, C_in = [], [], stem_channels
    for group in groups:
        body = ChainBody(group, C_in)
        C_in = body.channels[-1]
        bodies.append(body)
        channels.append(C_in)
    return Backbone(stem, bodies, channels)


def torchvision_backbone(name: str, features: bool = False) -> nn.Module:
    """A randomly initialised torchvision network declaring its stride-4 .. 32 stages in
    ``feature_info``: ResNet-18 (``layer1`` .. ``layer4``: 64, 128, 256, 512 channels) or
    MobileNetV3-Large's ``features`` (the last block at each stride, ``3``, ``6``, ``12``, ``16``:
    24, 40, 112, 960 channels). ``features=True`` wraps it with torchvision's
    ``create_feature_extractor`` so that ``forward`` returns the four maps. No weights are
    downloaded: these are baselines to train from scratch against a searched backbone.
    """
    if name not in TORCHVISION_BACKBONES:
        raise NasError(f"unknown torchvision backbone {name!r}; choose one of {', '.join(TORCHVISION_BACKBONES)}")
    if name == "resnet18":
        model: nn.Module = resnet18(weights=None)
        stages, channels = ["layer1", "layer2", "layer3", "layer4"], [64, 128, 256, 512]
    else:
        model = mobilenet_v3_large(weights=None).features
        stages, channels = ["3", "6", "12", "16"], [24, 40, 112, 960]
    if features:
        model = create_feature_extractor(model, {stage: stage for stage in stages})
    model.feature_info = [{"module": m, "num_chs": c, "reduction": s} for m, c, s in zip(stages, channels, STRIDES)]
    model.out_channels = channels[-1]
    return model


BACKBONES = {"cell": cell_backbone, "chain": chain_backbone, "torchvision": torchvision_backbone}

