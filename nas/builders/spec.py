"""One model spec: everything that builds a trained model again, as plain data.

A :class:`ModelSpec` describes a classifier, a detector or a segmenter (``task``) on a
genotype's cells or blocks (or, for comparison, a torchvision backbone). It travels inside
every checkpoint and run folder, so any checkpoint rebuilds its own model (no pickled project
classes) and a resume can tell whether a checkpoint belongs to it.

>>> from nas.genotype import get_reference
>>> spec = ModelSpec.create(get_reference("DARTS_V2"), init_channels=8, layers=5)
>>> spec.layers, spec.build()(torch.randn(1, 3, 32, 32)).shape
(5, torch.Size([1, 10]))
>>> ModelSpec.create("DARTS_V2", task="segmentation", head="unet", num_classes=4).describe()
'darts cell backbone (C=16, 1 cell(s) per stage) + unet, 4 classes, 96 px'
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

from nas.builders.arch import build
from nas.builders.arch import build_backbone as build_backbone_arch
from nas.builders.heads import WHAT, heads
from nas.builders.networks import TORCHVISION_BACKBONES
from nas.config import TASKS
from nas.errors import NasError
from nas.genotype import Genotype, resolve_genotype
from nas.space import SearchSpace, load_space, space_from_dict

GENOTYPE_BACKBONE = "genotype"
# Faster R-CNN's own proposal and sampling counts are sized for 800-pixel COCO images; these
# keep a CPU step on small images to about the cost of RetinaNet and FCOS.
FASTER_RCNN_SMALL = {"rpn_pre_nms_top_n_train": 600, "rpn_post_nms_top_n_train": 300,
                     "rpn_pre_nms_top_n_test": 300, "rpn_post_nms_top_n_test": 100,
                     "rpn_batch_size_per_image": 128, "box_batch_size_per_image": 128}


def check_head(task: str, head: str | None) -> None:
    """Raise :class:`NasError` unless ``head`` is a head of ``task``."""
    if task not in TASKS:
        raise NasError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    if task == "classification":
        if head is not None:
            raise NasError(f"a classifier has no head to choose, got {head!r}")
        return
    if head not in heads(task):
        raise NasError(f"unknown {WHAT[task]} {head!r}; choose one of {', '.join(heads(task))}")


def _positive(value: Any, what: str) -> None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise NasError(f"{what} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class ModelSpec:
    """A model's full description; :meth:`build` makes a freshly initialised copy.

    Classification: ``init_channels`` and ``layers`` are resolved against the space (never
    ``None`` for cell spaces, always ``None`` for chain spaces, whose size the space file fixes).
    Detection / segmentation: ``head`` is the detector kind or segmentation head, ``backbone``
    is ``"genotype"`` (the genotype's multi-scale backbone, :func:`nas.builders.build_backbone`)
    or a torchvision baseline (``"resnet18"``, ``"mobilenet_v3_large"``), ``options`` are extra
    keyword arguments of the torchvision detector.
    """

    task: str
    genotype: Genotype | None
    space: SearchSpace | None
    num_classes: int = 10
    head: str | None = None
    backbone: str = GENOTYPE_BACKBONE
    in_channels: int = 3
    init_channels: int | None = None
    layers: int | None = None
    auxiliary: bool = False
    cells_per_stage: int = 1
    fpn_channels: int = 64
    image_size: int | None = None
    options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def create(cls, genotype: Genotype | str | None = None, space: SearchSpace | str | None = None, *,
               task: str = "classification", num_classes: int = 10, head: str | None = None,
               backbone: str | None = None, in_channels: int = 3, init_channels: int | None = None,
               layers: int | None = None, auxiliary: bool = False, cells_per_stage: int = 1,
               fpn_channels: int = 64, image_size: int | None = None,
               options: dict[str, Any] | None = None) -> ModelSpec:
        """Check names and sizes, validate ``genotype`` against ``space`` (default: its own) and
        fill in the space's defaults (and Faster R-CNN's small-image counts)."""
        check_head(task, head)
        for value, what in ((num_classes, "num_classes"), (in_channels, "in_channels"),
                            (init_channels, "init_channels"), (layers, "layers"),
                            (cells_per_stage, "cells_per_stage"), (image_size, "image_size")):
            _positive(value, what)
        if task != "classification" and num_classes < 2:
            raise NasError(f"num_classes counts the background and must be at least 2, got {num_classes}")
        if (genotype is None) == (backbone is None or backbone == GENOTYPE_BACKBONE):
            raise NasError("pass either a genotype (a reference name, genotype.json or run folder) or a "
                           f"torchvision backbone ({', '.join(TORCHVISION_BACKBONES)}), not both or neither")
        if task == "classification":
            if genotype is None:
                raise NasError("a classifier is built from a genotype; torchvision backbones are for detection "
                               "and segmentation")
            genotype, space = _resolve(genotype, space)
            if space.kind == "chain":
                # the chain's stage widths and depths come from the space and genotype; it has no auxiliary head
                return cls(task, genotype, space, num_classes, in_channels=in_channels)
            net = space.network
            if layers is None:
                layers = int(net["layers"]) if "layers" in net else 3 * int(net.get("cells_per_stage", 2)) + 2
            if layers < 3:
                raise NasError(f"layers must be at least 3 (two of them are reductions), got {layers}")
            return cls(task, genotype, space, num_classes, in_channels=in_channels,
                       init_channels=int(net.get("init_channels", 16)) if init_channels is None else init_channels,
                       layers=layers,
                       auxiliary=auxiliary)
        if task == "detection" and head == "fcos" and fpn_channels % 32:
            raise NasError(f"fcos needs fpn_channels divisible by 32 (its GroupNorm), got {fpn_channels}")
        if fpn_channels < 8:
            raise NasError(f"fpn_channels must be at least 8, got {fpn_channels}")
        opts = dict(FASTER_RCNN_SMALL) if task == "detection" and head == "fasterrcnn" else {}
        opts.update(options or {})
        size = 96 if image_size is None else image_size
        if genotype is None:
            if backbone not in TORCHVISION_BACKBONES:
                raise NasError(f"unknown torchvision backbone {backbone!r}; choose one of "
                               f"{', '.join(TORCHVISION_BACKBONES)}")
            return cls(task, None, None, num_classes, head=head, backbone=backbone, cells_per_stage=cells_per_stage,
                       fpn_channels=fpn_channels, image_size=size, options=opts)
        genotype, space = _resolve(genotype, space)
        # a chain's widths come from its space file; only cell spaces scale with init_channels
        channels = None if space.kind == "chain" else \
            int(space.network.get("init_channels", 16)) if init_channels is None else init_channels
        return cls(task, genotype, space, num_classes, head=head, init_channels=channels,
                   cells_per_stage=cells_per_stage, fpn_channels=fpn_channels, image_size=size, options=opts)

    def arch(self) -> dict[str, Any]:
        """The architecture as plain data, what :func:`nas.builders.arch.build` (and the exported
        ``model.py``) builds from."""
        if self.task == "classification":
            assert self.genotype is not None and self.space is not None  # create() guarantees both
            net = self.space.network
            common = {"task": "classification", "kind": self.space.kind, "num_classes": self.num_classes,
                      "in_channels": self.in_channels}
            if self.space.kind == "chain":
                return {**common, "stages": _stages(self.genotype, self.space),
                        "stem_channels": int(net.get("stem_channels", 32)),
                        "stem_stride": int(net.get("stem_stride", 1)),
                        "head_channels": int(net.get("head_channels", 1280)), "dropout": 0.2}
            return {**common, "cells": _cells(self.genotype), "inputs": self.space.inputs,
                    "init_channels": self.init_channels, "layers": self.layers,
                    "reduction": net.get("reduction", "cell"), "auxiliary": self.auxiliary,
                    "stem_multiplier": int(net.get("stem_multiplier", 3)), "head": net.get("head")}
        options = dict(self.options)
        if self.task == "detection":
            options = {"fpn_channels": self.fpn_channels, "min_size": self.image_size, "max_size": self.image_size,
                       **options}
        return {"task": self.task, "head": self.head, "num_classes": self.num_classes,
                "backbone": self.backbone_arch(), "options": options}

    def backbone_arch(self) -> dict[str, Any]:
        """The backbone part of :meth:`arch` (detection and segmentation)."""
        if self.backbone != GENOTYPE_BACKBONE:
            # segmentation heads read the maps from forward(); detectors take the stages by name
            return {"kind": "torchvision", "name": self.backbone, "features": self.task == "segmentation"}
        if self.genotype is None or self.space is None:
            raise NasError("this model spec has no genotype to build a backbone from")
        return _backbone_arch(self.genotype, self.space, init_channels=self.init_channels,
                              cells_per_stage=self.cells_per_stage, in_channels=self.in_channels)

    def build_backbone(self) -> nn.Module:
        """A freshly initialised multi-scale backbone (four stages at strides 4..32); detection and
        segmentation only."""
        return build_backbone_arch(self.backbone_arch())

    def build(self) -> nn.Module:
        """The whole model with fresh weights (drawn from torch's global generator)."""
        return build(self.arch())

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "genotype": self.genotype.to_dict() if self.genotype else None,
                "space": self.space.to_dict() if self.space else None, "num_classes": self.num_classes,
                "head": self.head, "backbone": self.backbone, "in_channels": self.in_channels,
                "init_channels": self.init_channels, "layers": self.layers, "auxiliary": self.auxiliary,
                "cells_per_stage": self.cells_per_stage, "fpn_channels": self.fpn_channels,
                "image_size": self.image_size, "options": dict(self.options)}

    @classmethod
    def from_dict(cls, data: Any, source: str = "model spec") -> ModelSpec:
        if not isinstance(data, dict) or "num_classes" not in data or not ({"genotype", "backbone"} & set(data)):
            raise NasError(f"{source}: no model description (genotype or backbone, network arguments); "
                           "it was not written by `nas train`, `nas detect` or `nas segment`")
        task = str(data.get("task", "classification"))
        if task not in TASKS:
            raise NasError(f"{source}: unknown task {task!r}")
        space = genotype = None
        if data.get("space") is not None:
            space = space_from_dict(data["space"], source=source)
            genotype = Genotype.from_dict(data["genotype"], source=source).validate(space)
        elif task == "classification":
            raise NasError(f"{source}: a classifier's description needs its genotype and space")
        return cls(task, genotype, space, int(data["num_classes"]), head=data.get("head"),
                   backbone=str(data.get("backbone", GENOTYPE_BACKBONE)), in_channels=int(data.get("in_channels", 3)),
                   init_channels=data.get("init_channels"), layers=data.get("layers"),
                   auxiliary=bool(data.get("auxiliary", False)), cells_per_stage=int(data.get("cells_per_stage", 1)),
                   fpn_channels=int(data.get("fpn_channels", 64)), image_size=data.get("image_size"),
                   options=dict(data.get("options") or {}))

    def same_architecture(self, other: ModelSpec) -> bool:
        """True when both build networks with the same parameters (names and shapes)."""
        return self.to_dict() == other.to_dict()

    def describe(self) -> str:
        if self.task == "classification":
            assert self.space is not None
            if self.space.kind == "chain":
                return f"{self.space.name} chain, {self.num_classes} classes"
            return (f"{self.space.name} cells, C={self.init_channels}, {self.layers} layers, {self.num_classes} "
                    "classes" + (", auxiliary head" if self.auxiliary else ""))
        if self.backbone != GENOTYPE_BACKBONE:
            body = f"torchvision {self.backbone} backbone"
        elif self.space is not None and self.space.kind == "chain":
            body = f"{self.space.name} chain backbone"
        else:
            assert self.space is not None
            body = f"{self.space.name} cell backbone (C={self.init_channels}, {self.cells_per_stage} cell(s) per stage)"
        return f"{body} + {self.head}, {self.num_classes} classes, {self.image_size} px"


