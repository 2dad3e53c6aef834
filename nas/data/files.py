"""Image files in a folder or a zip archive: split and class-folder layouts, and decoding.

A :class:`FileTree` lists the image files below a folder, or below a folder inside a zip, by
relative POSIX path, so the layout rules (``train/``/``test/`` splits, ``<class>/<image>``
folders) are written once for both. Nothing is ever written next to the data.

Decoding is strict: an empty file, a file of no known image format, a PNG cut short or with
a damaged chunk, and anything a decoder rejects raise :class:`DataFileError` naming the file,
never a half-decoded image. :func:`check_files` does that for a whole list before any
training starts (decoding every file of a small set, the headers of a large one).
"""
from __future__ import annotations

import io
import mmap
import os
import struct
import zipfile
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image
from torchvision.io import ImageReadMode, decode_image, decode_jpeg
from torchvision.transforms.v2 import functional as TF

from nas.errors import NasError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
SPLIT_NAMES = ("train", "val", "test")
CLASS_LAYOUT = "<class>/<image>.jpg"

_JPEG_MAGIC = b"\xff\xd8"
_LOCAL_HEADER = b"PK\x03\x04"
_ENCRYPTED = 0x1  # zip general-purpose flag bit
_DECODE_CHUNK = 4096  # files read and decoded per step: bounds the compressed and decoded copies held at once
# Sets of image files up to this many bytes are decoded once, in full, before training; a larger
# set has every file's header checked up front and each file decoded strictly when it is read.
FULL_CHECK_BYTES = 256 * 1024**2
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TORCHVISION_FORMATS = ("JPEG", "PNG", "GIF", "WEBP")  # decoded by torchvision; the rest by PIL
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError, RuntimeError)


class DataFileError(NasError):
    """A data file that cannot be used: empty, cut short, damaged, of no known image format, or
    holding values outside their range (one line even from a DataLoader worker, as every
    :class:`NasError`)."""


def image_format(head: bytes) -> str | None:
    """The format named by a file's first bytes (PIL's names), or ``None``."""
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(_PNG_SIGNATURE):
        return "PNG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:2] == b"BM":
        return "BMP"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if len(head) > 2 and head[0:1] == b"P" and head[1:2] in b"123456" and head[2:3].isspace():
        return "PPM"
    return None


def _png_problem(blob: bytes) -> str | None:
    """What is wrong with a PNG's chunk structure, or ``None``: every chunk whole, its CRC right,
    up to IEND. Decoders accept a PNG whose last bytes are missing, so this is checked first."""
    data = memoryview(blob)
    pos = len(_PNG_SIGNATURE)
    while True:
        if pos + 12 > len(data):
            return "it is cut short (no IEND chunk)"
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind = bytes(data[pos + 4 : pos + 8]).decode("latin1")
        end = pos + 12 + length
        if end > len(data):
            return f"it is cut short (inside its {kind!r} chunk)"
        if zlib.crc32(data[pos + 4 : end - 4]) != int.from_bytes(data[end - 4 : end], "big"):
            return f"its {kind!r} chunk is damaged (CRC mismatch)"
        if kind == "IEND":
            return None
        pos = end


def check_image(blob: bytes, where: str, *, head_only: bool = False) -> str:
    """The format of an image file's bytes; :class:`DataFileError` for an empty file, an unknown
    format, or (unless ``head_only``: ``blob`` is then the file's first bytes) a damaged PNG."""
    if not blob:
        raise DataFileError(f"{where}: the file is empty (0 bytes); remove it or replace it with the image")
    fmt = image_format(blob[:16])
    if fmt is None:
        raise DataFileError(f"{where}: not an image file of a known format ({', '.join(IMAGE_EXTENSIONS)}); "
                          "remove it or replace it with the image")
    problem = None if head_only or fmt != "PNG" else _png_problem(blob)
    if problem is not None:
        raise DataFileError(f"{where}: damaged PNG: {problem}; remove it or replace it with an intact copy")
    return fmt


def _reason(err: BaseException) -> str:
    """A decoder's complaint on one short line (torchvision prefixes the C++ function and file)."""
    text = " ".join(str(err).split()) or type(err).__name__
    if text.startswith(("decode_", "operator()")):
        text = text.split(", ", 2)[-1]
    return text[:200]


# What PIL raises for damaged input, while identifying or while decoding.
PIL_ERRORS = (OSError, ValueError, SyntaxError, EOFError, IndexError, TypeError, struct.error, zlib.error,
              Image.DecompressionBombError)


