"""Detection and segmentation on multi-scale backbones: models, data and metrics.

A backbone for these tasks returns an ``OrderedDict`` of four maps keyed ``"0".."3"`` at
strides 4, 8, 16, 32 and declares ``out_channels_list`` and ``strides``; see
:mod:`nas.tasks.detection`.

Example::

    from nas.tasks import ShapesDataset, build_detector, torchvision_backbone
    model = build_detector("fcos", torchvision_backbone("resnet18"), ShapesDataset.num_classes)
"""
from __future__ import annotations

from nas.tasks.data import CocoDetection, MaskFolderSegmentation, ShapesDataset, collate_detection
from nas.tasks.detection import (
    DETECTOR_KINDS,
    BackboneFPN,
    FeatureBackbone,
    build_detector,
    check_backbone,
    torchvision_backbone,
)
from nas.tasks.metrics import (
    ConfusionMatrix,
    coco_map,
    evaluate_detector,
    evaluate_segmenter,
    segmentation_metrics,
)
from nas.tasks.segmentation import SEGMENTER_KINDS, build_segmenter

__all__ = [
    "DETECTOR_KINDS",
    "SEGMENTER_KINDS",
    "BackboneFPN",
    "CocoDetection",
    "ConfusionMatrix",
    "FeatureBackbone",
    "MaskFolderSegmentation",
    "ShapesDataset",
    "build_detector",
    "build_segmenter",
    "check_backbone",
    "coco_map",
    "collate_detection",
    "evaluate_detector",
    "evaluate_segmenter",
    "segmentation_metrics",
    "torchvision_backbone",
]