def _cells(genotype: Genotype) -> dict[str, Any]:
    return {name: {"nodes": [[[op, src] for op, src in node] for node in cell.nodes], "concat": list(cell.concat)}
            for name, cell in genotype.cells}


def _stages(genotype: Genotype, space: SearchSpace) -> list[dict[str, Any]]:
    return [{"channels": st.channels, "stride": st.stride, "blocks": list(blocks)}
            for blocks, st in zip(genotype.stages, space.stages)]


def _backbone_arch(genotype: Genotype, space: SearchSpace, *, init_channels: int | None, cells_per_stage: int,
                   in_channels: int) -> dict[str, Any]:
    if space.kind == "chain":
        strides = [st.stride for st in space.stages]
        if strides.count(2) != 3 or strides[0] == 2:
            raise NasError(f"space {space.name!r} has {strides.count(2)} stride-2 stages after its first; a stride "
                           "4-32 backbone needs exactly 3")
        return {"kind": "chain", "stages": _stages(genotype, space),
                "stem_channels": int(space.network.get("stem_channels", 32)), "in_channels": in_channels}
    net = space.network
    return {"kind": "cell", "cells": _cells(genotype), "inputs": space.inputs,
            "init_channels": int(net.get("init_channels", 16)) if init_channels is None else init_channels,
            "reduction": net.get("reduction", "cell"),
            "stem_multiplier": int(net.get("stem_multiplier", 3)), "cells_per_stage": cells_per_stage,
            "in_channels": in_channels}


