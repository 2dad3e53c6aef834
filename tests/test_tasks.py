"""Detection and segmentation: models on contract backbones, data sets and metrics."""
from __future__ import annotations

import json
import math
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader

from nas.builders.detection import backbone_fpn, build_detector, pyramid_strides
from nas.builders.networks import torchvision_backbone
from nas.builders.segmentation import build_segmenter
from nas.data.tasks import (
    CocoDetection,
    MaskFolderSegmentation,
    ShapesDataset,
    collate_detection,
)
from nas.errors import NasError
from nas.train.metrics import (
    ConfusionMatrix,
    coco_map,
    evaluate_detector,
    evaluate_segmenter,
    segmentation_metrics,
)

SIZE = 64


class TinyBackbone(nn.Module):
    """Four strided conv stages (8/16/24/32 channels) declaring themselves in ``feature_info``."""

    def __init__(self) -> None:
        super().__init__()
        channels = [8, 16, 24, 32]
        self.feature_info = [{"module": f"stage{i + 1}", "num_chs": c, "reduction": 4 * 2**i}
                             for i, c in enumerate(channels)]
        self.stage1 = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        )
        for i, (c_in, c_out) in enumerate(zip(channels, channels[1:]), start=2):
            stage = nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.BatchNorm2d(c_out), nn.ReLU())
            self.add_module(f"stage{i}", stage)

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        features = OrderedDict()
        for info in self.feature_info:
            x = getattr(self, info["module"])(x)
            features[info["module"]] = x
        return features