def open_image(blob: bytes, where: str) -> Image.Image:
    """A fully decoded PIL image of a file's bytes, strictly (see :func:`check_image`)."""
    check_image(blob, where)
    try:
        image = Image.open(io.BytesIO(blob))
        image.load()
    except PIL_ERRORS as err:
        raise DataFileError(f"{where}: cannot decode the image ({_reason(err)}); remove or replace the file") from None
    return image


class Header(NamedTuple):
    format: str  # PIL's name: "JPEG", "PNG", ...
    size: tuple[int, int]  # width, height
    mode: str  # PIL's mode: "RGB", "L", "P", ...


def image_header(path: Path) -> Header:
    """The format, size and mode of an image file, read from its header without decoding the
    pixels."""
    fmt = check_image(read_file(path, 16), str(path), head_only=True)
    try:
        with Image.open(path) as image:
            return Header(fmt, image.size, image.mode)
    except PIL_ERRORS as err:
        raise DataFileError(f"{path}: cannot read the image header ({_reason(err)}); remove or replace the file") \
            from None


def read_file(path: Path, limit: int | None = None) -> bytes:
    """A data file's bytes (its first ``limit`` bytes if given); one that cannot be read is a
    :class:`DataFileError`."""
    try:
        with path.open("rb") as f:
            return f.read() if limit is None else f.read(limit)
    except OSError as err:
        raise DataFileError(f"{path}: cannot be read ({err.strerror or err}); check that it is a readable file") \
            from None


def _visible(parts: Iterable[str]) -> bool:
    # Hidden files and the "__MACOSX" resource folders that macOS puts in zips are not data.
    return not any(p.startswith(".") or p == "__MACOSX" for p in parts)


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


class _Archive:
    """A zip file, opened once per process: a handle inherited by a forked DataLoader worker
    would share its file position with the parent."""

    def __init__(self, path: Path, handle: zipfile.ZipFile) -> None:
        self.path = path
        self._zip: zipfile.ZipFile | None = handle
        self._pid = os.getpid()

    def _handle(self) -> zipfile.ZipFile:
        if self._zip is None or self._pid != os.getpid():
            self._zip = zipfile.ZipFile(self.path)
            self._pid = os.getpid()
        return self._zip

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_zip": None}

    def read(self, member: str) -> bytes:
        try:
            return self._handle().read(member)
        except _ZIP_ERRORS as err:
            raise DataFileError(f"{self.path}:{member}: cannot be read from the zip ({_reason(err)}); "
                              "re-create the zip") from None

    def size(self, member: str) -> int:
        return self._handle().getinfo(member).file_size

    def read_many(self, members: Sequence[str], limit: int | None = None) -> list[bytes]:
        """The members' bytes (their first ``limit`` bytes if given). Uncompressed members (how
        image zips are usually stored) are sliced straight out of a memory map: ZipFile.read's
        per-member header parsing and checksums took 4 s for CIFAR-10's 60,000 files, this takes
        0.15 s."""
        archive = self._handle()
        out: list[bytes] = []
        with self.path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            for member in members:
                info = archive.getinfo(member)
                if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & _ENCRYPTED:
                    out.append(self.read(member) if limit is None else self._read_head(member, limit))
                    continue
                offset = info.header_offset
                if data[offset : offset + 4] != _LOCAL_HEADER:
                    raise DataFileError(f"{self.path}:{member}: has no local header in the zip; re-create the zip")
                name_len, extra_len = struct.unpack_from("<HH", data, offset + 26)
                start = offset + 30 + name_len + extra_len
                size = info.file_size if limit is None else min(limit, info.file_size)
                blob = data[start : start + size]
                if len(blob) != size:
                    raise DataFileError(f"{self.path}:{member}: is cut short in the zip; re-create the zip")
                out.append(blob)
        return out

    def _read_head(self, member: str, limit: int) -> bytes:
        try:
            with self._handle().open(member) as f:
                return f.read(limit)
        except _ZIP_ERRORS as err:
            raise DataFileError(f"{self.path}:{member}: cannot be read from the zip ({_reason(err)}); "
                                "re-create the zip") from None


