"""Networks from genotypes: a classifier and a multi-scale backbone, for cell and chain spaces.

Both are built from the same pieces: a stem, a sequence of cells (or inverted-residual blocks)
with reductions, and a head (classifier) or feature taps (backbone).
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from nas.builders.cells import AuxiliaryHead, Cell, ResidualReduction
from nas.errors import NasError
from nas.genotype import Genotype
from nas.ops import create_op
from nas.space import SearchSpace, load_space


def reduction_layers(layers: int) -> tuple[int, ...]:
    """Reductions at 1/3 and 2/3 of the depth, as in DARTS (and NAS-Bench-201: 5 + 1 + 5 + 1 + 5)."""
    return (layers // 3, 2 * layers // 3)


class CellStack(nn.Module):
    """Cells in sequence; ``plan[i]`` says whether layer ``i`` halves the grid (doubling C).

    Returns the outputs of the layers listed in ``taps`` (or only the last one).
    """

    def __init__(self, genotype: Genotype, space: SearchSpace, *, C: int, C_stem: int, plan: list[bool]):
        super().__init__()
        residual = space.network.get("reduction") == "residual"
        self.cells = nn.ModuleList()
        C_pp, C_p, C_curr, reduction_prev = C_stem, C_stem, C, False
        self.channels: list[int] = []
        for reduction in plan:
            if reduction:
                C_curr *= 2
            if reduction and residual:
                cell: nn.Module = ResidualReduction(C_p, C_curr)
            else:
                cell = Cell(genotype.cell("reduction" if reduction else "normal"), inputs=space.inputs,
                            C_pp=C_pp, C_p=C_p, C=C_curr, reduction=reduction, reduction_prev=reduction_prev)
            self.cells.append(cell)
            C_pp, C_p, reduction_prev = C_p, cell.out_channels, reduction
            self.channels.append(C_p)

    def set_drop_path(self, prob: float) -> None:
        for cell in self.cells:
            cell.drop_prob = prob


def _conv_bn(C_in: int, C_out: int, kernel: int, stride: int, act: type[nn.Module] | None = None) -> list[nn.Module]:
    layers = [nn.Conv2d(C_in, C_out, kernel, stride, (kernel - 1) // 2, bias=False), nn.BatchNorm2d(C_out)]
    return layers + ([act(inplace=True)] if act else [])


class CellClassifier(nn.Module):
    """Stem, stacked cells with reductions, optional auxiliary head, global pooling, classifier.

    In training mode with an auxiliary head, ``forward`` returns ``(logits, aux_logits)``;
    otherwise the logits alone.
    """

    def __init__(self, genotype: Genotype, space: SearchSpace, *, num_classes: int, C: int, layers: int,
                 in_channels: int = 3, auxiliary: bool = False, stem_multiplier: int = 3, head: str | None = None):
        super().__init__()
        C_stem = stem_multiplier * C
        self.stem = nn.Sequential(*_conv_bn(in_channels, C_stem, 3, 1))
        reductions = reduction_layers(layers)
        self.body = CellStack(genotype, space, C=C, C_stem=C_stem, plan=[i in reductions for i in range(layers)])
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
    """Inverted-residual blocks stage by stage; the first block of a stage carries its stride."""

    def __init__(self, genotype: Genotype, space: SearchSpace, C_in: int):
        super().__init__()
        self.stages = nn.ModuleList()
        self.channels: list[int] = []
        for blocks, stage in zip(genotype.stages, space.stages):
            layers = []
            for i, op in enumerate(blocks):
                layers.append(create_op(op, C_in, stage.channels, stage.stride if i == 0 else 1))
                C_in = stage.channels
            self.stages.append(nn.Sequential(*layers))
            self.channels.append(C_in)


class ChainClassifier(nn.Module):
    """MobileNet-style: stem, searched stages, 1x1 head conv, pooling, dropout, classifier."""

    def __init__(self, genotype: Genotype, space: SearchSpace, *, num_classes: int, in_channels: int = 3,
                 dropout: float = 0.2):
        super().__init__()
        net = space.network
        C_stem = int(net.get("stem_channels", 32))
        self.stem = nn.Sequential(*_conv_bn(in_channels, C_stem, 3, int(net.get("stem_stride", 1)), nn.ReLU6))
        self.body = ChainBody(genotype, space, C_stem)
        C_head = int(net.get("head_channels", 1280))
        self.head = nn.Sequential(*_conv_bn(self.body.channels[-1], C_head, 1, 1, nn.ReLU6))
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(C_head, num_classes)

    def set_drop_path(self, prob: float) -> None:
        """Chains have no multi-branch cells; drop-path does not apply."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for stage in self.body.stages:
            x = stage(x)
        return self.classifier(self.dropout(self.global_pool(self.head(x)).flatten(1)))


