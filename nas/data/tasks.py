"""Detection and segmentation data: generated shapes, COCO JSON, and image/mask folders.

Detection items are ``(image, target)``: ``image`` a float tensor ``(3, H, W)`` in [0, 1],
``target`` a dict with ``"boxes"`` (float ``(K, 4)``, ``x1, y1, x2, y2`` in pixels, a box
``[x1, x2)`` covering pixel columns ``x1..x2-1``), ``"labels"`` (int64 ``(K,)``, 1-based;
0 is the background), ``"masks"`` (uint8 ``(K, H, W)``) and ``"image_id"`` (int).
Segmentation items are ``(image, mask)`` with ``mask`` an int64 ``(H, W)`` tensor of class
indices (0 the background, 255 ignored). ``num_classes`` always counts the background.

Example::

    data = ShapesDataset(200, image_size=128, seed=0)
    loader = DataLoader(data, batch_size=8, collate_fn=collate_detection)
    images, targets = next(iter(loader))
"""
from __future__ import annotations

import contextlib
import io
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from pycocotools import mask as coco_mask
from pycocotools.coco import COCO
from torch import Tensor
from torch.utils.data import Dataset

from nas.data import files
from nas.data.files import (
    DataFileError,
    image_header,
    open_image,
    read_file,
)
from nas.errors import NasError

Target = dict[str, Any]
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def image_to_tensor(image: Image.Image) -> Tensor:
    """An RGB PIL image as a float ``(3, H, W)`` tensor in [0, 1]."""
    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def collate_detection(batch: Sequence[tuple[Tensor, Target]]) -> tuple[list[Tensor], list[Target]]:
    """Collate detection items into ``(images, targets)`` lists, the input torchvision detectors take."""
    return [image for image, _ in batch], [target for _, target in batch]


def _empty_target(image_id: int, height: int, width: int) -> Target:
    return {
        "boxes": torch.zeros((0, 4), dtype=torch.float32),
        "labels": torch.zeros((0,), dtype=torch.int64),
        "masks": torch.zeros((0, height, width), dtype=torch.uint8),
        "image_id": image_id,
    }


# --------------------------------------------------------------------------- shapes