class FileTree:
    """The image files under ``prefix`` in a folder, or in a zip archive, at ``path``."""

    def __init__(self, path: Path, names: list[str], *, archive: _Archive | None = None, prefix: str = "") -> None:
        self.path = path
        self.names = names  # relative to prefix, "/"-separated
        self.archive = archive
        self.prefix = prefix  # "" or "folder/.../"

    @classmethod
    def open(cls, path: Path) -> FileTree:
        if path.is_dir():
            names = []
            for folder, subfolders, files in os.walk(path):
                subfolders[:] = [d for d in subfolders if _visible([d])]
                rel = Path(folder).relative_to(path).as_posix()
                names += [f if rel == "." else f"{rel}/{f}" for f in files if _visible([f]) and _is_image(f)]
            return cls(path, names)
        if not path.exists():
            raise NasError(f"data path {path} does not exist; create it or pass --data-root (or set NAS_DATA_ROOT)")
        try:
            handle = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as err:
            raise NasError(f"{path} is not a readable zip archive ({err}); pass a folder or a zip of one") from None
        names = [m for m in handle.namelist() if not m.endswith("/") and _visible(m.split("/")) and _is_image(m)]
        return cls(path, names, archive=_Archive(path, handle))

    def where(self, name: str = "") -> str:
        """Where ``name`` lives, for messages: ``/d/train/cat/1.jpg`` or ``/d/train.zip:train/cat/1.jpg``."""
        if self.archive is not None:
            inner = self.prefix + name
            return f"{self.path}:{inner}" if inner else str(self.path)
        return str(self.path.joinpath(self.prefix, name)) if self.prefix or name else str(self.path)

    def folders(self) -> set[str]:
        """Top-level folders that hold at least one image."""
        return {n.split("/", 1)[0] for n in self.names if "/" in n}

    def sub(self, folder: str) -> FileTree:
        start = folder + "/"
        names = [n[len(start) :] for n in self.names if n.startswith(start)]
        return FileTree(self.path, names, archive=self.archive, prefix=self.prefix + start)

    def unwrap(self, keep: Sequence[str] = ()) -> FileTree:
        """Step into a lone top-level folder that only wraps deeper folders (``flowers/daisy/1.jpg``
        -> ``daisy/1.jpg``), as zips of a folder usually have; stop at folder names in ``keep``."""
        tree = self
        while True:
            tops = {n.split("/", 1)[0] for n in tree.names}
            if len(tops) != 1 or any(n.count("/") < 2 for n in tree.names):
                return tree
            (top,) = tops
            if top in keep:
                return tree
            tree = tree.sub(top)

    def read(self, name: str) -> bytes:
        if self.archive is not None:
            return self.archive.read(self.prefix + name)
        return read_file(self.path.joinpath(self.prefix, name))

    def size(self, name: str) -> int:
        """The file's size in bytes (0 for one that cannot be read: reading it names the problem)."""
        if self.archive is not None:
            return self.archive.size(self.prefix + name)
        try:
            return self.path.joinpath(self.prefix, name).stat().st_size
        except OSError:
            return 0

    def read_many(self, names: Sequence[str], limit: int | None = None) -> list[bytes]:
        """The files' bytes (their first ``limit`` bytes if given)."""
        if self.archive is not None:
            return self.archive.read_many([self.prefix + n for n in names], limit)
        return [read_file(self.path.joinpath(self.prefix, n), limit) for n in names]


def find_splits(root: Path) -> dict[str, FileTree]:
    """The ``train``/``val``/``test`` splits at ``root``: folders ``root/train``, zips
    ``root/train.zip`` (holding ``train/<class>/...`` or ``<class>/...``), or top-level folders
    of a single zip ``root``. Empty dict when there are none."""
    if root.is_file():
        tree = FileTree.open(root).unwrap(keep=SPLIT_NAMES)
        return {s: tree.sub(s) for s in SPLIT_NAMES if s in tree.folders()}
    found: dict[str, FileTree] = {}
    for split in SPLIT_NAMES:
        if (root / split).is_dir():
            found[split] = FileTree.open(root / split)
        elif (root / f"{split}.zip").is_file():
            found[split] = FileTree.open(root / f"{split}.zip").unwrap()
    return found


def scan_classes(tree: FileTree, classes: list[str] | None = None) -> tuple[list[str], list[str], list[int]]:
    """``(classes, names, labels)`` of a ``<class>/<image>`` tree, in sorted order.

    Classes are the sorted folder names (torchvision's ImageFolder order), unless ``classes``
    is given: a test split is labelled with its training split's classes.
    """
    by_class: dict[str, list[str]] = {}
    for name in tree.names:
        folder, sep, _ = name.partition("/")
        if sep:
            by_class.setdefault(folder, []).append(name)
    if not by_class:
        if tree.names:
            raise NasError(
                f"{tree.where()} has images but no class folders; "
                f"put each class's images in a folder of its own: {tree.where(CLASS_LAYOUT)}"
            )
        raise NasError(
            f"no images under {tree.where()}; expected class folders laid out as {tree.where(CLASS_LAYOUT)} "
            f"({', '.join(IMAGE_EXTENSIONS)})"
        )
    found = sorted(by_class)
    if classes is None:
        if len(found) < 2:
            raise NasError(
                f"{tree.where()} has a single class folder ({found[0]!r}); a classifier needs two or more: "
                "point the data root at the folder that holds the class folders"
            )
        classes = found
    else:
        unknown = [c for c in found if c not in classes]
        if unknown:
            raise NasError(
                f"{tree.where()} has class folders the training split lacks ({', '.join(unknown[:5])}); "
                "give every split the same class folders"
            )
    index = {c: i for i, c in enumerate(classes)}
    names: list[str] = []
    labels: list[int] = []
    for c in found:
        members = sorted(by_class[c])
        names += members
        labels += [index[c]] * len(members)
    return classes, names, labels