def build_classifier(genotype: Genotype, space: SearchSpace | str | None = None, *, num_classes: int = 10,
                     init_channels: int | None = None, layers: int | None = None, in_channels: int = 3,
                     auxiliary: bool = False, drop_path: float = 0.0) -> nn.Module:
    """A classification network for ``genotype``; unset arguments come from the space file.

    >>> from nas.genotype import get_reference
    >>> net = build_classifier(get_reference("DARTS_V2"), init_channels=16, layers=8)
    >>> net(torch.randn(2, 3, 32, 32)).shape
    torch.Size([2, 10])
    """
    space = load_space(space or genotype)
    genotype.validate(space)
    if space.kind == "chain":
        model: nn.Module = ChainClassifier(genotype, space, num_classes=num_classes, in_channels=in_channels)
    else:
        net = space.network
        if layers is None:
            layers = int(net["layers"]) if "layers" in net else 3 * int(net.get("cells_per_stage", 2)) + 2
        if layers < 3:
            raise NasError(f"layers must be at least 3 (two of them are reductions), got {layers}")
        model = CellClassifier(genotype, space, num_classes=num_classes, C=init_channels or int(net.get("init_channels", 16)),
                               layers=layers, in_channels=in_channels, auxiliary=auxiliary,
                               stem_multiplier=int(net.get("stem_multiplier", 3)), head=net.get("head"))
    model.set_drop_path(drop_path)
    return model


class Backbone(nn.Module):
    """Multi-scale features of a genotype at strides 4, 8, 16 and 32.

    ``forward`` returns an ``OrderedDict`` ``{"0": stride 4, "1": 8, "2": 16, "3": 32}``;
    ``out_channels_list`` and ``strides`` declare them, which is what torchvision's
    ``FeaturePyramidNetwork`` (``in_channels_list``) and ``BackboneWithFPN`` need.
    """

    strides = [4, 8, 16, 32]

    def __init__(self, stem: nn.Module, blocks: nn.ModuleList, taps: list[int], channels: list[int], cells: bool):
        super().__init__()
        self.stem = stem
        self.blocks = blocks
        self.taps = taps
        self.cells = cells
        self.out_channels_list = [channels[t] for t in taps]
        self.feature_info = [{"name": str(i), "channels": c, "stride": s}
                             for i, (c, s) in enumerate(zip(self.out_channels_list, self.strides))]

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        out: OrderedDict[str, torch.Tensor] = OrderedDict()
        s0 = s1 = self.stem(x)
        for i, block in enumerate(self.blocks):
            if self.cells:
                s0, s1 = s1, block(s0, s1)
            else:
                s1 = block(s1)
            if i in self.taps:
                out[str(len(out))] = s1
        return out


def build_backbone(genotype: Genotype, space: SearchSpace | str | None = None, *, init_channels: int | None = None,
                   cells_per_stage: int = 2, in_channels: int = 3) -> Backbone:
    """A backbone for detection / segmentation: a stride-4 stem, then cells or blocks with three
    more reductions; features tapped at the end of each resolution.

    >>> from nas.genotype import get_reference
    >>> bb = build_backbone(get_reference("DARTS_V2"), init_channels=8, cells_per_stage=1)
    >>> [tuple(f.shape[1:]) for f in bb(torch.randn(1, 3, 64, 64)).values()]
    [(32, 16, 16), (64, 8, 8), (128, 4, 4), (256, 2, 2)]
    """
    space = load_space(space or genotype)
    genotype.validate(space)
    if space.kind == "chain":
        C_stem = int(space.network.get("stem_channels", 32))
        stem = nn.Sequential(*_conv_bn(in_channels, C_stem // 2, 3, 2, nn.ReLU6), *_conv_bn(C_stem // 2, C_stem, 3, 2, nn.ReLU6))
        body = ChainBody(genotype, space, C_stem)
        strides = [st.stride for st in space.stages]
        if strides.count(2) != 3:
            raise NasError(f"space {space.name!r} has {strides.count(2)} stride-2 stages; a stride 4-32 backbone "
                           "needs exactly 3")
        # tap the last stage before each stride-2 stage, and the final one
        taps = [i - 1 for i, s in enumerate(strides) if s == 2 and i > 0] + [len(strides) - 1]
        return Backbone(stem, body.stages, taps, body.channels, cells=False)
    C = init_channels or int(space.network.get("init_channels", 16))
    C_stem = int(space.network.get("stem_multiplier", 3)) * C
    stem = nn.Sequential(*_conv_bn(in_channels, C_stem // 2, 3, 2, nn.ReLU), *_conv_bn(C_stem // 2, C_stem, 3, 2))
    n = cells_per_stage
    plan = ([False] * n + [True]) * 3 + [False] * n
    stack = CellStack(genotype, space, C=C, C_stem=C_stem, plan=plan)
    taps = [i - 1 for i, r in enumerate(plan) if r] + [len(plan) - 1]
    return Backbone(stem, stack.cells, taps, stack.channels, cells=True)