def _assert_backbone_gradients(backbone: nn.Module) -> None:
    grads = [p.grad for p in backbone.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(bool(g.abs().sum() > 0) for g in grads)


def _detection_batch(seed: int = 0) -> tuple[list[torch.Tensor], list[dict]]:
    data = ShapesDataset(2, image_size=SIZE, seed=seed)
    return collate_detection([data[0], data[1]])


# --------------------------------------------------------------------------- detection


def test_backbone_contract_of_torchvision_wrappers():
    x = torch.zeros(1, 3, SIZE, SIZE)
    for name in ("resnet18", "mobilenet_v3_large"):
        backbone = torchvision_backbone(name, features=True).eval()
        features = backbone(x)
        assert list(features) == [info["module"] for info in backbone.feature_info]
        assert [f.shape[1] for f in features.values()] == [info["num_chs"] for info in backbone.feature_info]
        assert [SIZE // f.shape[-1] for f in features.values()] == [i["reduction"] for i in backbone.feature_info] \
            == [4, 8, 16, 32]
        # without features=True: torchvision's own module, whose named stages hold the same maps
        raw = torchvision_backbone(name)
        assert {info["module"] for info in raw.feature_info} <= {n for n, _ in raw.named_children()}
    with pytest.raises(NasError, match="vgg"):
        torchvision_backbone("vgg")


def test_backbone_fpn_levels_and_contract_errors():
    x = torch.zeros(1, 3, SIZE, SIZE)
    fpn = backbone_fpn(TinyBackbone(), out_channels=16)
    out = fpn(x)
    assert list(out) == ["0", "1", "2", "3", "pool"]
    assert [SIZE // f.shape[-1] for f in out.values()] == pyramid_strides([0, 1, 2, 3], "pool") == [4, 8, 16, 32, 64]
    assert all(f.shape[1] == 16 for f in out.values()) and fpn.out_channels == 16
    fpn = backbone_fpn(TinyBackbone(), out_channels=16, extra_blocks="p6p7", returned_layers=[1, 2, 3])
    out = fpn(x)
    assert list(out) == ["1", "2", "3", "p6", "p7"]
    assert [SIZE // f.shape[-1] for f in list(out.values())[:4]] == pyramid_strides([1, 2, 3], "p6p7")[:4] \
        == [8, 16, 32, 64]
    with pytest.raises(NasError, match="feature_info"):
        backbone_fpn(nn.Conv2d(3, 8, 3))
    with pytest.raises(NasError, match="returned_layers"):
        backbone_fpn(TinyBackbone(), returned_layers=[2, 1])
    with pytest.raises(NasError, match="unknown detector"):
        build_detector("yolo", TinyBackbone(), 4)
    # One anchor size per pyramid level, whatever the number of levels.
    faster = build_detector("fasterrcnn", TinyBackbone(), 4, returned_layers=[1, 2, 3])
    assert faster.rpn.anchor_generator.sizes == ((16,), (32,), (64,), (128,))
    retina = build_detector("retinanet", TinyBackbone(), 4)
    assert [s[0] for s in retina.anchor_generator.sizes] == [16, 32, 64, 128, 256]
    fcos = build_detector("fcos", TinyBackbone(), 4, returned_layers=[0, 1, 2, 3])
    assert fcos.anchor_generator.sizes == ((4,), (8,), (16,), (32,), (64,), (128,))
    with pytest.raises(NasError, match="divisible by 32"):
        build_detector("fcos", TinyBackbone(), 4, fpn_channels=48)


@pytest.mark.parametrize("kind", ["fasterrcnn", "retinanet", "fcos"])
def test_detector_train_step_and_inference(kind):
    torch.manual_seed(0)
    backbone = TinyBackbone()
    model = build_detector(kind, backbone, ShapesDataset.num_classes, fpn_channels=32, min_size=SIZE, max_size=SIZE)
    images, targets = _detection_batch()
    model.train()
    losses = model(images, targets)
    loss = sum(losses.values())
    assert torch.isfinite(loss)
    loss.backward()
    _assert_backbone_gradients(backbone)

    model.eval()
    with torch.no_grad():
        outputs = model(images)
    assert len(outputs) == 2
    for out in outputs:
        m = out["boxes"].shape[0]
        assert out["boxes"].shape == (m, 4) and out["boxes"].dtype == torch.float32
        assert out["scores"].shape == (m,) and out["labels"].shape == (m,)
        assert out["labels"].dtype == torch.int64
        assert bool(((out["labels"] >= 0) & (out["labels"] < ShapesDataset.num_classes)).all())


def test_detector_on_resnet18_and_evaluate_detector():
    torch.manual_seed(0)
    backbone = torchvision_backbone("resnet18")
    model = build_detector("fasterrcnn", backbone, ShapesDataset.num_classes, min_size=SIZE, max_size=SIZE)
    images, targets = _detection_batch()
    loss = sum(model(images, targets).values())
    assert torch.isfinite(loss)
    loss.backward()
    _assert_backbone_gradients(model.backbone.body)  # the stages the FPN reads (not ResNet's classifier)
    loader = DataLoader(ShapesDataset(2, image_size=SIZE, seed=5), batch_size=2, collate_fn=collate_detection)
    metrics = evaluate_detector(model, loader, "cpu")
    assert set(metrics) == {"map", "map50", "map75"}
    assert all(0.0 <= v <= 1.0 for v in metrics.values())
    assert model.training  # mode restored


# --------------------------------------------------------------------------- segmentation


@pytest.mark.parametrize("kind", ["fcn", "deeplabv3", "unet"])
def test_segmenter_train_step_and_inference(kind):
    torch.manual_seed(0)
    backbone = TinyBackbone()
    model = build_segmenter(kind, backbone, ShapesDataset.num_classes)
    data = ShapesDataset(2, image_size=SIZE, task="segmentation")
    images, masks = next(iter(DataLoader(data, batch_size=2)))
    model.train()
    logits = model(images)
    assert isinstance(logits, torch.Tensor) and logits.shape == (2, 4, SIZE, SIZE)
    loss = nn.functional.cross_entropy(logits, masks, ignore_index=255)
    assert torch.isfinite(loss)
    loss.backward()
    _assert_backbone_gradients(backbone)

    model.eval()
    with torch.no_grad():
        # Sides that are not multiples of 32 still come back at input resolution.
        assert model(torch.rand(1, 3, 72, 56)).shape == (1, 4, 72, 56)
    metrics = evaluate_segmenter(model, DataLoader(data, batch_size=2), "cpu", num_classes=4)
    assert 0.0 <= metrics["miou"] <= 1.0 and 0.0 <= metrics["pixel_accuracy"] <= 1.0


def test_segmenter_on_resnet18_and_options():
    torch.manual_seed(0)
    backbone = torchvision_backbone("resnet18", features=True)  # forward returns the four maps
    model = build_segmenter("unet", backbone, 3)
    images = torch.rand(2, 3, SIZE, SIZE)
    logits = model(images)
    assert logits.shape == (2, 3, SIZE, SIZE)
    logits.logsumexp(dim=1).mean().backward()
    _assert_backbone_gradients(backbone)
    model = build_segmenter("deeplabv3", TinyBackbone(), 5, feature_stride=16).eval()
    assert model(images).shape == (2, 5, SIZE, SIZE)
    with pytest.raises(NasError, match="feature_stride"):
        build_segmenter("fcn", TinyBackbone(), 5, feature_stride=8)
    with pytest.raises(NasError, match="unknown segmenter"):
        build_segmenter("pspnet", TinyBackbone(), 5)


def test_segmenter_exports_as_a_plain_tensor_graph():
    model = build_segmenter("unet", TinyBackbone(), 4).eval()
    x = torch.rand(1, 3, SIZE, SIZE)
    exported = torch.export.export(model, (x,))
    assert torch.allclose(exported.module()(x), model(x), atol=1e-5)


# --------------------------------------------------------------------------- metrics


def _target(boxes, labels):
    return {"boxes": torch.as_tensor(boxes, dtype=torch.float32), "labels": torch.as_tensor(labels)}


def _prediction(boxes, labels, scores=None):
    scores = [0.9] * len(labels) if scores is None else scores
    return {**_target(boxes, labels), "scores": torch.as_tensor(scores, dtype=torch.float32).reshape(-1)}


TARGETS = [
    _target([[10, 10, 30, 40], [40, 5, 60, 25]], [1, 2]),
    _target([[0, 0, 20, 20]], [2]),
    _target(torch.zeros(0, 4), []),  # an image without objects
]


def test_coco_map_perfect_and_empty():
    perfect = [_prediction(t["boxes"], t["labels"]) for t in TARGETS]
    assert coco_map(perfect, TARGETS) == {"map": 1.0, "map50": 1.0, "map75": 1.0}
    empty = [_prediction(torch.zeros(0, 4), []) for _ in TARGETS]
    assert coco_map(empty, TARGETS) == {"map": 0.0, "map50": 0.0, "map75": 0.0}
    wrong_class = [_prediction(t["boxes"], 3 - t["labels"]) for t in TARGETS]
    assert coco_map(wrong_class, TARGETS)["map50"] == 0.0


def test_coco_map_iou_thresholds():
    target = [_target([[0, 0, 10, 10]], [1])]
    # Shifted by 2 px: IoU = 80 / 120 = 0.667, a match at thresholds .50, .55, .60, .65 only.
    shifted = [_prediction([[2, 0, 12, 10]], [1])]
    result = coco_map(shifted, target)
    assert result["map50"] == pytest.approx(1.0)
    assert result["map75"] == pytest.approx(0.0)
    assert result["map"] == pytest.approx(0.4)


def test_segmentation_metrics():
    target = torch.tensor([[0, 0, 1], [1, 2, 255]])
    assert segmentation_metrics(target.clamp(max=2), target, 3)["miou"] == 1.0
    assert segmentation_metrics(target.clamp(max=2), target, 3)["pixel_accuracy"] == 1.0
    all_wrong = segmentation_metrics((target + 1) % 3, target, 3)
    assert all_wrong["miou"] == 0.0 and all_wrong["pixel_accuracy"] == 0.0

    # Valid (target, pred) pairs: (0,0) (0,1) (1,1) (1,1) (2,0); the 255 pixel is ignored.
    # IoU: class 0 = 1/3, class 1 = 2/3, class 2 = 0; class 3 is absent and left out.
    target = torch.tensor([[0, 0, 1], [1, 2, 255]])
    pred = torch.tensor([[0, 1, 1], [1, 0, 2]])
    result = segmentation_metrics(pred, target, 4)
    assert result["pixel_accuracy"] == pytest.approx(3 / 5)
    assert result["miou"] == pytest.approx(1 / 3)
    assert result["iou_per_class"][:3] == pytest.approx([1 / 3, 2 / 3, 0.0])
    assert math.isnan(result["iou_per_class"][3])

    # Streaming over two halves, with logits, matches the one-shot result.
    matrix = ConfusionMatrix(4)
    logits = nn.functional.one_hot(pred.clamp(max=3), 4).permute(2, 0, 1).float()
    matrix.update(logits[None, :, :1], target[None, :1])
    matrix.update(logits[None, :, 1:], target[None, 1:])
    assert matrix.compute()["miou"] == pytest.approx(1 / 3)
    with pytest.raises(NasError, match="class 7"):
        segmentation_metrics(pred, torch.full_like(target, 7), 4)


# --------------------------------------------------------------------------- shapes data


def test_shapes_deterministic_and_seed_dependent():
    a, b, c = (ShapesDataset(3, image_size=SIZE, seed=s) for s in (0, 0, 1))
    for i in range(3):
        (image_a, target_a), (image_b, target_b) = a[i], b[i]
        assert torch.equal(image_a, image_b)
        for key in ("boxes", "labels", "masks"):
            assert torch.equal(target_a[key], target_b[key])
    assert not torch.equal(a[0][0], c[0][0])


def test_shapes_targets_are_tight_and_consistent():
    data = ShapesDataset(20, image_size=SIZE, seed=3, max_objects=5)
    segmentation = ShapesDataset(20, image_size=SIZE, seed=3, max_objects=5, task="segmentation")
    for i in range(len(data)):
        image, target = data[i]
        assert image.shape == (3, SIZE, SIZE) and image.dtype == torch.float32
        assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
        masks, boxes, labels = target["masks"], target["boxes"], target["labels"]
        assert target["image_id"] == i and labels.dtype == torch.int64 and masks.dtype == torch.uint8
        assert len(labels) >= 1 and bool(((labels >= 1) & (labels <= 3)).all())
        assert int(masks.sum(dim=0).max()) <= 1  # occlusion: every pixel belongs to one shape
        for mask, box in zip(masks, boxes):
            assert int(mask.sum()) >= data.min_visible
            ys, xs = torch.nonzero(mask, as_tuple=True)
            assert box.tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
        semantic = (masks.long() * labels[:, None, None]).sum(dim=0)
        seg_image, seg_mask = segmentation[i]
        assert torch.equal(seg_image, image) and torch.equal(seg_mask, semantic)
        assert seg_mask.dtype == torch.int64


# --------------------------------------------------------------------------- COCO data


def _write_coco(root: Path) -> tuple[Path, Path, dict]:
    images_dir = root / "images"
    images_dir.mkdir()
    for name in ("a.png", "b.png"):
        Image.new("RGB", (40, 30), (10, 20, 30)).save(images_dir / name)
    dataset = {
        "images": [
            {"id": 1, "file_name": "a.png", "width": 40, "height": 30},
            {"id": 2, "file_name": "b.png", "width": 40, "height": 30},
        ],
        "categories": [{"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}],
        "annotations": [
            {"id": 5, "image_id": 1, "category_id": 7, "bbox": [2, 4, 10, 6], "iscrowd": 0},
            {
                "id": 6, "image_id": 1, "category_id": 3, "bbox": [20, 10, 10, 10], "iscrowd": 0,
                "segmentation": [[20, 10, 30, 10, 30, 20, 20, 20]],
            },
            {"id": 7, "image_id": 2, "category_id": 3, "bbox": [0, 0, 5, 5], "iscrowd": 0},
            {"id": 8, "image_id": 2, "category_id": 3, "bbox": [10, 10, 5, 5], "iscrowd": 1},
        ],
    }
    path = root / "annotations.json"
    path.write_text(json.dumps(dataset))
    return images_dir, path, dataset


def test_coco_detection_loads_and_maps_categories(tmp_path):
    images_dir, path, _ = _write_coco(tmp_path)
    data = CocoDetection(images_dir, path)
    assert len(data) == 2 and data.num_classes == 3
    assert data.classes == ("background", "cat", "dog")
    assert data.category_to_label == {3: 1, 7: 2} and data.label_to_category == {1: 3, 2: 7}
    image, target = data[0]
    assert image.shape == (3, 30, 40) and target["image_id"] == 1
    assert target["boxes"].tolist() == [[2, 4, 12, 10], [20, 10, 30, 20]]
    assert target["labels"].tolist() == [2, 1]
    assert target["masks"].shape == (2, 30, 40) and target["masks"].dtype == torch.uint8
    assert int(target["masks"][1].sum()) == 100  # the 10x10 polygon
    _, target = data[1]
    assert target["labels"].tolist() == [1]  # the crowd annotation is left out
    targets = [data[i][1] for i in range(len(data))]
    perfect = [{**t, "scores": torch.ones(len(t["labels"]))} for t in targets]
    assert coco_map(perfect, targets)["map"] == 1.0
    images, batch = next(iter(DataLoader(data, batch_size=2, collate_fn=collate_detection)))
    assert len(images) == len(batch) == 2


def _bad_bbox(d):
    d["annotations"][2]["bbox"] = [1, 2, -3, 4]


def _short_bbox(d):
    d["annotations"][2]["bbox"] = [1, 2, 3]


def _missing_image(d):
    d["images"][1]["file_name"] = "missing.png"


def _unknown_category(d):
    d["annotations"][2]["category_id"] = 99


def _unknown_image(d):
    d["annotations"][2]["image_id"] = 42


def _no_annotations(d):
    del d["annotations"]


@pytest.mark.parametrize(
    "corrupt, expected",
    [
        (_bad_bbox, ["annotation id 7", "[1, 2, -3, 4]", "positive"]),
        (_short_bbox, ["annotation id 7", "[1, 2, 3]"]),
        (_missing_image, ["image id 2", "missing.png"]),
        (_unknown_category, ["annotation id 7", "category_id 99"]),
        (_unknown_image, ["annotation id 7", "image_id 42"]),
        (_no_annotations, ["'annotations'"]),
    ],
)
def test_coco_detection_malformed_entries(tmp_path, corrupt, expected):
    images_dir, path, dataset = _write_coco(tmp_path)
    corrupt(dataset)
    path.write_text(json.dumps(dataset))
    with pytest.raises(NasError) as info:
        CocoDetection(images_dir, path)
    message = str(info.value)
    assert "annotations.json" in message and "\n" not in message
    for part in expected:
        assert part in message


def test_coco_detection_file_errors(tmp_path):
    images_dir, path, dataset = _write_coco(tmp_path)
    with pytest.raises(NasError, match="nothere.json.*not found"):
        CocoDetection(images_dir, tmp_path / "nothere.json")
    path.write_text("{not json")
    with pytest.raises(NasError, match="annotations.json.*not valid JSON"):
        CocoDetection(images_dir, path)
    dataset["images"][0]["width"] = 41
    path.write_text(json.dumps(dataset))
    with pytest.raises(NasError, match="annotations.json: image id 1 declares 41x30"):
        CocoDetection(images_dir, path)


# --------------------------------------------------------------------------- mask folders


def _palette_mask(values: np.ndarray) -> Image.Image:
    mask = Image.fromarray(values.astype(np.uint8), mode="P")
    mask.putpalette([v for i in range(256) for v in (i, 255 - i, (7 * i) % 256)])
    return mask


def _write_mask_folders(root: Path) -> tuple[Path, Path]:
    images_dir, masks_dir = root / "JPEGImages", root / "SegmentationClass"
    images_dir.mkdir()
    masks_dir.mkdir()
    values = np.zeros((12, 16), dtype=np.uint8)
    values[2:6, 3:9] = 2
    values[0, :] = 255
    for stem in ("x", "y"):
        Image.new("RGB", (16, 12), (200, 100, 50)).save(images_dir / f"{stem}.jpg")
        _palette_mask(values).save(masks_dir / f"{stem}.png")
    return images_dir, masks_dir


def test_mask_folder_segmentation(tmp_path):
    images_dir, masks_dir = _write_mask_folders(tmp_path)
    data = MaskFolderSegmentation(images_dir, masks_dir, num_classes=3)
    assert len(data) == 2
    image, mask = data[0]
    assert image.shape == (3, 12, 16) and image.dtype == torch.float32
    assert mask.shape == (12, 16) and mask.dtype == torch.int64
    assert int((mask == 2).sum()) == 24 and int((mask == 255).sum()) == 16
    images, masks = next(iter(DataLoader(data, batch_size=2)))
    assert images.shape == (2, 3, 12, 16) and masks.shape == (2, 12, 16)
    with pytest.raises(NasError, match=r"x\.png: has class 2 but num_classes is 2"):
        MaskFolderSegmentation(images_dir, masks_dir, num_classes=2)[0]


def test_mask_folder_errors(tmp_path):
    images_dir, masks_dir = _write_mask_folders(tmp_path)
    (masks_dir / "y.png").unlink()
    with pytest.raises(NasError, match=r"y\.jpg: no mask y\.png"):
        MaskFolderSegmentation(images_dir, masks_dir)
    _palette_mask(np.zeros((10, 16))).save(masks_dir / "y.png")
    with pytest.raises(NasError, match=r"y\.png: mask is 16x10 but y\.jpg is 16x12"):
        MaskFolderSegmentation(images_dir, masks_dir)
    Image.new("RGB", (16, 12)).save(masks_dir / "y.png")
    with pytest.raises(NasError, match=r"y\.png: mask mode is 'RGB'"):
        MaskFolderSegmentation(images_dir, masks_dir)
    with pytest.raises(NasError, match="folder not found"):
        MaskFolderSegmentation(tmp_path / "none", masks_dir)