class ShapesDataset(Dataset):
    """Generated scenes of squares, circles and triangles on a noisy coloured background.

    Item ``i`` is drawn from a generator seeded with ``(seed, i)``, so the data set is
    identical for a seed whatever the access order, and differs across seeds. Each scene has
    1..``max_objects`` shapes; later shapes occlude earlier ones, boxes bound the visible
    pixels exactly, and shapes left with too few visible pixels are removed from the scene.
    ``task="detection"`` gives detection items, ``task="segmentation"`` ``(image, mask)``.

    Example::

        image, target = ShapesDataset(10, image_size=64, seed=1)[0]
        target["labels"]  # e.g. tensor([2, 1]): a circle, then a square on top
    """

    classes = ("background", "square", "circle", "triangle")
    num_classes = len(classes)

    def __init__(
        self, n: int, *, image_size: int = 128, seed: int = 0, max_objects: int = 4, task: str = "detection"
    ) -> None:
        if n < 1:
            raise NasError(f"ShapesDataset: n must be at least 1, got {n}")
        if image_size < 32:
            raise NasError(f"ShapesDataset: image_size must be at least 32 pixels, got {image_size}")
        if max_objects < 1:
            raise NasError(f"ShapesDataset: max_objects must be at least 1, got {max_objects}")
        if task not in ("detection", "segmentation"):
            raise NasError(f"ShapesDataset: task must be 'detection' or 'segmentation', got {task!r}")
        self.n = n
        self.image_size = image_size
        self.seed = seed
        self.max_objects = max_objects
        self.task = task
        # Occluded shapes with fewer visible pixels than this are dropped: a sliver gives a
        # box with no recognisable shape in it. The smallest whole shape (a triangle of side
        # image_size / 8) is larger, so the shape painted last always stays.
        self.min_visible = max(4, image_size**2 // 256)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> tuple[Tensor, Any]:
        if not 0 <= index < self.n:
            raise IndexError(index)
        image, instances, labels = self._scene(index)
        if self.task == "segmentation":
            semantic = np.zeros_like(instances)
            for k, label in enumerate(labels, start=1):
                semantic[instances == k] = label
            return image, torch.from_numpy(semantic)
        size = self.image_size
        if not labels:
            return image, _empty_target(index, size, size)
        masks = np.stack([instances == k for k in range(1, len(labels) + 1)]).astype(np.uint8)
        boxes = []
        for mask in masks:
            ys, xs = np.nonzero(mask)
            boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        return image, {
            "boxes": torch.tensor(boxes, dtype=torch.float32),
            "labels": torch.tensor(labels, dtype=torch.int64),
            "masks": torch.from_numpy(masks),
            "image_id": index,
        }

    def _scene(self, index: int) -> tuple[Tensor, np.ndarray, list[int]]:
        """The image, an instance map (0 background, k for the k-th kept shape) and labels."""
        rng = np.random.default_rng([self.seed, index])
        size = self.image_size
        yy, xx = np.mgrid[0:size, 0:size] + 0.5  # pixel centres
        shapes = []
        for _ in range(rng.integers(1, self.max_objects + 1)):
            label = int(rng.integers(1, len(self.classes)))
            extent = rng.uniform(size / 8, size / 3)
            cx, cy = rng.uniform(extent / 2, size - extent / 2, size=2)
            shapes.append((label, self._shape_mask(label, cx, cy, extent, rng.uniform(0, 2 * math.pi), xx, yy)))
        # Painting later shapes over earlier ones, then dropping the barely visible ones and
        # painting again: removing a shape only uncovers pixels of the others, so every kept
        # shape stays above the threshold.
        instances = self._paint([mask for _, mask in shapes])
        keep = [k for k in range(len(shapes)) if (instances == k + 1).sum() >= self.min_visible]
        instances = self._paint([shapes[k][1] for k in keep])
        labels = [shapes[k][0] for k in keep]

        background = rng.uniform(0.0, 1.0, size=3)
        # A smooth brightness ramp so the background is not a flat colour.
        ramp = rng.uniform(-0.2, 0.2) * (xx / size - 0.5) + rng.uniform(-0.2, 0.2) * (yy / size - 0.5)
        image = np.clip(background[None, None, :] + ramp[..., None], 0.0, 1.0)
        for k in range(1, len(labels) + 1):
            colour = rng.uniform(0.0, 1.0, size=3)
            while np.abs(colour - background).sum() < 0.6:  # keep shapes visible against the background
                colour = rng.uniform(0.0, 1.0, size=3)
            image[instances == k] = colour
        image = np.clip(image + rng.normal(0.0, 0.04, size=image.shape), 0.0, 1.0)
        return torch.from_numpy(image.astype(np.float32)).permute(2, 0, 1).contiguous(), instances, labels

    @staticmethod
    def _shape_mask(
        label: int, cx: float, cy: float, extent: float, angle: float, xx: np.ndarray, yy: np.ndarray
    ) -> np.ndarray:
        half = extent / 2
        if label == 1:  # axis-aligned square
            return (np.abs(xx - cx) <= half) & (np.abs(yy - cy) <= half)
        if label == 2:  # circle
            return (xx - cx) ** 2 + (yy - cy) ** 2 <= half**2
        # Rotated equilateral triangle of side ``extent`` centred on (cx, cy): a point is inside
        # when it lies on the inner side of all three edges.
        radius = extent / math.sqrt(3)
        corners = [
            (cx + radius * math.cos(angle + j * 2 * math.pi / 3), cy + radius * math.sin(angle + j * 2 * math.pi / 3))
            for j in range(3)
        ]
        inside = np.ones_like(xx, dtype=bool)
        for (x0, y0), (x1, y1) in zip(corners, corners[1:] + corners[:1]):
            inside &= (x1 - x0) * (yy - y0) - (y1 - y0) * (xx - x0) >= 0
        return inside

    def _paint(self, masks: Sequence[np.ndarray]) -> np.ndarray:
        instances = np.zeros((self.image_size, self.image_size), dtype=np.int64)
        for k, mask in enumerate(masks, start=1):
            instances[mask] = k
        return instances


# --------------------------------------------------------------------------- COCO


class CocoDetection(Dataset):
    """COCO-format detection data: an image folder and a COCO annotation JSON.

    Category ids are mapped to contiguous labels ``1..K`` in increasing id order;
    ``label_to_category`` / ``category_to_label`` convert between the two and ``classes``
    names them (``classes[0] == "background"``, ``num_classes == K + 1``). Crowd annotations
    (``iscrowd: 1``) are left out of the targets. ``"masks"`` come from the annotations'
    ``segmentation`` (polygons or RLE), or fill the box where an annotation has none.
    ``"image_id"`` is the COCO image id. The JSON and the image files are checked when the
    data set is built (images are decoded once if they total at most
    :data:`~nas.data.files.FULL_CHECK_BYTES`, else their headers are read); every problem
    raises :class:`NasError` naming the file and the entry. ``transforms``, if given, maps
    ``(image, target)`` to a new pair.

    Example::

        data = CocoDetection("coco/val2017", "coco/annotations/instances_val2017.json")
        image, target = data[0]
    """

    def __init__(
        self,
        images_dir: str | Path,
        annotation_json: str | Path,
        *,
        transforms: Callable[[Tensor, Target], tuple[Tensor, Target]] | None = None,
    ) -> None:
        self.images_dir = Path(images_dir)
        self.annotation_json = Path(annotation_json)
        self.transforms = transforms
        if not self.images_dir.is_dir():
            raise NasError(f"{self.images_dir}: image folder not found; pass the folder holding the COCO images")
        dataset = self._load_json()
        self._check(dataset)
        self.coco = COCO()
        self.coco.dataset = dataset
        with contextlib.redirect_stdout(io.StringIO()):  # createIndex prints progress
            self.coco.createIndex()
        category_ids = sorted(self.coco.cats)
        self.category_to_label = {cat: label for label, cat in enumerate(category_ids, start=1)}
        self.label_to_category = {label: cat for cat, label in self.category_to_label.items()}
        self.classes = ("background", *(str(self.coco.cats[c].get("name", c)) for c in category_ids))
        self.num_classes = len(self.classes)
        self.ids = sorted(self.coco.imgs)

    def _fail(self, entry: str, problem: str) -> NasError:
        return NasError(f"{self.annotation_json}: {entry} {problem}; fix or remove it")

    def _load_json(self) -> dict:
        path = self.annotation_json
        if not path.is_file():
            raise NasError(f"{path}: annotation file not found; pass the path of a COCO annotation JSON")
        try:
            dataset = json.loads(read_file(path).decode("utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise NasError(f"{path}: not valid JSON ({_one_line(exc)}); pass a COCO annotation JSON") from None
        except RecursionError:
            raise NasError(f"{path}: nested too deeply to be a COCO annotation file; pass a COCO annotation JSON") \
                from None
        if not isinstance(dataset, dict):
            raise NasError(f"{path}: a COCO annotation file is a JSON object with images, annotations and "
                           f"categories, not a JSON {type(dataset).__name__}; pass a COCO annotation JSON")
        for key in ("images", "annotations", "categories"):
            if not isinstance(dataset.get(key), list):
                raise NasError(
                    f"{path}: missing the list {key!r}; a COCO annotation file has images, annotations and categories"
                )
        return dataset

    def _unique_id(self, what: str, entry: Any, seen: set[int]) -> int:
        """The integer ``id`` of ``entry``, added to ``seen``; a missing or repeated id raises."""
        entry_id = entry.get("id") if isinstance(entry, dict) else None
        if not _is_int(entry_id):
            raise self._fail(f"{what} {_short(entry)}", "needs a unique integer id")
        if entry_id in seen:
            raise self._fail(f"{what} id {entry_id}", f"appears twice (give each {what} an id of its own)")
        seen.add(entry_id)
        return entry_id

    def _check(self, dataset: dict) -> None:
        category_ids: set[int] = set()
        for category in dataset["categories"]:
            self._unique_id("category", category, category_ids)
        image_ids: set[int] = set()
        sizes: dict[int, tuple[int, int]] = {}  # image id -> (height, width)
        for image in dataset["images"]:
            image_id = self._unique_id("image", image, image_ids)
            file_name = image.get("file_name")
            if not isinstance(file_name, str) or not file_name:
                raise self._fail(f"image id {image_id}", "has no file_name")
            height, width = image.get("height"), image.get("width")
            if not (_is_int(height) and _is_int(width) and height > 0 and width > 0):
                raise self._fail(f"image id {image_id}", f"has width {width!r} and height {height!r} "
                                 "(expected positive integers, the image's size in pixels)")
            sizes[image_id] = (height, width)
            if not (self.images_dir / file_name).is_file():
                raise self._fail(f"image id {image_id}", f"has file_name {file_name!r}, not found in {self.images_dir}")
        annotation_ids: set[int] = set()
        for annotation in dataset["annotations"]:
            ann_id = self._unique_id("annotation", annotation, annotation_ids)
            entry = f"annotation id {ann_id}"
            image_id = annotation.get("image_id")
            if not _is_int(image_id) or image_id not in image_ids:
                raise self._fail(entry, f"has image_id {_short(image_id)}, which is not in images")
            category = annotation.get("category_id")
            if not _is_int(category) or category not in category_ids:
                raise self._fail(entry, f"has category_id {_short(category)}, which is not in categories")
            bbox = annotation.get("bbox")
            if not isinstance(bbox, list) or len(bbox) != 4 or not all(_is_number(v) for v in bbox):
                raise self._fail(entry, f"has bbox {_short(bbox)} (expected [x, y, width, height] numbers)")
            if bbox[2] <= 0 or bbox[3] <= 0:
                raise self._fail(entry, f"has bbox {bbox!r} (width and height must be positive)")
            if annotation.get("iscrowd", 0) not in (0, 1) or isinstance(annotation.get("iscrowd"), float):
                raise self._fail(entry, f"has iscrowd {_short(annotation.get('iscrowd'))} (expected 0 or 1)")
            problem = _segmentation_problem(annotation.get("segmentation"), *sizes[image_id])
            if problem is not None:
                raise self._fail(entry, f"has a segmentation that is {problem}")
        self._check_images(dataset["images"])

    def _check_images(self, images: list[dict]) -> None:
        """Every image's header against its declared size; every image decoded once as well when
        the files are small enough together."""
        paths = [self.images_dir / image["file_name"] for image in images]
        full = sum(p.stat().st_size for p in paths) <= files.FULL_CHECK_BYTES
        for image, path in zip(images, paths, strict=True):
            if full:
                width, height = open_image(read_file(path), str(path)).size
            else:
                width, height = image_header(path).size
            if (image["width"], image["height"]) != (width, height):
                raise self._fail(f"image id {image['id']}", f"declares {image['width']}x{image['height']} "
                                 f"but {path.name} is {width}x{height}")

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> tuple[Tensor, Target]:
        image_id = self.ids[index]
        info = self.coco.imgs[image_id]
        path = self.images_dir / info["file_name"]
        image = image_to_tensor(open_image(read_file(path), str(path)))
        height, width = image.shape[-2:]
        if (info["height"], info["width"]) != (height, width):  # the file changed after the check
            raise self._fail(
                f"image id {image_id}",
                f"declares {info.get('width')}x{info.get('height')} but {path.name} is {width}x{height}",
            )
        annotations = [a for a in self.coco.imgToAnns[image_id] if not a.get("iscrowd", 0)]
        target = _empty_target(image_id, height, width)
        if annotations:
            target["boxes"] = torch.tensor(
                [[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in annotations)], dtype=torch.float32
            )
            target["labels"] = torch.tensor([self.category_to_label[a["category_id"]] for a in annotations])
            target["masks"] = torch.from_numpy(np.stack([self._mask(a, height, width) for a in annotations]))
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target

    def _mask(self, annotation: dict, height: int, width: int) -> np.ndarray:
        segmentation = annotation.get("segmentation")
        if not segmentation:
            x, y, w, h = annotation["bbox"]
            segmentation = [[x, y, x + w, y, x + w, y + h, x, y + h]]
        try:
            if isinstance(segmentation, dict) and isinstance(segmentation["counts"], str):
                rle = {"size": segmentation["size"], "counts": segmentation["counts"].encode("ascii")}  # compressed
            else:
                rles = coco_mask.frPyObjects(segmentation, height, width)
                rle = coco_mask.merge(rles) if isinstance(rles, list) else rles
            return coco_mask.decode(rle).astype(np.uint8)
        except (TypeError, ValueError, KeyError, IndexError) as exc:
            raise self._fail(f"annotation id {annotation['id']}",
                                  f"has an unreadable segmentation ({_one_line(exc)})") from None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _short(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters, for messages about user data."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__


def _rle_string_counts(text: str) -> list[int] | None:
    """The run lengths of a compressed COCO RLE string (pycocotools' ``rleFrString``), or
    ``None`` for a string that is not one: checked here because pycocotools trusts it."""
    counts: list[int] = []
    pos = 0
    while pos < len(text):
        value = shift = 0
        more = True
        while more:
            if pos >= len(text):
                return None
            c = ord(text[pos]) - 48
            if not 0 <= c < 64:
                return None
            value |= (c & 0x1F) << (5 * shift)
            more = bool(c & 0x20)
            pos += 1
            shift += 1
            if not more and c & 0x10:
                value |= -1 << (5 * shift)
        if len(counts) > 2:
            value += counts[-2]
        counts.append(value)
    return counts


def _segmentation_problem(segmentation: Any, height: int, width: int) -> str | None:
    """What is wrong with an annotation's ``segmentation`` for an image of ``height`` x ``width``,
    or ``None``: polygons (lists of at least three x, y pairs), an RLE dict, or nothing (the box
    is filled)."""
    if segmentation is None or segmentation == []:
        return None
    if isinstance(segmentation, list):
        for polygon in segmentation:
            if (not isinstance(polygon, list) or len(polygon) < 6 or len(polygon) % 2
                    or not all(_is_number(v) for v in polygon)):
                return (f"not a list of polygons ({_short(polygon)}: a polygon is a list of at least 3 "
                        "x, y number pairs)")
        return None
    if isinstance(segmentation, dict):
        size, counts = segmentation.get("size"), segmentation.get("counts")
        if size != [height, width]:
            return f"an RLE of size {_short(size)}, not the image's [height, width] [{height}, {width}]"
        if isinstance(counts, str):
            runs = _rle_string_counts(counts)
        elif isinstance(counts, list) and all(_is_int(c) for c in counts):
            runs = counts
        else:
            runs = None
        if runs is None or any(c < 0 for c in runs) or sum(runs) != height * width:
            return f"an RLE whose counts {_short(counts)} do not cover the {height}x{width} image"
        return None
    return f"{_short(segmentation)} (expected a list of polygons or an RLE dict with size and counts)"


# --------------------------------------------------------------------------- mask folders


class MaskFolderSegmentation(Dataset):
    """Segmentation data as an image folder and a mask folder, paired by file stem (VOC style).

    Each image ``<stem>.jpg`` (or ``.jpeg``, ``.png``, ``.bmp``) needs a mask ``<stem>.png``
    of the same size in palette (``'P'``) or greyscale (``'L'``) mode whose pixel values are
    class indices, 255 meaning "ignore". Pairs, formats and sizes are checked when the data set
    is built, and when the files total at most :data:`~nas.data.files.FULL_CHECK_BYTES` every
    file is decoded once as well, so a damaged image, or a mask value outside
    ``0..num_classes-1`` (other than 255) when ``num_classes`` is given, raises
    :class:`NasError` before any training; a larger set is checked so as each pair is read.
    ``transforms``, if given, maps ``(image, mask)`` to a new pair (e.g. a joint resize or crop
    so batches stack).

    Example::

        data = MaskFolderSegmentation("VOC2012/JPEGImages", "VOC2012/SegmentationClass")
    """

    def __init__(
        self,
        images_dir: str | Path,
        masks_dir: str | Path,
        *,
        num_classes: int | None = None,
        transforms: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]] | None = None,
    ) -> None:
        self.images_dir = Path(images_dir)
        self.masks_dir = Path(masks_dir)
        self.num_classes = num_classes
        self.transforms = transforms
        for folder, what in ((self.images_dir, "image"), (self.masks_dir, "mask")):
            if not folder.is_dir():
                raise NasError(f"{folder}: {what} folder not found")
        images = sorted(p for p in self.images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise NasError(f"{self.images_dir}: no images ({', '.join(IMAGE_SUFFIXES)}) found")
        self.pairs: list[tuple[Path, Path]] = []
        for image_path in images:
            mask_path = self.masks_dir / f"{image_path.stem}.png"
            if not mask_path.is_file():
                raise NasError(
                    f"{image_path}: no mask {mask_path.name} in {self.masks_dir}; add it or remove the image"
                )
            # Headers only, so checking every pair up front is cheap.
            image = image_header(image_path)
            mask = image_header(mask_path)
            self._check_mask_header(mask_path, mask.format, mask.mode)
            if image.size != mask.size:
                raise NasError(
                    f"{mask_path}: mask is {mask.size[0]}x{mask.size[1]} but {image_path.name} is "
                    f"{image.size[0]}x{image.size[1]}; masks must match their images"
                )
            self.pairs.append((image_path, mask_path))
        if sum(p.stat().st_size for pair in self.pairs for p in pair) <= files.FULL_CHECK_BYTES:
            for index in range(len(self.pairs)):
                self._read(index)

    @staticmethod
    def _check_mask_header(mask_path: Path, fmt: str, mode: str) -> None:
        if fmt != "PNG":
            raise NasError(f"{mask_path}: mask is a {fmt} file, not a PNG; save it as a palette ('P') or greyscale "
                           "('L') PNG of class indices (a lossy format changes the class ids)")
        if mode not in ("P", "L"):
            raise NasError(
                f"{mask_path}: mask mode is {mode!r}; save it as a palette ('P') or "
                "greyscale ('L') PNG of class indices"
            )

    def __len__(self) -> int:
        return len(self.pairs)

    def _read(self, index: int) -> tuple[Tensor, Tensor]:
        """Pair ``index`` decoded, strictly; its problems are :class:`DataFileError` (one line
        even from a DataLoader worker)."""
        image_path, mask_path = self.pairs[index]
        image = image_to_tensor(open_image(read_file(image_path), str(image_path)))
        pil = open_image(read_file(mask_path), str(mask_path))
        if pil.format != "PNG" or pil.mode not in ("P", "L") or pil.size != (image.shape[2], image.shape[1]):
            raise DataFileError(f"{mask_path}: changed since the data set was checked; check the mask folder again")
        # np.asarray of a 'P' image gives the palette indices, i.e. the class ids.
        mask = torch.from_numpy(np.asarray(pil, dtype=np.int64).copy())
        if self.num_classes is not None:
            values = mask[mask != 255]
            if values.numel() and int(values.max()) >= self.num_classes:
                raise DataFileError(
                    f"{mask_path}: has class {int(values.max())} but num_classes is {self.num_classes}; "
                    "fix the mask or raise num_classes"
                )
        return image, mask

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        image, mask = self._read(index)
        if self.transforms is not None:
            image, mask = self.transforms(image, mask)
        return image, mask
