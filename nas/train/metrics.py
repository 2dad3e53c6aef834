"""Detection and segmentation metrics.

:func:`coco_map` computes COCO box AP through pycocotools, building both the ground truth
and the results in memory. :func:`segmentation_metrics` and :class:`ConfusionMatrix` give
mean IoU and pixel accuracy. :func:`evaluate_detector` and :func:`evaluate_segmenter` run
a model over a loader and return those metric dicts.

Example::

    coco_map([{"boxes": b, "scores": s, "labels": l}], [{"boxes": gt_b, "labels": gt_l}])
    # {"map": ..., "map50": ..., "map75": ...}
"""
from __future__ import annotations

import contextlib
import io
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch import Tensor, nn

from nas.errors import NasError


def _xywh(boxes: Tensor) -> list[list[float]]:
    boxes = torch.as_tensor(boxes, dtype=torch.float64).detach().cpu().reshape(-1, 4)
    return torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1).tolist()


def _as_list(values: Any) -> list:
    return torch.as_tensor(values).detach().cpu().reshape(-1).tolist()


def coco_map(predictions: Sequence[Mapping[str, Any]], targets: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """COCO box AP of ``predictions`` against ``targets``, paired by position.

    Each target has ``"boxes"`` (``(K, 4)`` xyxy) and ``"labels"``; each prediction also
    ``"scores"``. Returns ``{"map": AP@[.50:.95], "map50": AP@.50, "map75": AP@.75}``,
    averaged over the classes present in the targets, at most 100 detections per image as in
    COCO. Undefined values (no predictions, or no ground-truth boxes) are reported as 0.0.

    Example::

        target = {"boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0]]), "labels": torch.tensor([1])}
        coco_map([{**target, "scores": torch.tensor([0.9])}], [target])["map"]  # 1.0
    """
    if len(predictions) != len(targets):
        raise ValueError(f"coco_map: {len(predictions)} predictions for {len(targets)} targets")
    images, annotations, labels = [], [], set()
    for image_id, target in enumerate(targets, start=1):
        images.append({"id": image_id})
        for box, label in zip(_xywh(target["boxes"]), _as_list(target["labels"])):
            labels.add(int(label))
            annotations.append(
                {"id": len(annotations) + 1, "image_id": image_id, "category_id": int(label),
                 "bbox": box, "area": box[2] * box[3], "iscrowd": 0}
            )
    results = []
    for image_id, prediction in enumerate(predictions, start=1):
        for box, score, label in zip(
            _xywh(prediction["boxes"]), _as_list(prediction["scores"]), _as_list(prediction["labels"])
        ):
            results.append({"image_id": image_id, "category_id": int(label), "bbox": box, "score": float(score)})
    zero = {"map": 0.0, "map50": 0.0, "map75": 0.0}
    # loadRes rejects an empty result list, and without ground truth AP is undefined.
    if not results or not annotations:
        return zero
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress and tables
        ground_truth = COCO()
        ground_truth.dataset = {
            "images": images,
            "annotations": annotations,
            "categories": [{"id": label} for label in sorted(labels)],
        }
        ground_truth.createIndex()
        evaluator = COCOeval(ground_truth, ground_truth.loadRes(results), iouType="bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    # stats[0..2] are AP@[.50:.95], AP@.50 and AP@.75 over all areas; -1 means undefined.
    return {key: max(float(value), 0.0) for key, value in zip(zero, evaluator.stats[:3])}


class ConfusionMatrix:
    """A streaming ``num_classes x num_classes`` confusion matrix (rows: target, columns: prediction).

    Pixels whose target is ``ignore_index`` are skipped. ``update`` accepts label maps
    ``(N, H, W)`` or logits ``(N, C, H, W)`` (arg-maxed over ``C``) as predictions.

    Example::

        matrix = ConfusionMatrix(4)
        for images, masks in loader:
            matrix.update(model(images), masks)
        matrix.compute()["miou"]
    """

    def __init__(self, num_classes: int, ignore_index: int = 255) -> None:
        if num_classes < 1:
            raise NasError(f"num_classes must be at least 1, got {num_classes}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = torch.zeros((num_classes, num_classes), dtype=torch.int64)

    def update(self, pred: Tensor, target: Tensor) -> None:
        if pred.dim() == target.dim() + 1:
            pred = pred.argmax(dim=1)
        if pred.shape != target.shape:
            raise ValueError(f"prediction shape {tuple(pred.shape)} does not match target shape {tuple(target.shape)}")
        # Count on the predictions' device; only the n x n result moves to the CPU.
        pred = pred.detach().reshape(-1).long()
        target = target.detach().reshape(-1).to(pred.device, torch.int64)
        valid = target != self.ignore_index
        pred, target = pred[valid], target[valid]
        n = self.num_classes
        if target.numel() and (int(target.min()) < 0 or int(target.max()) >= n):
            bad = int(target.max()) if int(target.max()) >= n else int(target.min())
            raise NasError(
                f"segmentation target has class {bad} but num_classes is {n} (ignore_index {self.ignore_index}); "
                "check the masks or num_classes"
            )
        if pred.numel() and (int(pred.min()) < 0 or int(pred.max()) >= n):
            raise ValueError(f"predicted classes must lie in 0..{n - 1}")
        self.matrix += torch.bincount(target * n + pred, minlength=n * n).reshape(n, n).cpu()

    def compute(self) -> dict[str, Any]:
        """``{"miou", "pixel_accuracy", "iou_per_class"}``.

        ``iou_per_class[c]`` is NaN for a class absent from both predictions and targets;
        such classes are left out of ``miou``. With no counted pixels both scores are 0.0.
        """
        matrix = self.matrix.to(torch.float64)
        true_positive = matrix.diagonal()
        union = matrix.sum(dim=0) + matrix.sum(dim=1) - true_positive
        iou = true_positive / union  # 0/0 gives NaN for absent classes
        present = union > 0
        total = float(matrix.sum())
        return {
            "miou": float(iou[present].mean()) if bool(present.any()) else 0.0,
            "pixel_accuracy": float(true_positive.sum()) / total if total else 0.0,
            "iou_per_class": [float(v) for v in iou],
        }


def segmentation_metrics(preds: Tensor, targets: Tensor, num_classes: int, ignore_index: int = 255) -> dict[str, Any]:
    """Mean IoU, pixel accuracy and per-class IoU of ``preds`` against ``targets``.

    ``preds`` are label maps shaped like ``targets`` or logits with an extra class dimension
    1; see :meth:`ConfusionMatrix.compute` for the returned dict.

    Example::

        segmentation_metrics(torch.tensor([[0, 1]]), torch.tensor([[0, 1]]), num_classes=2)["miou"]  # 1.0
    """
    matrix = ConfusionMatrix(num_classes, ignore_index)
    matrix.update(preds, targets)
    return matrix.compute()


def evaluate_detector(
    model: nn.Module, loader: Iterable[tuple[Sequence[Tensor], Sequence[Mapping[str, Any]]]], device: torch.device | str
) -> dict[str, float]:
    """:func:`coco_map` of a torchvision-style detector over a loader of ``(images, targets)`` lists.

    The model runs in eval mode without gradients and is put back in its previous mode.

    Example::

        loader = DataLoader(ShapesDataset(50, seed=1), batch_size=8, collate_fn=collate_detection)
        evaluate_detector(model, loader, "cpu")["map50"]
    """
    was_training = model.training
    model.eval()
    predictions, targets = [], []
    try:
        with torch.inference_mode():
            for images, batch_targets in loader:
                outputs = model([image.to(device) for image in images])
                predictions += [{k: v.cpu() for k, v in output.items()} for output in outputs]
                targets += list(batch_targets)
    finally:
        model.train(was_training)
    return coco_map(predictions, targets)


def evaluate_segmenter(
    model: nn.Module, loader: Iterable[tuple[Tensor, Tensor]], device: torch.device | str, num_classes: int
) -> dict[str, Any]:
    """:func:`segmentation_metrics` of a segmenter over a loader of ``(images, masks)`` batches.

    The model must return ``(N, C, H, W)`` logits; it runs in eval mode without gradients and
    is put back in its previous mode.

    Example::

        loader = DataLoader(ShapesDataset(50, seed=1, task="segmentation"), batch_size=8)
        evaluate_segmenter(model, loader, "cpu", num_classes=4)["miou"]
    """
    was_training = model.training
    model.eval()
    matrix = ConfusionMatrix(num_classes)
    try:
        with torch.inference_mode():
            for images, masks in loader:
                matrix.update(model(images.to(device)).argmax(dim=1), masks)
    finally:
        model.train(was_training)
    return matrix.compute()

