"""The data layer: digits, CIFAR in both layouts, image folders, splits, augmentation, errors."""
from __future__ import annotations

import io
import json
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from nas.data import DATASETS, DatasetInfo, get_dataset, search_split
from nas.data import imagefolder as imagefolder_module
from nas.data.imagefolder import LazyImageDataset
from nas.data.transforms import Cutout, RandomCrop
from nas.errors import NasError

REAL_CIFAR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10-jpeg"

# Solid colours make labels checkable after decoding: class i is COLOURS[i].
COLOURS = {"cat": (220, 30, 30), "dog": (30, 30, 220), "fox": (30, 220, 30)}


def write_tree(base: Path, classes=("cat", "dog"), per_class=3, size=(32, 32), fmt="JPEG") -> Path:
    """``base/<class>/<i>.<ext>`` solid-colour images; returns ``base``."""
    for name in classes:
        (base / name).mkdir(parents=True)
        for i in range(per_class):
            ext = "jpg" if fmt == "JPEG" else fmt.lower()
            Image.new("RGB", size, COLOURS[name]).save(base / name / f"{i}.{ext}", fmt)
    return base


def write_zip(zip_path: Path, folder: Path, arc_prefix: str, compression: int = zipfile.ZIP_STORED) -> Path:
    """Zip the files under ``folder`` as ``arc_prefix/<relative path>``; stored, like the real data, by default."""
    with zipfile.ZipFile(zip_path, "w", compression=compression) as z:
        for file in sorted(folder.rglob("*")):
            if file.is_file():
                z.write(file, f"{arc_prefix}/{file.relative_to(folder).as_posix()}")
    return zip_path


def pixels(info: DatasetInfo, split: str = "train") -> tuple[torch.Tensor, list[int]]:
    """All items of a split, un-normalised back to [0, 1], with their labels."""
    data = getattr(info, split)
    xs, ys = zip(*(data[i] for i in range(len(data))), strict=True)
    mean, std = torch.tensor(info.mean).view(1, -1, 1, 1), torch.tensor(info.std).view(1, -1, 1, 1)
    return torch.stack(xs) * std + mean, list(ys)


def assert_names(error: Exception, path: str | Path) -> None:
    """The project's one-line form: ``<path>: <what is wrong>; <what to do>``, the path once."""
    text = str(error)
    assert text.startswith(f"{path}: ") and text.count(str(path)) == 1 and "; " in text, text
    assert "\n" not in text


def assert_colour_labels(info: DatasetInfo, split: str) -> None:
    images, labels = pixels(info, split)
    for image, label in zip(images, labels, strict=True):
        expected = torch.tensor(COLOURS[info.classes[label]], dtype=torch.float32) / 255
        assert torch.allclose(image.mean(dim=(1, 2)), expected, atol=0.05)


# ----------------------------------------------------------------------------- digits


