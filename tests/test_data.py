"""The data layer: digits, CIFAR in both layouts, image folders, splits, augmentation, errors."""
from __future__ import annotations

import pickle
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
    with pytest.raises(NasError, match=r"unknown dataset 'mnist'; choose one of digits, cifar10"):
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
    with pytest.raises(NasError, match=r"cannot decode image .*dog/1\.jpg.*remove or replace"):
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