def fit(image: torch.Tensor, size: int) -> torch.Tensor:
    """Resize the shorter side to ``size`` and centre-crop a square; no-op at the right size."""
    if image.shape[-2:] == (size, size):
        return image
    return TF.center_crop(TF.resize(image, size, antialias=True), [size, size])


def decode_one(blob: bytes, where: str) -> torch.Tensor:
    """One image file as a uint8 RGB ``(3, H, W)`` tensor, strictly (see :func:`check_image`)."""
    fmt = check_image(blob, where)
    if fmt in _TORCHVISION_FORMATS:
        try:
            image = decode_image(torch.frombuffer(bytearray(blob), dtype=torch.uint8), mode=ImageReadMode.RGB)
        except RuntimeError as err:
            # No second try with PIL: it decodes some damaged files without complaint.
            raise DataFileError(f"{where}: cannot decode the {fmt} image ({_reason(err)}); remove or replace the file") \
                from None
        image = image[0] if image.ndim == 4 else image  # animated GIF: first frame
        return image if image.dtype == torch.uint8 else TF.to_dtype(image, torch.uint8, scale=True)  # 16-bit PNG
    with open_image(blob, where) as im:  # BMP, TIFF, PPM: formats torchvision cannot read
        array = np.asarray(im.convert("RGB"))
    return torch.from_numpy(array.copy()).permute(2, 0, 1)


def check_files(tree: FileTree, names: Sequence[str]) -> None:
    """Refuse a set whose files are not all intact images, before anything is trained on it: a
    set of up to :data:`FULL_CHECK_BYTES` is decoded in full (and the result dropped); in a
    larger one every file must be non-empty and start like an image of a known format (a
    million files take seconds), and is decoded strictly when it is read."""
    full = sum(tree.size(n) for n in names) <= FULL_CHECK_BYTES
    for start in range(0, len(names), _DECODE_CHUNK):
        chunk = names[start : start + _DECODE_CHUNK]
        for name, blob in zip(chunk, tree.read_many(chunk, None if full else 16), strict=True):
            if full:
                decode_one(blob, tree.where(name))
            else:
                check_image(blob, tree.where(name), head_only=True)


def decode_all(tree: FileTree, names: Sequence[str], size: int) -> torch.Tensor:
    """Decode ``names`` into one uint8 ``(N, 3, size, size)`` tensor.

    JPEGs go through torchvision's batched libjpeg decoder, the fastest path measured: the
    60,000 CIFAR-10 JPEGs (train.zip + test.zip, 62 MB) load in about 4 s on 2 CPU cores
    (1 s listing the zips, 0.15 s reading, the rest decoding and copying). A thread pool over
    PIL or torchvision decoding was slower here, as both hold the GIL for these tiny images.
    """
    out = torch.empty(len(names), 3, size, size, dtype=torch.uint8)
    for start in range(0, len(names), _DECODE_CHUNK):
        chunk = names[start : start + _DECODE_CHUNK]
        blobs = tree.read_many(chunk)
        jpegs = [i for i, blob in enumerate(blobs) if blob[:2] == _JPEG_MAGIC]
        decoded: dict[int, torch.Tensor] = {}
        if jpegs:
            try:
                batch = decode_jpeg(
                    [torch.frombuffer(bytearray(blobs[i]), dtype=torch.uint8) for i in jpegs], mode=ImageReadMode.RGB
                )
                decoded = dict(zip(jpegs, batch, strict=True))
            except RuntimeError:
                pass  # a corrupt file fails the whole batch; decoding one by one below names it
        images = [
            fit(decoded[i] if i in decoded else decode_one(blob, tree.where(chunk[i])), size)
            for i, blob in enumerate(blobs)
        ]
        torch.stack(images, out=out[start : start + len(chunk)])
    return out