def test_digits_shapes_split_and_normalisation():
    info = get_dataset("digits", augment=False)
    assert (info.num_classes, info.in_channels, info.image_size) == (10, 3, 32)
    assert info.classes == [str(d) for d in range(10)]
    assert len(info.train) + len(info.test) == 1797
    assert abs(len(info.test) / 1797 - 0.2) < 0.01
    x, y = info.train[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and isinstance(y, int)
    assert torch.equal(x[0], x[1]) and torch.equal(x[0], x[2])  # grey replicated to RGB
    images = torch.stack([info.train[i][0] for i in range(len(info.train))])
    assert abs(images.mean().item()) < 1e-3 and abs(images.std().item() - 1) < 1e-2
    assert set(info.test.targets) == set(range(10))  # stratified: every digit is tested


def test_digits_split_is_fixed_and_seeded():
    a, b = get_dataset("digits", augment=False), get_dataset("digits", augment=False)
    assert torch.equal(a.test.images, b.test.images) and a.test.targets == b.test.targets
    other = get_dataset("digits", augment=False, seed=1)
    assert not torch.equal(a.test.images, other.test.images)
    assert len(get_dataset("digits", val_fraction=0.5).test) == pytest.approx(1797 / 2, abs=10)


def test_digits_image_size_and_no_flip():
    info = get_dataset("digits", image_size=16)
    assert info.image_size == 16 and info.train[0][0].shape == (3, 16, 16)
    assert "Flip" not in repr(info.train.transform)


# ------------------------------------------------------------------------ augmentation


def test_augmentation_follows_torch_seed():
    info = get_dataset("digits", cutout=8)

    def first_batch(seed: int) -> torch.Tensor:
        torch.manual_seed(seed)
        loader = DataLoader(info.train, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(seed))
        return next(iter(loader))[0]

    assert torch.equal(first_batch(0), first_batch(0))
    assert not torch.equal(first_batch(0), first_batch(1))
    plain = get_dataset("digits", augment=False)
    torch.manual_seed(0)
    assert not torch.equal(info.train[5][0], plain.train[5][0])  # augmented items differ from plain ones
    assert torch.equal(plain.train[5][0], plain.train[5][0])


def test_crop_and_cutout():
    x = torch.ones(3, 32, 32)
    torch.manual_seed(0)
    crops = [RandomCrop(4)(x) for _ in range(20)]
    assert all(c.shape == x.shape for c in crops)
    assert any((c == 0).any() for c in crops)  # some offsets show the zero padding
    holes = [(Cutout(16)(x) == 0).all(dim=0).sum().item() for _ in range(50)]
    assert max(holes) == 256 and all(0 < h <= 256 for h in holes)  # clipped at the borders
    assert torch.equal(x, torch.ones(3, 32, 32))  # inputs are left untouched


# ------------------------------------------------------------------- CIFAR, JPEG trees


@pytest.fixture
def jpeg_splits(tmp_path: Path) -> Path:
    """``tmp/src/train/<class>/*.jpg`` (3 per class) and ``tmp/src/test/...`` (2 per class)."""
    write_tree(tmp_path / "src" / "train", per_class=3)
    write_tree(tmp_path / "src" / "test", per_class=2)
    return tmp_path / "src"


def check_tiny_cifar(info: DatasetInfo) -> None:
    assert info.classes == ["cat", "dog"] and info.num_classes == 2
    assert (len(info.train), len(info.test)) == (6, 4)
    assert info.train[0][0].shape == (3, 32, 32)
    assert info.train.targets == [0, 0, 0, 1, 1, 1]
    assert_colour_labels(info, "train")
    assert_colour_labels(info, "test")


def test_cifar_from_folder_tree(jpeg_splits: Path):
    check_tiny_cifar(get_dataset("cifar10", jpeg_splits, augment=False))


def test_cifar_from_train_and_test_zips(jpeg_splits: Path, tmp_path: Path):
    root = tmp_path / "zips"
    root.mkdir()
    write_zip(root / "train.zip", jpeg_splits / "train", "train")
    write_zip(root / "test.zip", jpeg_splits / "test", "test")
    check_tiny_cifar(get_dataset("cifar10", root, augment=False))


def test_cifar_from_one_compressed_zip_with_wrapper_folder(jpeg_splits: Path, tmp_path: Path):
    archive = write_zip(tmp_path / "cifar.zip", jpeg_splits, "cifar10-jpeg", zipfile.ZIP_DEFLATED)
    check_tiny_cifar(get_dataset("cifar10", archive, augment=False))


def test_cifar_default_root_from_env(jpeg_splits: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("NAS_DATA_ROOT", str(jpeg_splits.parent))
    (jpeg_splits.parent / "cifar10").symlink_to(jpeg_splits)  # a shared root holding cifar10/
    check_tiny_cifar(get_dataset("cifar10", augment=False))


def test_cifar_resized_and_augmented(jpeg_splits: Path):
    info = get_dataset("cifar10", jpeg_splits, image_size=48, cutout=16)
    assert info.image_size == 48 and info.train[0][0].shape == (3, 48, 48)
    assert [type(t).__name__ for t in info.train.transform.transforms] == [
        "RandomCrop", "RandomHorizontalFlip", "Cutout"
    ]  # fmt: skip
    assert info.test.transform is None


# ------------------------------------------------------------- CIFAR, torchvision pickles


def write_pickles(folder: Path, files: dict[str, dict]) -> None:
    folder.mkdir(parents=True)
    for name, content in files.items():
        with (folder / name).open("wb") as f:
            pickle.dump(content, f, protocol=2)


def fake_batch(n: int, label_key: str, offset: int) -> dict:
    data = (np.arange(n * 3072, dtype=np.int64).reshape(n, 3072) + offset) % 256
    return {"data": data.astype(np.uint8), label_key: [i % 3 for i in range(n)]}


def test_cifar10_torchvision_layout(tmp_path: Path):
    batches = {f"data_batch_{i}": fake_batch(4, "labels", i) for i in range(1, 6)}
    write_pickles(
        tmp_path / "cifar-10-batches-py",
        {**batches, "test_batch": fake_batch(5, "labels", 9), "batches.meta": {"label_names": ["a", "b", "c"]}},
    )
    info = get_dataset("cifar10", tmp_path, augment=False)
    assert (len(info.train), len(info.test), info.classes, info.num_classes) == (20, 5, ["a", "b", "c"], 3)
    images, labels = pixels(info, "test")
    expected = torch.from_numpy(fake_batch(5, "labels", 9)["data"].reshape(5, 3, 32, 32)).float() / 255
    assert torch.allclose(images, expected, atol=1e-5)
    assert labels == [0, 1, 2, 0, 1]
    # The batches folder itself is accepted as the root too.
    assert len(get_dataset("cifar10", tmp_path / "cifar-10-batches-py").train) == 20


def test_cifar100_torchvision_layout(tmp_path: Path):
    write_pickles(
        tmp_path / "cifar-100-python",
        {
            "train": fake_batch(6, "fine_labels", 0),
            "test": fake_batch(3, "fine_labels", 1),
            "meta": {"fine_label_names": ["x", "y", "z"]},
        },
    )
    info = get_dataset("cifar100", tmp_path)
    assert (len(info.train), len(info.test), info.classes) == (6, 3, ["x", "y", "z"])
    assert info.mean[0] == pytest.approx(0.5071)


def test_cifar_incomplete_pickle_folder(tmp_path: Path):
    write_pickles(tmp_path / "cifar-10-batches-py", {"data_batch_1": fake_batch(2, "labels", 0)})
    with pytest.raises(NasError, match=r"incomplete: data_batch_2 is missing; re-download CIFAR-10"):
        get_dataset("cifar10", tmp_path)


# ---------------------------------------------------------------------------- imagefolder


def test_imagefolder_with_val_split(tmp_path: Path):
    write_tree(tmp_path / "train", classes=("cat", "dog", "fox"), per_class=4, size=(40, 24), fmt="PNG")
    write_tree(tmp_path / "val", classes=("cat", "fox"), per_class=1, size=(40, 24), fmt="PNG")
    info = get_dataset("imagefolder", tmp_path, image_size=16, augment=False)
    assert info.classes == ["cat", "dog", "fox"] and info.image_size == 16
    assert (len(info.train), len(info.test)) == (12, 2)
    assert info.test.targets == [0, 2]  # labels follow the training split's class list
    assert info.train[0][0].shape == (3, 16, 16)
    assert_colour_labels(info, "test")
    with pytest.raises(NasError, match="already has train and val splits; drop val_fraction"):
        get_dataset("imagefolder", tmp_path, val_fraction=0.2)


def test_imagefolder_split_is_stratified_and_seeded(tmp_path: Path):
    write_tree(tmp_path / "flowers", classes=("cat", "dog"), per_class=10)
    info = get_dataset("imagefolder", tmp_path / "flowers", val_fraction=0.2, augment=False)
    assert (len(info.train), len(info.test)) == (16, 4)
    assert sorted(info.test.targets) == [0, 0, 1, 1]
    assert_colour_labels(info, "test")
    again = get_dataset("imagefolder", tmp_path / "flowers", val_fraction=0.2, augment=False)
    assert torch.equal(info.test.images, again.test.images)
    default = get_dataset("imagefolder", tmp_path / "flowers")
    assert len(default.test) == 2  # val_fraction defaults to 0.1, one per class


def test_imagefolder_zip_and_lazy_decoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    archive = write_zip(tmp_path / "pets.zip", write_tree(tmp_path / "pets", per_class=5), "pets")
    eager = get_dataset("imagefolder", archive, augment=False)
    monkeypatch.setattr(imagefolder_module, "IN_MEMORY_LIMIT", 0)
    lazy = get_dataset("imagefolder", archive, augment=False)
    assert isinstance(lazy.train, LazyImageDataset) and lazy.classes == eager.classes == ["cat", "dog"]
    assert lazy.mean == pytest.approx(eager.mean) and lazy.std == pytest.approx(eager.std)
    for i in range(len(eager.train)):
        assert torch.allclose(lazy.train[i][0], eager.train[i][0]) and lazy.train[i][1] == eager.train[i][1]
    # A DataLoader worker gets a pickled copy: the zip handle must be reopened, not shared.
    copy = pickle.loads(pickle.dumps(lazy.test))
    assert torch.allclose(copy[0][0], eager.test[0][0])


# --------------------------------------------------------------------------- search split


def test_search_split_disjoint_covering_deterministic():
    data = torch.utils.data.TensorDataset(torch.arange(101))
    a, b = search_split(data, 0.5, seed=3)
    assert (len(a), len(b)) == (50, 51)
    assert sorted(a.indices + b.indices) == list(range(101))
    again = search_split(data, 0.5, seed=3)
    assert a.indices == again[0].indices and b.indices == again[1].indices
    assert search_split(data, 0.5, seed=4)[0].indices != a.indices
    assert len(search_split(data, 0.8)[0]) == 80
    with pytest.raises(NasError, match="between 0 and 1"):
        search_split(data, 1.0)
    with pytest.raises(NasError, match="leaves one part empty"):
        search_split(torch.utils.data.TensorDataset(torch.arange(1)), 0.5)


# --------------------------------------------------------------------------------- errors


def test_unknown_dataset_name():
    with pytest.raises(NasError, match=r"--dataset mnist: unknown data set; choose one of digits, cifar10"):
        get_dataset("mnist")
    assert DATASETS == ("digits", "cifar10", "cifar100", "imagefolder")
    assert get_dataset("Digits").name == "digits"  # names are case-insensitive


def test_missing_root(tmp_path: Path):
    missing = tmp_path / "nowhere"
    with pytest.raises(NasError, match=rf"data root {missing} does not exist; put cifar-10-batches-py/.*--data-root"):
        get_dataset("cifar10", missing)
    with pytest.raises(NasError, match=rf"image folder {missing} does not exist; pass --data-root"):
        get_dataset("imagefolder", missing)


def test_empty_root(tmp_path: Path):
    with pytest.raises(
        NasError, match=rf"CIFAR-10 not found under {tmp_path}: expected {tmp_path}/cifar-10-batches-py .*--data-root"
    ):
        get_dataset("cifar10", tmp_path)
    with pytest.raises(NasError, match=rf"no images under {tmp_path}; expected class folders laid out as"):
        get_dataset("imagefolder", tmp_path)


def test_wrong_layouts(tmp_path: Path):
    loose = tmp_path / "loose"
    loose.mkdir()
    Image.new("RGB", (8, 8)).save(loose / "a.png")
    with pytest.raises(NasError, match=r"has images but no class folders; put each class's images in a folder"):
        get_dataset("imagefolder", loose)

    empty_train = tmp_path / "empty_train"
    (empty_train / "train" / "cat").mkdir(parents=True)
    (empty_train / "test" / "cat").mkdir(parents=True)
    with pytest.raises(NasError, match=rf"no images under {empty_train / 'train'}; expected class folders"):
        get_dataset("cifar10", empty_train)

    only_train = tmp_path / "only_train"
    write_tree(only_train / "train")
    with pytest.raises(NasError, match="has a train split but no test split; add test/<class>/"):
        get_dataset("cifar10", only_train)

    one_class = tmp_path / "one_class"
    write_tree(one_class, classes=("cat",))
    with pytest.raises(NasError, match=r"single class folder \('cat'\)"):
        get_dataset("imagefolder", one_class)

    not_zip = tmp_path / "data.zip"
    not_zip.write_text("not a zip")
    with pytest.raises(NasError, match="is not a readable zip archive"):
        get_dataset("cifar10", not_zip)


def test_corrupt_image_is_named(tmp_path: Path):
    write_tree(tmp_path, per_class=2)
    (tmp_path / "dog" / "1.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(NasError, match=r"dog/1\.jpg: not an image file of a known format .*; remove it or replace"):
        get_dataset("imagefolder", tmp_path)


def test_bad_arguments():
    with pytest.raises(NasError, match="comes with its own test split; drop val_fraction"):
        get_dataset("cifar10", val_fraction=0.1)
    with pytest.raises(NasError, match="val_fraction must be between 0 and 1"):
        get_dataset("digits", val_fraction=1.5)
    with pytest.raises(NasError, match="image_size must be an integer"):
        get_dataset("digits", image_size=0)
    with pytest.raises(NasError, match="cutout must be 0"):
        get_dataset("digits", cutout=-1)


# ---------------------------------------------------------------------------- real data


@pytest.mark.slow
@pytest.mark.skipif(not REAL_CIFAR.is_dir(), reason=f"real CIFAR-10 JPEG zips not present at {REAL_CIFAR}")
def test_real_cifar10_jpeg_zips():
    info = get_dataset("cifar10", REAL_CIFAR, augment=False)
    assert (len(info.train), len(info.test)) == (50_000, 10_000)
    assert info.classes == [
        "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"
    ]  # fmt: skip  (torchvision's CIFAR10 order, so labels agree with the pickled layout)
    assert np.bincount(info.test.targets).tolist() == [1000] * 10
    sample = torch.randperm(len(info.train), generator=torch.Generator().manual_seed(0))[:4000]
    images = torch.stack([info.train[int(i)][0] for i in sample])
    # The published CIFAR-10 statistics fit the decoded JPEGs: normalised data is near N(0, 1).
    assert images.mean(dim=(0, 2, 3)).abs().max() < 0.05
    assert (images.std(dim=(0, 2, 3)) - 1).abs().max() < 0.05


# ------------------------------------------------------------- CIFAR batch files, checked


def _op_int(n: int) -> bytes:
    """A pickle integer opcode (BININT1, BININT2 or BININT)."""
    if 0 <= n < 256:
        return b"K" + bytes([n])
    if 0 <= n < 65536:
        return b"M" + struct.pack("<H", n)
    return b"J" + struct.pack("<i", n)


def _op_str(text: bytes) -> bytes:
    """A Python 2 ``str`` (SHORT_BINSTRING or BINSTRING)."""
    return b"U" + bytes([len(text)]) + text if len(text) < 256 else b"T" + struct.pack("<i", len(text)) + text


def python2_batch(data: np.ndarray, labels: list[int]) -> bytes:
    """A batch file as the original CIFAR-10 release has it: Python 2 cPickle protocol 2 of a dict
    whose images are a numpy 1 array (``numpy.core.multiarray._reconstruct``, state with a byte
    str) and whose keys, batch label and file names are byte strs."""
    n = len(data)
    array = (
        b"cnumpy.core.multiarray\n_reconstruct\n" + b"cnumpy\nndarray\n" + _op_int(0) + b"\x85" + _op_str(b"b") + b"\x87R"
        + b"(" + _op_int(1) + _op_int(n) + _op_int(3072) + b"\x86"
        + b"cnumpy\ndtype\n" + _op_str(b"u1") + _op_int(0) + _op_int(1) + b"\x87R"
        + b"(" + _op_int(3) + _op_str(b"|") + b"NNN" + _op_int(-1) + _op_int(-1) + _op_int(0) + b"tb"
        + b"\x89" + _op_str(data.tobytes()) + b"tb"
    )  # fmt: skip
    items = (
        _op_str(b"batch_label") + _op_str(b"training batch 1 of 5")
        + _op_str(b"labels") + b"](" + b"".join(_op_int(v) for v in labels) + b"e"
        + _op_str(b"data") + array
        + _op_str(b"filenames") + b"](" + b"".join(_op_str(f"img_{i}.png".encode()) for i in range(n)) + b"e"
    )  # fmt: skip
    return b"\x80\x02}(" + items + b"u."


def test_cifar_batches_in_the_original_python2_format(tmp_path: Path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for i, name in enumerate([*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]):
        data = fake_batch(3, "labels", i)["data"]
        (folder / name).write_bytes(python2_batch(data, [0, 1, 2]))
    meta = b"\x80\x02}(" + _op_str(b"label_names") + b"](" + b"".join(_op_str(c) for c in (b"a", b"b", b"c")) + b"eu."
    (folder / "batches.meta").write_bytes(meta)
    info = get_dataset("cifar10", tmp_path, augment=False)
    assert (len(info.train), len(info.test), info.classes) == (15, 3, ["a", "b", "c"])
    images, labels = pixels(info, "test")
    expected = torch.from_numpy(fake_batch(3, "labels", 5)["data"].reshape(3, 3, 32, 32)).float() / 255
    assert torch.allclose(images, expected, atol=1e-5) and labels == [0, 1, 2]


def test_cifar_batches_pickled_at_protocol_5(tmp_path: Path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        (folder / name).write_bytes(pickle.dumps(fake_batch(2, "labels", 1), protocol=5))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": ["a", "b", "c"]}, protocol=5))
    assert len(get_dataset("cifar10", tmp_path).train) == 10


def _cifar_with(tmp_path: Path, name: str, content: bytes) -> Path:
    batches = {f"data_batch_{i}": fake_batch(2, "labels", i) for i in range(1, 6)}
    write_pickles(tmp_path / "cifar-10-batches-py",
                  {**batches, "test_batch": fake_batch(2, "labels", 0), "batches.meta": {"label_names": ["a", "b", "c"]}})
    (tmp_path / "cifar-10-batches-py" / name).write_bytes(content)
    return tmp_path


BAD_BATCHES = {
    "empty file": ("data_batch_1", b"", "not a CIFAR-10 batch file"),
    "cut short": ("data_batch_2", pickle.dumps(fake_batch(2, "labels", 0), protocol=2)[:500], "not a CIFAR-10 batch"),
    "text": ("test_batch", b"these are not the images you are looking for\n", "not a CIFAR-10 batch file"),
    "a list": ("data_batch_3", pickle.dumps([1, 2, 3]), "holds a list, not a dict"),
    "no data": ("data_batch_4", pickle.dumps({"labels": [0, 1]}), "without the 'data' entry"),
    "float images": ("data_batch_5", pickle.dumps({"data": np.zeros((2, 3072)), "labels": [0, 1]}),
                     r"'data' is float64 \(2, 3072\), not uint8"),
    "wrong image size": ("data_batch_1", pickle.dumps({"data": np.zeros((2, 1000), np.uint8), "labels": [0, 1]}),
                         r"not uint8 \(N, 3072\) images"),
    "too few labels": ("data_batch_1", pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "labels": [0]}),
                       "not one integer label per image"),
    "text labels": ("data_batch_1", pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "labels": ["a", "b"]}),
                    "not one integer label per image"),
    "label out of range": ("test_batch", pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "labels": [0, 3]}),
                           r"labels outside 0\.\.2"),
    "meta without names": ("batches.meta", pickle.dumps({"num_vis": 3072}), "lacks the class names 'label_names'"),
    "bytes as rot13": ("data_batch_1", b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00aX\x05\x00\x00\x00rot13\x86R.",
                       "not a CIFAR-10 batch file"),
}