def backbone_cell_prefixes(space: SearchSpace, *, cells_per_stage: int) -> list[str]:
    """The module prefixes of a genotype backbone's cells (cell spaces) or space stages (chain
    spaces), in order, relative to the backbone: ``["stage1.cells.0.", ..., "stage2.cells.0.", ...]``.

    Stage 1 holds ``cells_per_stage`` normal cells; stages 2 to 4 a reduction cell and then
    ``cells_per_stage`` normal cells. A chain backbone's stage ``k`` holds the space stages of
    one resolution (``stageK.stages.i.``).
    """
    if space.kind == "chain":
        prefixes, k, i = [], 0, 0
        for j, stage in enumerate(space.stages):
            if stage.stride == 2 and j > 0:
                k, i = k + 1, 0
            prefixes.append(f"stage{k + 1}.stages.{i}.")
            i += 1
        return prefixes
    return [f"stage{k + 1}.cells.{i}." for k in range(4) for i in range(cells_per_stage + (1 if k else 0))]


def build_classifier(genotype: Genotype | str, space: SearchSpace | str | None = None, *, num_classes: int = 10,
                     init_channels: int | None = None, layers: int | None = None, in_channels: int = 3,
                     auxiliary: bool = False, drop_path: float = 0.0) -> nn.Module:
    """A classification network for ``genotype``; unset arguments come from the space file.

    >>> from nas.genotype import get_reference
    >>> net = build_classifier(get_reference("DARTS_V2"), init_channels=16, layers=8)
    >>> net(torch.randn(2, 3, 32, 32)).shape
    torch.Size([2, 10])
    """
    model = ModelSpec.create(genotype, space, num_classes=num_classes, init_channels=init_channels, layers=layers,
                             in_channels=in_channels, auxiliary=auxiliary).build()
    model.set_drop_path(drop_path)
    return model


def build_backbone(genotype: Genotype | str, space: SearchSpace | str | None = None, *,
                   init_channels: int | None = None, cells_per_stage: int = 2, in_channels: int = 3) -> nn.Module:
    """A backbone for detection / segmentation: a stride-4 stem, then four named stages of cells
    or blocks (:class:`nas.builders.networks.Backbone`).

    >>> from nas.genotype import get_reference
    >>> bb = build_backbone(get_reference("DARTS_V2"), init_channels=8, cells_per_stage=1)
    >>> [tuple(f.shape[1:]) for f in bb(torch.randn(1, 3, 64, 64)).values()]
    [(32, 16, 16), (64, 8, 8), (128, 4, 4), (256, 2, 2)]
    """
    genotype, space = _resolve(genotype, space)
    return build_backbone_arch(_backbone_arch(genotype, space, init_channels=init_channels,
                                              cells_per_stage=cells_per_stage, in_channels=in_channels))


def _resolve(genotype: Genotype | str, space: SearchSpace | str | None) -> tuple[Genotype, SearchSpace]:
    if not isinstance(genotype, Genotype):
        genotype = resolve_genotype(genotype)
    space = load_space(space or genotype)
    return genotype.validate(space).with_space(space), space