@pytest.mark.parametrize("case", BAD_BATCHES)
def test_damaged_cifar_batches_are_named(case, tmp_path: Path):
    name, content, message = BAD_BATCHES[case]
    root = _cifar_with(tmp_path, name, content)
    with pytest.raises(NasError, match=message) as caught:
        get_dataset("cifar10", root)
    assert_names(caught.value, root / "cifar-10-batches-py" / name)
    assert str(caught.value).endswith("re-download CIFAR-10")


# ------------------------------------------------------------------- image files, checked


def _png(size=(8, 8), colour=(220, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "PNG")
    return buffer.getvalue()


def _jpeg(size=(32, 32)) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (*size, 3), dtype=np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


def _flip(blob: bytes, at: int) -> bytes:
    return blob[:at] + bytes([blob[at] ^ 0xFF]) + blob[at + 1 :]


# name of the damaged file -> (its bytes, what the message says)
DAMAGED_IMAGES = {
    "empty PNG": ("bad.png", b"", r"the file is empty \(0 bytes\)"),
    "PNG cut to 60 bytes": ("bad.png", _png()[:60], "damaged PNG: it is cut short"),  # decoded silently once
    "PNG without IEND": ("bad.png", _png()[:-12], r"damaged PNG: it is cut short \(no IEND chunk\)"),
    "PNG with a damaged chunk": ("bad.png", _flip(_png(), 45), r"damaged PNG: its 'IDAT' chunk is damaged"),
    "JPEG cut in half": ("bad.jpg", _jpeg()[: len(_jpeg()) // 2], "cannot decode the JPEG image"),
    "JPEG without its end": ("bad.jpg", _jpeg()[:-2], "cannot decode the JPEG image"),
    "text named .jpg": ("bad.jpg", b"hello, world\n", "not an image file of a known format"),
    "JPEG signature only": ("bad.jpg", b"\xff\xd8\xff\xe0 not a jpeg", "cannot decode the JPEG image"),
    "BMP cut short": ("bad.bmp", _png()[:0] + b"BM" + b"\x00" * 40, "cannot decode the image"),
}


def _tree_with(base: Path, name: str, blob: bytes) -> Path:
    for cls in ("cat", "dog"):
        (base / cls).mkdir(parents=True)
        for i in range(2):
            (base / cls / f"{i}.png").write_bytes(_png(colour=COLOURS[cls]))
    (base / "dog" / name).write_bytes(blob)
    return base


@pytest.mark.parametrize("container", ["folder", "stored zip", "deflated zip"])
@pytest.mark.parametrize("case", DAMAGED_IMAGES)
def test_damaged_images_are_refused_naming_the_file(case, container, tmp_path: Path):
    name, blob, message = DAMAGED_IMAGES[case]
    tree = _tree_with(tmp_path / "pets", name, blob)
    root, where = tree, str(tree / "dog" / name)
    if container != "folder":
        compression = zipfile.ZIP_STORED if container == "stored zip" else zipfile.ZIP_DEFLATED
        root = write_zip(tmp_path / "pets.zip", tree, "pets", compression)
        where = f"{root}:pets/dog/{name}"
    with pytest.raises(NasError, match=message) as caught:
        get_dataset("imagefolder", root)
    assert_names(caught.value, where)


def test_a_damaged_zip_member_is_named(tmp_path: Path):
    tree = _tree_with(tmp_path / "pets", "2.png", _png())
    archive = write_zip(tmp_path / "pets.zip", tree, "pets", zipfile.ZIP_DEFLATED)
    with zipfile.ZipFile(archive) as z:
        info = z.getinfo("pets/dog/2.png")
    raw = archive.read_bytes()
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    archive.write_bytes(_flip(raw, start + info.compress_size // 2))
    with pytest.raises(NasError, match=rf"{archive}:pets/dog/2\.png: cannot be read from the zip .*re-create the zip"):
        get_dataset("imagefolder", archive)


def test_cifar_image_folders_are_checked_too(jpeg_splits: Path):
    (jpeg_splits / "test" / "dog" / "1.jpg").write_bytes(_jpeg()[:300])
    with pytest.raises(NasError, match=r"test/dog/1\.jpg: cannot decode the JPEG image"):
        get_dataset("cifar10", jpeg_splits)


def test_sixteen_bit_png_and_bmp_decode():
    from nas.data.files import decode_one

    buffer = io.BytesIO()
    Image.fromarray(np.full((4, 6), 40000, dtype=np.uint16)).save(buffer, "PNG")
    deep = decode_one(buffer.getvalue(), "deep.png")
    assert deep.dtype == torch.uint8 and deep.shape == (3, 4, 6) and (deep == 40000 >> 8).all()
    buffer = io.BytesIO()
    Image.new("RGB", (6, 4), (1, 2, 3)).save(buffer, "BMP")
    assert decode_one(buffer.getvalue(), "x.bmp")[:, 0, 0].tolist() == [1, 2, 3]


def test_large_sets_check_headers_up_front_and_fail_in_one_line_in_a_worker(tmp_path, monkeypatch):
    from nas.data import files

    monkeypatch.setattr(imagefolder_module, "IN_MEMORY_LIMIT", 0)  # decoded as read
    root = tmp_path / "pets"
    _tree_with(root / "train", "2.png", _png())
    # The bad file in the val split: the training images sampled for the mean and std leave it out.
    bad = _tree_with(root / "val", "bad.png", _png()[:60]) / "dog" / "bad.png"
    with pytest.raises(NasError, match=r"val/dog/bad\.png: damaged PNG"):  # small: still decoded in full up front
        get_dataset("imagefolder", root)
    monkeypatch.setattr(files, "FULL_CHECK_BYTES", 0)  # large: headers only up front
    for blob, message in ((b"", "the file is empty"), (b"<html>", "not an image file of a known format")):
        bad.write_bytes(blob)
        with pytest.raises(NasError, match=rf"val/dog/bad\.png: {message}"):
            get_dataset("imagefolder", root)
    jpeg = _jpeg()
    bad.unlink()
    bad = bad.with_suffix(".jpg")
    bad.write_bytes(jpeg[: len(jpeg) - 200])  # intact header, pixels cut short
    info = get_dataset("imagefolder", root)
    assert isinstance(info.test, LazyImageDataset)
    with pytest.raises(NasError) as caught:
        list(DataLoader(info.test, batch_size=2, num_workers=1))
    assert str(caught.value).startswith(f"{bad}: cannot decode the JPEG image")
    assert "\n" not in str(caught.value) and "Traceback" not in str(caught.value)


# ------------------------------------------------------------------------ COCO annotations


def write_coco(base: Path, size=(40, 30)) -> tuple[Path, Path, dict]:
    images_dir = base / "images"
    images_dir.mkdir(parents=True)
    images, annotations = [], []
    for k in (1, 2):
        Image.new("RGB", size, (60 * k, 20, 20)).save(images_dir / f"{k}.png")
        images.append({"id": k, "file_name": f"{k}.png", "width": size[0], "height": size[1]})
        annotations.append({"id": k, "image_id": k, "category_id": 1, "bbox": [2, 3, 10, 8], "iscrowd": 0,
                            "segmentation": [[2, 3, 12, 3, 12, 11, 2, 11]]})
    dataset = {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "thing"}]}
    ann = base / "annotations.json"
    ann.write_text(json.dumps(dataset))
    return images_dir, ann, dataset


def _set(path: str, value):
    """A change to a COCO dataset: ``path`` like ``annotations.0.bbox``; value ``...`` deletes."""

    def change(dataset: dict) -> None:
        *parents, last = path.split(".")
        node = dataset
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        key = int(last) if last.isdigit() else last
        if value is ...:
            del node[key]
        else:
            node[key] = value

    return change


BAD_COCO = {
    "segmentation a string": (_set("annotations.0.segmentation", "abc"), "annotation id 1 has a segmentation that is 'abc'"),
    "segmentation a number": (_set("annotations.0.segmentation", 5), "has a segmentation that is 5"),
    "polygon of two points": (_set("annotations.0.segmentation", [[1, 2, 3, 4]]), "not a list of polygons"),
    "polygon of odd length": (_set("annotations.0.segmentation", [[1, 2, 3, 4, 5, 6, 7]]), "not a list of polygons"),
    "polygon with text": (_set("annotations.1.segmentation", [[1, 2, "x", 4, 5, 6]]), "annotation id 2 has a segm"),
    "flat polygon": (_set("annotations.0.segmentation", [1, 2, 3, 4, 5, 6]), "not a list of polygons"),
    "RLE of another size": (_set("annotations.0.segmentation", {"size": [10, 10], "counts": [100]}),
                            r"an RLE of size \[10, 10\], not the image's \[height, width\] \[30, 40\]"),
    "RLE not covering": (_set("annotations.0.segmentation", {"size": [30, 40], "counts": [5, 6]}),
                         "do not cover the 30x40 image"),
    "RLE with negative runs": (_set("annotations.0.segmentation", {"size": [30, 40], "counts": [-1, 1201]}),
                               "do not cover"),
    "RLE string garbage": (_set("annotations.0.segmentation", {"size": [30, 40], "counts": "~~~"}), "do not cover"),
    "RLE without counts": (_set("annotations.0.segmentation", {"size": [30, 40]}), "do not cover"),
    "bbox of three": (_set("annotations.0.bbox", [1, 2, 3]), r"has bbox \[1, 2, 3\] \(expected \[x, y, width"),
    "bbox with text": (_set("annotations.0.bbox", [1, 2, "3", 4]), "expected"),
    "bbox not a list": (_set("annotations.0.bbox", "1,2,3,4"), "expected"),
    "bbox NaN": (_set("annotations.0.bbox", [1, 2, float("nan"), 4]), "expected"),
    "bbox negative width": (_set("annotations.0.bbox", [1, 2, -3, 4]), "width and height must be positive"),
    "bbox missing": (_set("annotations.0.bbox", ...), r"has bbox None"),
    "unknown category": (_set("annotations.0.category_id", 7), "has category_id 7, which is not in categories"),
    "category true": (_set("annotations.0.category_id", True), "has category_id True"),
    "unknown image": (_set("annotations.1.image_id", 99), "annotation id 2 has image_id 99, which is not in images"),
    "iscrowd 2": (_set("annotations.0.iscrowd", 2), r"has iscrowd 2 \(expected 0 or 1\)"),
    "annotation a string": (_set("annotations.0", "x"), "annotation 'x' needs a unique integer id"),
    "repeated annotation id": (_set("annotations.1.id", 1), r"annotation id 1 appears twice \(give each annotation"),
    "category without id": (_set("categories.0.id", ...), "category .* needs a unique integer id"),
    "image without file_name": (_set("images.0.file_name", ...), "image id 1 has no file_name"),
    "image without width": (_set("images.0.width", ...), "image id 1 has width None and height 30"),
    "image without height": (_set("images.1.height", ...), "image id 2 has width 40 and height None"),
    "image width text": (_set("images.0.width", "40"), "has width '40'"),
    "image width zero": (_set("images.0.width", 0), "expected positive integers"),
    "image size wrong": (_set("images.0.width", 41), "image id 1 declares 41x30 but 1.png is 40x30"),
    "image file missing": (_set("images.0.file_name", "nope.png"), "has file_name 'nope.png', not found"),
    "no images list": (_set("images", {}), "missing the list 'images'"),
}


@pytest.mark.parametrize("case", BAD_COCO)
def test_malformed_coco_entries_are_named(case, tmp_path: Path):
    from nas.data.tasks import CocoDetection

    images_dir, ann, dataset = write_coco(tmp_path)
    change, message = BAD_COCO[case]
    change(dataset)
    ann.write_text(json.dumps(dataset))
    with pytest.raises(NasError, match=message) as caught:
        CocoDetection(images_dir, ann)
    assert_names(caught.value, ann)


BAD_COCO_FILES = {
    "a JSON list": (b"[1, 2, 3]", "is a JSON object with images, annotations and categories, not a JSON list"),
    "binary": (bytes(range(256)) * 4, "not valid JSON"),
    "not JSON": (b"{images: []", "not valid JSON"),
    "empty": (b"", "not valid JSON"),
    "nested too deeply": (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
}


@pytest.mark.parametrize("case", BAD_COCO_FILES)
def test_coco_files_that_are_not_annotations(case, tmp_path: Path):
    from nas.data.tasks import CocoDetection

    images_dir, ann, _ = write_coco(tmp_path)
    content, message = BAD_COCO_FILES[case]
    ann.write_bytes(content)
    with pytest.raises(NasError, match=message) as caught:
        CocoDetection(images_dir, ann)
    assert_names(caught.value, ann)


@pytest.mark.parametrize("blob, message", [
    (b"", "the file is empty"),
    (_png((40, 30))[:60], "damaged PNG: it is cut short"),
    (b"GIF89a" + b"\x00" * 20, "cannot decode the image"),
])  # fmt: skip
def test_coco_image_files_are_decoded_before_training(blob, message, tmp_path: Path):
    from nas.data.tasks import CocoDetection

    images_dir, ann, _ = write_coco(tmp_path)
    (images_dir / "2.png").write_bytes(blob)
    with pytest.raises(NasError, match=rf"^{images_dir / '2.png'}: {message}"):
        CocoDetection(images_dir, ann)


def test_coco_rle_segmentations(tmp_path: Path):
    from pycocotools import mask as coco_mask

    from nas.data.tasks import CocoDetection

    images_dir, ann, dataset = write_coco(tmp_path)
    truth = np.zeros((30, 40), dtype=np.uint8)
    truth[5:9, 10:30] = 1
    compressed = coco_mask.encode(np.asfortranarray(truth))
    dataset["annotations"][0]["segmentation"] = {"size": [30, 40], "counts": compressed["counts"].decode()}
    flat = truth.flatten(order="F")  # uncompressed RLE: run lengths down the columns, starting with zeros
    runs = np.diff(np.r_[0, np.flatnonzero(np.diff(flat)) + 1, flat.size]).tolist()
    dataset["annotations"][1]["segmentation"] = {"size": [30, 40], "counts": runs}
    ann.write_text(json.dumps(dataset))
    data = CocoDetection(images_dir, ann)
    for index in (0, 1):
        assert np.array_equal(data[index][1]["masks"][0].numpy(), truth)


def test_a_large_coco_set_checks_headers_and_fails_in_one_line_when_read(tmp_path, monkeypatch):
    from nas.data import files
    from nas.data.tasks import CocoDetection, collate_detection

    monkeypatch.setattr(files, "FULL_CHECK_BYTES", 0)
    images_dir, ann, _ = write_coco(tmp_path)
    png = (images_dir / "2.png").read_bytes()
    (images_dir / "2.png").write_bytes(png[:50])  # the header is whole, the pixels are not
    data = CocoDetection(images_dir, ann)
    with pytest.raises(NasError) as caught:
        list(DataLoader(data, batch_size=2, num_workers=1, collate_fn=collate_detection))
    assert str(caught.value).startswith(f"{images_dir / '2.png'}: damaged PNG") and "\n" not in str(caught.value)


# --------------------------------------------------------------------------------- VOC masks


def write_voc(base: Path, size=(16, 12)) -> tuple[Path, Path]:
    images_dir, masks_dir = base / "JPEGImages", base / "SegmentationClass"
    images_dir.mkdir(parents=True)
    masks_dir.mkdir()
    values = np.zeros(size[::-1], dtype=np.uint8)
    values[2:6, 3:9] = 2
    values[0] = 255  # ignored, whatever num_classes is
    for stem in ("a", "b"):
        Image.new("RGB", size, (200, 100, 50)).save(images_dir / f"{stem}.jpg")
        Image.fromarray(values, mode="L").save(masks_dir / f"{stem}.png")
    return images_dir, masks_dir


def _mask_bytes(values: np.ndarray, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(values.astype(np.uint8), mode="L").save(buffer, fmt)
    return buffer.getvalue()


BAD_VOC = {
    "mask a JPEG named .png": ("masks", "b.png", _mask_bytes(np.zeros((12, 16)), "JPEG"),
                               "mask is a JPEG file, not a PNG"),
    "mask a BMP named .png": ("masks", "b.png", _mask_bytes(np.zeros((12, 16)), "BMP"), "mask is a BMP file, not a PNG"),
    "mask text": ("masks", "a.png", b"class ids\n", "not an image file of a known format"),
    "mask empty": ("masks", "a.png", b"", "the file is empty"),
    "mask cut short": ("masks", "b.png", _mask_bytes(np.zeros((12, 16)))[:60], "damaged PNG: it is cut short"),
    "mask of another size": ("masks", "b.png", _mask_bytes(np.zeros((12, 15))), "mask is 15x12 but b.jpg is 16x12"),
    "mask value too large": ("masks", "b.png", _mask_bytes(np.full((12, 16), 3)), "has class 3 but num_classes is 3"),
    "image cut short": ("images", "a.jpg", _jpeg((12, 16))[:400], "cannot"),
    "image empty": ("images", "b.jpg", b"", "the file is empty"),
}


@pytest.mark.parametrize("case", BAD_VOC)
def test_malformed_voc_pairs_are_named(case, tmp_path: Path):
    from nas.data.tasks import MaskFolderSegmentation

    images_dir, masks_dir = write_voc(tmp_path)
    folder, name, blob, message = BAD_VOC[case]
    path = (masks_dir if folder == "masks" else images_dir) / name
    path.write_bytes(blob)
    with pytest.raises(NasError, match=message) as caught:
        MaskFolderSegmentation(images_dir, masks_dir, num_classes=3)
    assert_names(caught.value, path)


def test_voc_masks_may_hold_255_and_any_class_without_num_classes(tmp_path: Path):
    from nas.data.tasks import MaskFolderSegmentation

    images_dir, masks_dir = write_voc(tmp_path)
    assert int(MaskFolderSegmentation(images_dir, masks_dir, num_classes=3)[0][1].max()) == 255
    (masks_dir / "b.png").write_bytes(_mask_bytes(np.full((12, 16), 9)))
    assert int(MaskFolderSegmentation(images_dir, masks_dir)[1][1].max()) == 9


# --------------------------------------------------------------------- NAS-Bench-201 tables


NB201_CELLS = ("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|skip_connect~1|nor_conv_3x3~2|",
               "|avg_pool_3x3~0|+|none~0|skip_connect~1|+|nor_conv_1x1~0|none~1|avg_pool_3x3~2|")
NB201_HEADERS = {
    "nb201_12epoch_val_test.csv": "arch,cellstr,cifar10-test,cifar10-val,cifar100-test,cifar100-val,imagenet-test,"
                                  "imagenet-val",
    "nb201_200epoch_test.csv": "CIFAR10TestAccuracy200Epochs,CIFAR100TestAccuracy200Epochs,"
                               "ImageNetTestAccuracy200Epochs,ArchitectureString,UniqueString",
    "nb201_cifar10_params_valid_test.csv": "arch,cellstr,params,score,test_top1,valid_top1,valid_test_top1",
}


def write_nb201(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    rows = {
        "nb201_12epoch_val_test.csv": [f"{i},{c},80.5,81.0,50.0,51.0,25.0,26.0" for i, c in enumerate(NB201_CELLS)],
        "nb201_200epoch_test.csv": [f"94.1,73.2,41.0,{c},u{i}" for i, c in enumerate(NB201_CELLS)],
        "nb201_cifar10_params_valid_test.csv": [f"{i},{c},1.53,1000,94,90,92" for i, c in enumerate(NB201_CELLS)],
    }
    for name, header in NB201_HEADERS.items():
        (root / name).write_text("\n".join([header, *rows[name]]) + "\n")
    return root


def _nb201(root: Path):
    from nas.evaluators import nb201_table

    nb201_table._ROWS.clear()
    nb201_table._TABLES.clear()
    return nb201_table.NB201TableEvaluator(root)


def test_a_tiny_nb201_table_loads(tmp_path: Path):
    table = _nb201(write_nb201(tmp_path / "nb201"))
    record = table.record(NB201_CELLS[0])
    assert (record.val_acc, record.test_acc, record.params) == (pytest.approx(0.81), pytest.approx(0.941), 1_530_000)


def _replace_line(line: int, text: str):
    return lambda content: "\n".join(text if i == line else v for i, v in enumerate(content.split("\n")))


BAD_NB201 = {
    "text accuracy": ("nb201_12epoch_val_test.csv", _replace_line(1, f"0,{NB201_CELLS[0]},80,abc,50,51,25,26"),
                      "line 2, column cifar10-val holds 'abc', not a number from 0 to 100"),
    "NaN accuracy": ("nb201_200epoch_test.csv", _replace_line(2, f"nan,73,41,{NB201_CELLS[1]},u1"),
                     "line 3, column CIFAR10TestAccuracy200Epochs holds 'nan'"),
    "accuracy above 100": ("nb201_12epoch_val_test.csv", _replace_line(2, f"1,{NB201_CELLS[1]},80,181,50,51,25,26"),
                           "holds '181', not a number from 0 to 100"),
    "text params": ("nb201_cifar10_params_valid_test.csv", _replace_line(1, f"0,{NB201_CELLS[0]},many,1,9,9,9"),
                    "line 2, column params holds 'many'"),
    "missing column": ("nb201_12epoch_val_test.csv", lambda c: c.replace("cifar10-val", "cifar10-valid", 1),
                       "lacks the columns cifar10-val"),
    "short row": ("nb201_200epoch_test.csv", _replace_line(1, "94.1,73.2"), "line 2 has fewer fields than the header"),
    "long row": ("nb201_cifar10_params_valid_test.csv", _replace_line(2, f"1,{NB201_CELLS[1]},1,2,3,4,5,6,7"),
                 "line 3 has more fields than the header"),
    "header only": ("nb201_12epoch_val_test.csv", lambda c: c.split("\n")[0], "the table is empty"),
    "empty": ("nb201_200epoch_test.csv", lambda c: "", "the table is empty"),
    "binary": ("nb201_cifar10_params_valid_test.csv", None, "not a CSV text file"),
}


@pytest.mark.parametrize("case", BAD_NB201)
def test_malformed_nb201_tables_are_named(case, tmp_path: Path):
    root = write_nb201(tmp_path / "nb201")
    name, change, message = BAD_NB201[case]
    path = root / name
    if change is None:
        path.write_bytes(bytes(range(256)) * 8)
    else:
        path.write_text(change(path.read_text()))
    with pytest.raises(NasError, match=message) as caught:
        _nb201(root)
    assert_names(caught.value, path)


# ------------------------------------------------------------ the commands, before any run


def _bad_imagefolder(tmp: Path) -> tuple[list[str], Path]:
    root = _tree_with(tmp / "pets", "bad.png", _png()[:60])
    return ["train", "--dataset", "imagefolder", "--data-root", str(root), "--genotype", "DARTS_V2"], \
        root / "dog" / "bad.png"


def _bad_cifar(tmp: Path) -> tuple[list[str], Path]:
    root = _cifar_with(tmp / "data", "data_batch_2", pickle.dumps(fake_batch(2, "labels", 0), protocol=2)[:300])
    return ["search", "--strategy", "darts", "--dataset", "cifar10", "--data-root", str(root)], \
        root / "cifar-10-batches-py" / "data_batch_2"


def _bad_coco(tmp: Path) -> tuple[list[str], Path]:
    images_dir, ann, dataset = write_coco(tmp / "coco")
    dataset["annotations"][1]["segmentation"] = {"counts": "abc"}
    ann.write_text(json.dumps(dataset))
    return ["detect", "--genotype", "DARTS_V2", "--dataset", "coco", "--data-root", str(images_dir), "--ann", str(ann)], ann


def _bad_voc(tmp: Path) -> tuple[list[str], Path]:
    images_dir, masks_dir = write_voc(tmp / "voc")
    (masks_dir / "b.png").write_bytes(_mask_bytes(np.zeros((12, 16)), "JPEG"))
    return ["segment", "--genotype", "DARTS_V2", "--dataset", "voc", "--images", str(images_dir), "--masks",
            str(masks_dir)], masks_dir / "b.png"


def _bad_nb201(tmp: Path) -> tuple[list[str], Path]:
    root = write_nb201(tmp / "nb201")
    path = root / "nb201_200epoch_test.csv"
    path.write_text(path.read_text().replace("94.1", "high", 1))
    return ["search", "--strategy", "random", "--evaluator", "nb201", "--nb201-root", str(root), "--trials", "1"], path


@pytest.mark.parametrize("make", [_bad_imagefolder, _bad_cifar, _bad_coco, _bad_voc, _bad_nb201],
                         ids=["imagefolder", "cifar", "coco", "voc", "nb201"])
def test_commands_refuse_bad_data_in_one_line_before_creating_the_run(make, tmp_path, capsys):
    from nas.cli import main

    args, named = make(tmp_path)
    if "nb201" in str(named):
        from nas.evaluators import nb201_table

        nb201_table._ROWS.clear()
        nb201_table._TABLES.clear()
    out = tmp_path / "run"
    capsys.readouterr()
    code = main([*args, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"nas {args[0]}: error: {named}: "), err
    assert not out.exists()
