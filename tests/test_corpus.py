"""A corpus of malformed inputs through every ``nas`` command.

Every case is a user mistake: a bad option value, a damaged or hostile file (genotype, space,
image, zip, CIFAR batch, COCO / VOC annotation, NAS-Bench-201 table, checkpoint, run folder). Each
must end in exit code 2 and one line ``nas <command>: error: ...`` that names the input, with no
traceback, nothing written (a fresh working folder holding earlier results stays byte-identical,
no new file or folder appears in it) and nothing executed (pickle and YAML payloads would write
a marker file).

The cases run in this process (``nas.cli.main``), so torch is imported once; the bad files and
three real, tiny run folders (a training, a DARTS search, a table-scored black-box search) are
made once per module.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import itertools
import json
import os
import pickle
import shlex
import shutil
import traceback
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nas.cli import main

MARKER = "PAYLOAD-RAN"  # written by every planted payload that gets executed


class Payload:
    """Unpickling this creates the file ``marker``: what a hostile data file would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


# ------------------------------------------------------------------------------ bad files


def _png(size: int = 32, seed: int = 0, mode: str = "RGB") -> bytes:
    rng = np.random.default_rng(seed)
    shape = (size, size, 3) if mode == "RGB" else (size, size)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8), mode).save(buffer, format="PNG")
    return buffer.getvalue()


def _jpeg(size: int = 32, seed: int = 0, mode: str = "RGB") -> bytes:
    rng = np.random.default_rng(seed)
    shape = (size, size, 3) if mode == "RGB" else (size, size)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8), mode).save(buffer, format="JPEG")
    return buffer.getvalue()


def _write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    path.write_bytes(data)
    return path


def _json(path: Path, obj) -> Path:
    return _write(path, json.dumps(obj))


NORMAL = {"nodes": [[["sep_conv_3x3", 0], ["sep_conv_3x3", 1]]] * 4, "concat": [2, 3, 4, 5]}


def _darts_genotype(first_edge=("sep_conv_3x3", 0), **changes) -> dict:
    nodes = [[list(first_edge), ["sep_conv_3x3", 1]]] + NORMAL["nodes"][1:]
    return {"space": "darts", "cells": {"normal": {"nodes": nodes, "concat": [2, 3, 4, 5]}, "reduction": NORMAL},
            **changes}


def _genotype_files(g: Path, marker: Path) -> None:
    _write(g / "bin.json", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe")
    _write(g / "empty.json", b"")
    _write(g / "deep.json", "[" * 5_000 + "]" * 5_000)
    _json(g / "list.json", [1, 2])
    _json(g / "number.json", 3)
    _json(g / "string.json", "DARTS_V2")
    _json(g / "nospace.json", {"cells": {"normal": NORMAL}})
    _json(g / "frac.json", _darts_genotype(("sep_conv_3x3", 1.5)))
    _json(g / "bool.json", _darts_genotype(("sep_conv_3x3", True)))
    _json(g / "negative.json", _darts_genotype(("sep_conv_3x3", -1)))
    _json(g / "range.json", _darts_genotype(("sep_conv_3x3", 7)))
    _json(g / "strsrc.json", _darts_genotype(("sep_conv_3x3", "1")))
    _json(g / "unknownop.json", _darts_genotype(("sep_conv3x3", 0)))
    _json(g / "opnumber.json", _darts_genotype((3, 0)))
    _write(g / "huge.json", '{"space": "darts", "pad": "' + "x" * (3 * 1024 * 1024) + '"}')
    _write(g / "notjson.json", "{not json")
    _write(g / "latin1.json", '{"space": "caf\xe9"}'.encode("latin-1"))
    _write(g / "bigint.json", '{"space": "darts", "cells": ' + "9" * 5000 + "}")
    _json(g / "cellslist.json", {"space": "darts", "cells": [NORMAL, NORMAL]})
    _json(g / "edge3.json", _darts_genotype(("sep_conv_3x3", 0, 1)))
    _json(g / "concatstr.json", {"space": "darts", "cells": {"normal": {**NORMAL, "concat": "2345"},
                                                              "reduction": NORMAL}})
    _json(g / "typo.json", {"space": "darts", "cell": {"normal": NORMAL, "reduction": NORMAL}})
    _json(g / "onecell.json", {"space": "darts", "cells": {"normal": NORMAL}})
    _json(g / "concatdup.json", {"space": "darts", "cells": {"normal": {**NORMAL, "concat": [2, 2, 3]},
                                                              "reduction": NORMAL}})
    _json(g / "sdef.json", {**_darts_genotype(), "space": "tiny", "space_definition": {
        "name": "tiny", "kind": "cell", "ops": ["sep_conv_3x3"], "cell": {"types": 3}}})
    _json(g / "mobileblock.json", {"space": "mobile", "stages": [["inverted_residual_k4_e6"]] * 6})
    _json(g / "nb201range.json", {"space": "nb201", "cells": {"normal": {
        "nodes": [[["none", 0]], [["none", 0], ["none", 5]], [["none", 0], ["none", 1], ["none", 2]]],
        "concat": [3]}}})
    (g / "emptydir").mkdir()


SPACE_OK = "name: x\nkind: cell\nops: [sep_conv_3x3, skip_connect]\n"


def _space_files(s: Path, marker: Path) -> None:
    _write(s / "types3.yaml", SPACE_OK + "cell: {types: 3}\n")
    _write(s / "icstr.yaml", SPACE_OK + "cell: {}\nnetwork: {init_channels: '16'}\n")
    _write(s / "negative.yaml", SPACE_OK + "cell: {nodes: -2}\n")
    _write(s / "zero.yaml", SPACE_OK + "cell: {}\nnetwork: {init_channels: 0}\n")
    _write(s / "boolnodes.yaml", SPACE_OK + "cell: {nodes: true}\n")
    _write(s / "floatinputs.yaml", SPACE_OK + "cell: {inputs: 1.5}\n")
    _write(s / "toplist.yaml", "- name\n- kind\n")
    _write(s / "celllist.yaml", SPACE_OK + "cell: [inputs, 2]\n")
    _write(s / "unknownkey.yaml", SPACE_OK + "cell: {node: 4}\n")
    _write(s / "syntax.yaml", "name: [unclosed\nkind: cell\n")
    _write(s / "tab.yaml", "name: x\n\tkind: cell\n")
    _write(s / "pytag.yaml", f"!!python/object/apply:builtins.open [{json.dumps(str(marker))}, w]\n")
    _write(s / "pytagops.yaml", f"name: x\nkind: cell\nops: !!python/object/apply:builtins.open "
                                f"[{json.dumps(str(marker))}, w]\n")
    _write(s / "bin.yaml", b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe")
    _write(s / "deep.yaml", "a: " + "[" * 5_000 + "]" * 5_000 + "\n")
    _write(s / "huge.yaml", "# " + "x" * (3 * 1024 * 1024) + "\n")
    _write(s / "unknownop.yaml", "name: x\nkind: cell\nops: [conv3x3]\ncell: {}\n")
    _write(s / "kind.yaml", "name: x\nkind: [cell]\nops: [conv_3x3]\ncell: {}\n")
    _write(s / "empty.yaml", "")
    _write(s / "netlist.yaml", SPACE_OK + "cell: {}\nnetwork: [init_channels, 16]\n")
    _write(s / "namepath.yaml", "name: ../../escape\nkind: cell\nops: [conv_3x3]\ncell: {}\n")
    _write(s / "latin1.yaml", "name: caf\xe9\nkind: cell\n".encode("latin-1"))
    _write(s / "stridebool.yaml", "name: c\nkind: chain\nblocks: {kernel: [3], expansion: [6]}\n"
                                  "stages: [{channels: 8, stride: true}]\n")
    _write(s / "ops_str.yaml", "name: x\nkind: cell\nops: sep_conv_3x3\ncell: {}\n")
    _write(s / "netneg.yaml", SPACE_OK + "cell: {}\nnetwork: {layers: -8}\n")
    _write(s / "date.yaml", "name: 2024-13-45\n")
    # a chain space (mobile-like) for DARTS, which searches cell spaces only
    _write(s / "chain.yaml", "name: c\nkind: chain\nblocks: {kernel: [3], expansion: [6]}\nstages: [{channels: 8}]\n")


def _image_folders(d: Path, marker: Path) -> None:
    def classes(root: Path) -> None:
        for c, cls in enumerate(("a", "b")):
            for i in range(6):  # after the held-out share, still more than one batch of 8
                _write(root / cls / f"{i}.png", _png(16, seed=10 * c + i))

    # 60 bytes of a 77-byte PNG: the image data is there, its checksum and end chunk are not
    solid = io.BytesIO()
    Image.new("RGB", (8, 8), (90, 120, 200)).save(solid, format="PNG")
    truncated = solid.getvalue()[:60]
    classes(d / "imgs_trunc")
    _write(d / "imgs_trunc" / "b" / "bad.png", truncated)
    classes(d / "imgs_cut")
    _write(d / "imgs_cut" / "a" / "cut.png", _png(32, seed=99)[:60])  # cut inside the image data
    classes(d / "imgs_zero")
    _write(d / "imgs_zero" / "b" / "zero.jpg", b"")
    classes(d / "imgs_garbage")
    _write(d / "imgs_garbage" / "a" / "garbage.jpg", b"\xff\xd8\xff\xe0" + os.urandom(200))
    classes(d / "imgs_textpng")
    _write(d / "imgs_textpng" / "a" / "text.png", "this is not an image\n")
    (d / "imgs_empty").mkdir(parents=True)
    for i in range(3):
        _write(d / "imgs_oneclass" / "only" / f"{i}.png", _png(16, seed=i))
    with zipfile.ZipFile(_write(d / "damaged.zip", b""), "w") as z:
        for c, cls in enumerate(("a", "b")):
            for i in range(6):
                z.writestr(f"set/{cls}/{i}.png", _png(16, seed=c * 10 + i))
        z.writestr("set/b/broken.png", truncated)
    _write(d / "notzip.zip", "not a zip archive\n")
    whole = (d / "damaged.zip").read_bytes()
    _write(d / "cutzip.zip", whole[: len(whole) // 2])
    png = _png(16, seed=7)
    for name, blob in (("noiend.png", png[:-12]),  # the end chunk is missing
                       ("flipped.png", png[:45] + bytes([png[45] ^ 0xFF]) + png[46:]),  # a CRC mismatch
                       ("halfjpeg.jpg", _jpeg(32, seed=3)[: len(_jpeg(32, seed=3)) // 2]),
                       ("header.bmp", b"BM" + bytes(40))):
        classes(d / f"imgs_{name.split('.')[0]}")
        _write(d / f"imgs_{name.split('.')[0]}" / "a" / name, blob)
    with zipfile.ZipFile(_write(d / "deflated.zip", b""), "w", zipfile.ZIP_DEFLATED) as z:
        for c, cls in enumerate(("a", "b")):
            for i in range(6):
                z.writestr(f"{cls}/{i}.png", _png(16, seed=c * 10 + i))
    blob = bytearray((d / "deflated.zip").read_bytes())
    info = zipfile.ZipFile(d / "deflated.zip").getinfo("a/2.png")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    blob[start + info.compress_size // 2] ^= 0xFF  # one byte of a member's compressed data
    _write(d / "deflated.zip", bytes(blob))


def _cifar(d: Path, marker: Path) -> None:
    def batch(n: int = 4) -> dict:
        return {"data": np.zeros((n, 3072), dtype=np.uint8), "labels": [i % 10 for i in range(n)]}

    def tree(name: str, **replace: bytes) -> None:
        folder = d / name / "cifar-10-batches-py"
        files = {f"data_batch_{i}": pickle.dumps(batch(), protocol=2) for i in range(1, 6)}
        files["test_batch"] = pickle.dumps(batch(), protocol=2)
        files["batches.meta"] = pickle.dumps({"label_names": [f"c{i}" for i in range(10)]}, protocol=2)
        files.update(replace)
        for file, blob in files.items():
            if blob is not None:
                _write(folder / file, blob)

    good = pickle.dumps(batch(), protocol=2)
    tree("cifar_payload", data_batch_1=pickle.dumps({"data": Payload(marker), "labels": [0]}, protocol=2))
    tree("cifar_payload_meta", **{"batches.meta": pickle.dumps({"label_names": Payload(marker)}, protocol=2)})
    tree("cifar_trunc", data_batch_1=good[: len(good) // 2])
    tree("cifar_list", data_batch_1=pickle.dumps([1, 2, 3], protocol=2))
    tree("cifar_shape", data_batch_1=pickle.dumps({"data": np.zeros((2, 7), dtype=np.uint8), "labels": [0, 1]},
                                                  protocol=2))
    tree("cifar_text", data_batch_1=b"this is not a pickle\n")
    tree("cifar_nolabels", data_batch_1=pickle.dumps({"data": np.zeros((2, 3072), dtype=np.uint8)}, protocol=2))
    tree("cifar_missing", test_batch=None)
    tree("cifar_payload_protocol0", test_batch=pickle.dumps({"data": Payload(marker), "labels": [0]}, protocol=0))
    tree("cifar_float", data_batch_2=pickle.dumps({"data": np.zeros((2, 3072)), "labels": [0, 1]}, protocol=2))
    tree("cifar_labels_short", data_batch_2=pickle.dumps({"data": np.zeros((2, 3072), dtype=np.uint8), "labels": [0]},
                                                         protocol=2))
    tree("cifar_labels_text", data_batch_2=pickle.dumps({"data": np.zeros((2, 3072), dtype=np.uint8),
                                                         "labels": ["cat", "dog"]}, protocol=2))
    tree("cifar_label_range", data_batch_2=pickle.dumps({"data": np.zeros((2, 3072), dtype=np.uint8),
                                                         "labels": [0, 10]}, protocol=2))
    folder = d / "cifar100_payload" / "cifar-100-python"
    for file, blob in (("train", {"data": np.zeros((4, 3072), dtype=np.uint8), "fine_labels": [0, 1, 2, 3]}),
                       ("test", {"data": np.zeros((2, 3072), dtype=np.uint8), "fine_labels": Payload(marker)}),
                       ("meta", {"fine_label_names": [f"c{i}" for i in range(100)]})):
        _write(folder / file, pickle.dumps(blob, protocol=2))


def _coco(c: Path, marker: Path) -> None:
    images = c / "images"
    _write(images / "1.png", _png(32, seed=1))
    _write(images / "2.png", _png(32, seed=2))
    _write(images / "trunc.png", _png(32, seed=3)[:60])

    def ann(name: str, **changes) -> None:
        data = {"images": [{"id": 1, "file_name": "1.png", "width": 32, "height": 32},
                           {"id": 2, "file_name": "2.png", "width": 32, "height": 32}],
                "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 2, 10, 10], "area": 100,
                                 "iscrowd": 0},
                                {"id": 2, "image_id": 2, "category_id": 1, "bbox": [4, 4, 12, 8], "area": 96,
                                 "iscrowd": 0}],
                "categories": [{"id": 1, "name": "box"}]}
        for key, value in changes.items():
            if callable(value):
                value(data)
            else:
                data[key] = value
        _json(c / name, data)

    def first_annotation(**fields):
        return lambda data: data["annotations"][0].update(fields)

    def first_image(**fields):
        return lambda data: data["images"][0].update(fields)

    _write(c / "notjson.json", "{not json")
    _json(c / "list.json", [1, 2])
    ann("noimages.json", images=None)
    ann("bbox3.json", a=first_annotation(bbox=[1, 2, 3]))
    ann("negwidth.json", a=first_annotation(bbox=[1, 2, -3, 4]))
    ann("bboxstr.json", a=first_annotation(bbox=["1", 2, 3, 4]))
    ann("badcat.json", a=first_annotation(category_id=7))
    ann("badimage.json", a=first_annotation(image_id=9))
    ann("nofile.json", a=first_image(file_name="missing.png"))
    ann("badseg.json", a=first_annotation(segmentation=[["a", "b"]]))
    ann("segdict.json", a=first_annotation(segmentation={"counts": 5, "size": "x"}))
    ann("dupid.json", a=lambda data: data["images"].append(dict(data["images"][0])))
    ann("truncimage.json", a=first_image(file_name="trunc.png"))
    ann("sizemismatch.json", a=first_image(width=64, height=48))
    ann("segtext.json", a=first_annotation(segmentation="abc"))
    ann("segodd.json", a=first_annotation(segmentation=[[1, 2, 3, 4, 5, 6, 7]]))
    ann("rlesize.json", a=first_annotation(segmentation={"size": [10, 10], "counts": [100]}))
    ann("cattrue.json", a=first_annotation(category_id=True))
    ann("iscrowd2.json", a=first_annotation(iscrowd=2))
    ann("annstring.json", a=lambda data: data["annotations"].append("an annotation"))
    ann("nowidth.json", a=lambda data: data["images"][0].pop("width"))
    ann("widthtext.json", a=first_image(width="32"))
    ann("imagesdict.json", images={})
    _write(images / "zero.png", b"")
    _write(images / "gif.png", b"GIF89a" + bytes(20))
    ann("zeroimage.json", a=first_image(file_name="zero.png"))
    ann("gifimage.json", a=first_image(file_name="gif.png"))
    _write(c / "binary.json", b"\x89PNG\r\n\x1a\n\xff\xfe\x00")
    _write(c / "deep.json", "[" * 5_000 + "]" * 5_000)


def _voc(v: Path, marker: Path) -> None:
    images = v / "images"
    for stem in ("a", "b"):
        _write(images / f"{stem}.jpg", _jpeg(32, seed=ord(stem)))

    def masks(name: str, a: bytes) -> None:
        _write(v / name / "a.png", a)
        _write(v / name / "b.png", _mask(32))

    masks("masks_rgbjpeg", _jpeg(32, seed=7))  # a JPEG saved under a .png name
    masks("masks_ljpeg", _jpeg(32, seed=7, mode="L"))  # greyscale JPEG: the right mode, but lossy values
    masks("masks_trunc", _mask(32)[:70])
    masks("masks_size", _mask(16))
    masks("masks_class7", _mask(32, value=7))
    _write(v / "masks_missing_b" / "a.png", _mask(32))
    images_damaged = v / "images_damaged"
    _write(images_damaged / "a.jpg", _jpeg(32, seed=1)[:80])
    _write(images_damaged / "b.jpg", _jpeg(32, seed=2))
    _write(v / "masks_ok" / "a.png", _mask(32))
    _write(v / "masks_ok" / "b.png", _mask(32))
    bmp = io.BytesIO()
    Image.new("L", (32, 32)).save(bmp, format="BMP")
    masks("masks_bmp", bmp.getvalue())
    masks("masks_empty", b"")
    masks("masks_text", "not a mask\n")
    _write(v / "images_empty" / "a.jpg", b"")
    _write(v / "images_empty" / "b.jpg", _jpeg(32, seed=2))


def _mask(size: int, value: int = 1) -> bytes:
    array = np.zeros((size, size), dtype=np.uint8)
    array[size // 4: size // 2, size // 4: size // 2] = value
    buffer = io.BytesIO()
    Image.fromarray(array, "L").save(buffer, format="PNG")
    return buffer.getvalue()


NB201_OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
NB201_SHORT = "arch,cellstr,cifar10-test,cifar10-val,cifar100-test,cifar100-val,imagenet-test,imagenet-val\n"
NB201_FINAL = ("CIFAR10TestAccuracy200Epochs,CIFAR100TestAccuracy200Epochs,ImageNetTestAccuracy200Epochs,"
               "ArchitectureString\n")
NB201_PARAMS = "arch,cellstr,params\n"


def _nb201_archs():
    for ops in itertools.product(NB201_OPS, repeat=6):
        yield (f"|{ops[0]}~0|+|{ops[1]}~0|{ops[2]}~1|+|{ops[3]}~0|{ops[4]}~1|{ops[5]}~2|")


def _nb201(n: Path) -> None:
    """A complete (made-up) set of tables, and damaged variants of a small one."""
    archs = list(_nb201_archs())
    rng = np.random.default_rng(0)
    acc = rng.uniform(10, 90, (len(archs), 9)).round(2)
    good = n / "good"
    _write(good / "nb201_12epoch_val_test.csv", NB201_SHORT + "".join(
        f"{i},{a},{','.join(map(str, acc[i, :6]))}\n" for i, a in enumerate(archs)))
    _write(good / "nb201_200epoch_test.csv", NB201_FINAL + "".join(
        f"{acc[i, 6]},{acc[i, 7]},{acc[i, 8]},{a}\n" for i, a in enumerate(archs)))
    _write(good / "nb201_cifar10_params_valid_test.csv", NB201_PARAMS + "".join(
        f"{i},{a},0.1\n" for i, a in enumerate(archs)))

    few = archs[:3]

    def tables(name: str, short=None, final=None, params=None) -> None:
        folder = n / name
        files = {"nb201_12epoch_val_test.csv": NB201_SHORT + "".join(f"{i},{a},1,2,3,4,5,6\n" for i, a in enumerate(few)),
                 "nb201_200epoch_test.csv": NB201_FINAL + "".join(f"7,8,9,{a}\n" for a in few),
                 "nb201_cifar10_params_valid_test.csv": NB201_PARAMS + "".join(f"{i},{a},0.1\n"
                                                                               for i, a in enumerate(few))}
        for file, text in zip(files, (short, final, params)):
            if text is not None:
                files[file] = text
        for file, text in files.items():
            if text is not False:
                _write(folder / file, text)

    tables("text", short=NB201_SHORT + "".join(f"{i},{a},high,2,3,4,5,6\n" for i, a in enumerate(few)))
    tables("textparams", params=NB201_PARAMS + "".join(f"{i},{a},many\n" for i, a in enumerate(few)))
    tables("missingcol", final="ArchitectureString\n" + "".join(f"{a}\n" for a in few))
    tables("missingfile", params=False)
    tables("binary", short=b"\x89PNG\r\n\x1a\n\xff\xfe\x00\x00".decode("latin-1"))
    tables("emptyfile", short="")
    tables("mismatch", final=NB201_FINAL + f"7,8,9,{few[0]}\n")
    tables("shortrow", short=NB201_SHORT + "".join(f"{i},{a},1\n" for i, a in enumerate(few)))
    tables("longrow", short=NB201_SHORT + "".join(f"{i},{a},1,2,3,4,5,6,7,8\n" for i, a in enumerate(few)))
    tables("percent181", final=NB201_FINAL + "".join(f"181,8,9,{a}\n" for a in few))
    tables("nanfinal", final=NB201_FINAL + "".join(f"nan,8,9,{a}\n" for a in few))
    tables("headeronly", short=NB201_SHORT)


def _quiet_main(argv: list[str]) -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        rc = main(argv)
    assert rc == 0, out.getvalue()


TRAIN_TINY = ("--epochs 1 --batch-size 8 --init-channels 4 --layers 3 --image-size 16 --train-subset 16 "
              "--val-subset 8 --max-train-batches 1 --export-formats none --no-progress")
DARTS_TINY = "--strategy darts --epochs 1 --max-steps 1 --init-channels 4 --layers 3 --image-size 16 --batch-size 8"


def _runs(r: Path, nb201_root: Path, marker: Path) -> None:
    """Real run folders of each kind, and damaged copies of them."""
    _quiet_main(["train", "--genotype", "DARTS_V2", *TRAIN_TINY.split(), "--out", str(r / "train")])
    _quiet_main(["search", *DARTS_TINY.split(), "--space", "nb201", "--out", str(r / "darts")])
    _quiet_main(["search", "--strategy", "random", "--evaluator", "nb201", "--space", "nb201", "--trials", "2",
                 "--nb201-root", str(nb201_root), "--out", str(r / "blackbox")])

    def copy(source: str, name: str) -> Path:
        return Path(shutil.copytree(r / source, r / name))

    copy("train", "train_trunc_ckpt")
    copy("train", "train_payload_ckpt")

    config = (r / "train" / "config.json").read_bytes()
    _write(copy("train", "train_trunc_config") / "config.json", config[: len(config) // 2])
    _write(copy("train", "train_list_config") / "config.json", "[1]")
    _write(copy("train", "train_binary_config") / "config.json", b"\x89PNG\r\n\xff\xfe\x00")
    _write(copy("train", "train_nested_config") / "config.json", "[" * 5_000 + "]" * 5_000)
    _json(copy("train", "train_kindless") / "config.json", {"model": {}})
    _json(copy("train", "train_retyped") / "config.json", {**json.loads(config), "kind": "tr@in"})
    _json(copy("train", "train_posing") / "config.json", {**json.loads(config), "kind": "random"})
    (copy("train", "train_no_config") / "config.json").unlink()
    saved = json.loads(config)
    saved["model"]["genotype"]["cells"]["normal"]["nodes"][0][0][1] = 1.5
    _json(copy("train", "train_model_frac") / "config.json", saved)
    saved = json.loads(config)
    del saved["model"]
    _json(copy("train", "train_no_model") / "config.json", saved)
    last = (r / "train" / "checkpoints" / "last.pt").read_bytes()
    for name in ("last.pt", "best.pt"):  # --resume and export read last.pt, --init-from best.pt
        _write(r / "train_trunc_ckpt" / "checkpoints" / name, last[: len(last) // 2])
        torch.save({"format": 1, "model": Payload(marker), "spec": {}},
                   _write(r / "train_payload_ckpt" / "checkpoints" / name, b""))
    _write(copy("train", "train_text_ckpt") / "checkpoints" / "last.pt", "not a checkpoint\n")
    torch.save({"weights": torch.zeros(3)}, copy("train", "train_foreign_ckpt") / "checkpoints" / "last.pt")
    (copy("train", "train_no_best") / "checkpoints" / "best.pt").unlink()
    (copy("train", "train_no_last") / "checkpoints" / "last.pt").unlink()  # a finished run: resuming would retrain

    config = (r / "darts" / "config.json").read_bytes()
    shutil.copy(r / "train" / "checkpoints" / "last.pt", copy("darts", "darts_train_ckpt") / "checkpoints" / "last.pt")
    _write(copy("darts", "darts_trunc_config") / "config.json", config[: len(config) // 2])
    dlast = (r / "darts" / "checkpoints" / "last.pt").read_bytes()
    _write(copy("darts", "darts_trunc_ckpt") / "checkpoints" / "last.pt", dlast[: len(dlast) // 2])
    torch.save({"format": 1, "model": Payload(marker)}, copy("darts", "darts_payload_ckpt") / "checkpoints" / "last.pt")
    (copy("darts", "darts_no_last") / "checkpoints" / "last.pt").unlink()
    saved = json.loads(config)
    saved["space"]["cell"]["types"] = 3
    _json(copy("darts", "darts_bad_space") / "config.json", saved)

    config = (r / "blackbox" / "config.json").read_bytes()
    _write(copy("blackbox", "blackbox_trunc_config") / "config.json", config[: len(config) // 2])
    _write(copy("blackbox", "blackbox_bad_study") / "study.db", "not a database\n")
    saved = json.loads(config)
    saved["evaluator"]["root"] = str(nb201_root.parent / "text")
    _json(copy("blackbox", "blackbox_bad_table") / "config.json", saved)


def _checkpoints(k: Path, train_run: Path, marker: Path) -> None:
    last = (train_run / "checkpoints" / "last.pt").read_bytes()
    torch.save({"format": 1, "model": Payload(marker), "spec": {}}, _write(k / "payload.pt", b""))
    _write(k / "trunc.pt", last[: len(last) // 3])
    _write(k / "text.pt", "not a checkpoint\n")
    _write(k / "empty.pt", b"")
    torch.save({"weights": torch.zeros(3)}, _write(k / "foreign.pt", b""))
    torch.save([1, 2, 3], _write(k / "list.pt", b""))
    with zipfile.ZipFile(_write(k / "zip.pt", b""), "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps(Payload(marker)))


@dataclass(frozen=True)
class Corpus:
    root: Path
    sentinel: Path  # copied into every case's working folder: the earlier results that must survive
    marker: Path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Corpus:
    root = tmp_path_factory.mktemp("corpus")
    cwd = Path.cwd()
    os.chdir(root)  # the real runs write nothing next to the tests
    try:
        return _make_corpus(root)
    finally:
        os.chdir(cwd)


def _make_corpus(root: Path) -> Corpus:
    marker = root / MARKER
    _genotype_files(root / "g", marker)
    _space_files(root / "s", marker)
    _image_folders(root / "d", marker)
    _cifar(root / "d", marker)
    _coco(root / "coco", marker)
    _voc(root / "voc", marker)
    _nb201(root / "nb201")
    _runs(root / "r", root / "nb201" / "good", marker)
    _checkpoints(root / "k", root / "r" / "train", marker)
    sentinel = root / "sentinel"
    shutil.copytree(root / "r" / "train", sentinel / "earlier")
    _write(sentinel / "notes.txt", "results of an earlier experiment\n")
    shutil.copy(root / "r" / "train" / "genotype.png", sentinel / "figure.png")
    _write(sentinel / "full" / "keep.txt", "a file in a non-empty folder\n")
    assert not marker.exists()
    return Corpus(root, sentinel, marker)


def snapshot(root: Path) -> dict[str, str]:
    """Every path below ``root`` with its content hash (``dir`` for folders)."""
    state = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            state[rel] = f"link:{os.readlink(path)}"
        elif path.is_dir():
            state[rel] = "dir"
        else:
            state[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return state


def stat_snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Sizes and modification times below ``root``: cheap enough for every case."""
    return {p.relative_to(root).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


# ------------------------------------------------------------------------------ the cases


@dataclass(frozen=True)
class Case:
    id: str
    argv: tuple[str, ...]  # "{c}" stands for the corpus folder
    name: str  # what the message must name: the option or the file
    marks: tuple[pytest.MarkDecorator, ...] = ()


CASES: list[Case] = []


def case(id: str, command: str | list[str], name: str, *marks: pytest.MarkDecorator, tiny: str = "") -> None:
    argv = shlex.split(command) if isinstance(command, str) else list(command)
    if tiny:
        argv = [argv[0], *shlex.split(tiny), *argv[1:]]  # the case's own options come last and win
    CASES.append(Case(id, tuple(argv), name, marks))


BUILD = "build --genotype DARTS_V2"
TRAIN = "train --genotype DARTS_V2"
SEARCH_TRAIN = ("--strategy random --trials 1 --epochs-per-trial 1 --trial-init-channels 4 --trial-layers 3 "
                "--trial-batch-size 8 --trial-setting train_subset=16 --trial-setting val_subset=8 "
                "--trial-setting image_size=16 --trial-setting max_train_batches=1")
SEARCH_NB201 = "--strategy evolution --evaluator nb201 --space nb201 --trials 2 --nb201-root {c}/nb201/good"
SEARCH_DETECT = ("--strategy random --evaluator detection --trials 1 --epochs-per-trial 1 --trial-init-channels 4 "
                 "--trial-batch-size 4 --trial-setting train_images=4 --trial-setting val_images=2 "
                 "--trial-setting image_size=32 --trial-setting max_train_batches=1")
SEARCH_SEGMENT = SEARCH_DETECT.replace("detection", "segmentation")
TASK_TINY = ("--epochs 1 --batch-size 4 --train-images 4 --val-images 2 --image-size 32 --max-train-batches 1 "
             "--init-channels 4 --export-formats none --no-progress")
DETECT = "detect --genotype DARTS_V2"
SEGMENT = "segment --genotype DARTS_V2"
COCO = "--dataset coco --data-root {c}/coco/images --ann {c}/coco/"
VOC = "--dataset voc --images {c}/voc/images --num-classes 3 --masks {c}/voc/"

# nas ops, nas spaces
case("ops-channels-0", "ops --channels 0", "--channels")
case("ops-channels-negative", "ops --channels -3", "--channels")
case("ops-size-0", "ops --size 0", "--size")
case("ops-channels-text", "ops --channels abc", "--channels")
case("ops-size-float", "ops --size 1.5", "--size")
case("ops-unknown-option", "ops --colour red", "--colour")
case("spaces-extra-argument", "spaces darts", "darts")
case("spaces-unknown-option", "spaces --space x", "--space")

# genotype files (nas build)
for file in ("bin", "empty", "deep", "list", "number", "string", "nospace", "frac", "bool", "negative", "range",
             "strsrc", "unknownop", "opnumber", "huge", "notjson", "latin1", "bigint", "cellslist", "edge3",
             "concatstr", "typo", "onecell", "sdef", "nb201range", "concatdup"):
    case(f"build-genotype-{file}", f"build --genotype {{c}}/g/{file}.json", f"{file}.json")
case("build-genotype-chain-block", "build --genotype {c}/g/mobileblock.json", "mobileblock.json")
case("build-genotype-missing-file", "build --genotype {c}/g/nope.json", "nope.json")
case("build-genotype-folder-without-genotype", "build --genotype {c}/g/emptydir", "emptydir")
# genotype strings
case("build-genotype-unknown-name", "build --genotype DARTS_V3", "DARTS_V3")
case("build-genotype-nb201-fraction", ["build", "--genotype",
                                       "|nor_conv_3x3~0.5|+|none~0|none~1|+|none~0|none~1|none~2|"], "nor_conv_3x3~0.5")
case("build-genotype-nb201-short", ["build", "--genotype", "|conv~0|+|"], "|conv~0|+|")
case("build-genotype-nb201-four-nodes", ["build", "--genotype", "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|+|x~0|"],
     "|none~0|+|")
case("build-genotype-inline-json", ["build", "--genotype", '{"space": "darts", "cells": 3}'], '"cells": 3')
case("build-genotype-inline-fraction", ["build", "--genotype", json.dumps(_darts_genotype(("sep_conv_3x3", 1.5)))],
     "1.5")
case("build-genotype-very-long-name", ["build", "--genotype", "x" * 5000], "xxxxxxxxxxxxxxxxxxxx")
case("build-genotype-nul-byte", ["build", "--genotype", "DARTS\x00V2"], "DARTS")
case("build-genotype-empty-string", ["build", "--genotype", ""], "--genotype")
case("build-genotype-of-another-space", "build --genotype MOBILENETV2 --space darts", "--space")
# space files (nas build)
for file in ("types3", "icstr", "negative", "zero", "boolnodes", "floatinputs", "toplist", "celllist", "unknownkey",
             "syntax", "tab", "pytag", "pytagops", "bin", "deep", "huge", "unknownop", "kind", "empty", "netlist",
             "namepath", "latin1", "ops_str", "netneg", "date"):
    case(f"build-space-{file}", f"{BUILD} --space {{c}}/s/{file}.yaml", f"{file}.yaml")
case("build-space-chain-stride-bool", "build --genotype MOBILENETV2 --space {c}/s/stridebool.yaml", "stridebool.yaml")
case("build-space-missing-file", f"{BUILD} --space {{c}}/s/nope.yaml", "nope.yaml")
case("build-space-unknown-name", f"{BUILD} --space dartz", "dartz")
# nas build options
case("build-init-channels-0", f"{BUILD} --init-channels 0", "--init-channels")
case("build-init-channels-text", f"{BUILD} --init-channels abc", "--init-channels")
case("build-num-classes-0", f"{BUILD} --num-classes 0", "--num-classes")
case("build-layers-2", f"{BUILD} --layers 2", "--layers")
case("build-input-size-0", f"{BUILD} --input-size 0", "--input-size")
case("build-device-tpu", f"{BUILD} --device tpu", "--device")
case("build-plot-missing-folder", f"{BUILD} --plot nowhere/cell.png", "--plot")
case("build-plot-existing-file", f"{BUILD} --plot figure.png", "figure.png")
case("build-plot-unknown-format", f"{BUILD} --plot cell.jpg2", "--plot")

# nas train: options
for flag, value in (("--lr", "inf"), ("--lr", "nan"), ("--lr", "-0.1"), ("--lr", "abc"), ("--epochs", "0"),
                    ("--batch-size", "1"), ("--momentum", "1"), ("--drop-path", "1.5"), ("--val-fraction", "1"),
                    ("--image-size", "0"), ("--num-workers", "-1"), ("--train-subset", "0"), ("--weight-decay", "-1"),
                    ("--grad-clip", "inf"), ("--precision", "fp8"), ("--export-formats", "gif"),
                    ("--device", "tpu"), ("--seed", "-1"), ("--seed", "99999999999"), ("--init-channels", "0"),
                    ("--layers", "0"), ("--epochs", "1.5")):
    case(f"train{flag}-{value}", f"{TRAIN} {flag} {value}", flag,
         tiny=TRAIN_TINY)
case("train-dataset-unknown", f"{TRAIN} --dataset mnist", "--dataset", tiny=TRAIN_TINY)
case("train-out-is-a-file", f"{TRAIN} --out notes.txt", "notes.txt", tiny=TRAIN_TINY)
case("train-out-below-a-file", f"{TRAIN} --out notes.txt/run", "notes.txt", tiny=TRAIN_TINY)
case("train-out-not-empty", f"{TRAIN} --out full", "full", tiny=TRAIN_TINY)
case("train-no-genotype", "train", "--genotype", tiny=TRAIN_TINY)
# nas train: genotypes and spaces
case("train-genotype-frac", "train --genotype {c}/g/frac.json", "frac.json", tiny=TRAIN_TINY)
case("train-genotype-deep", "train --genotype {c}/g/deep.json", "deep.json", tiny=TRAIN_TINY)
case("train-genotype-bin", "train --genotype {c}/g/bin.json", "bin.json", tiny=TRAIN_TINY)
case("train-space-types3", f"{TRAIN} --space {{c}}/s/types3.yaml", "types3.yaml", tiny=TRAIN_TINY)
case("train-space-pytag", f"{TRAIN} --space {{c}}/s/pytag.yaml", "pytag.yaml", tiny=TRAIN_TINY)
# nas train: data
IMAGEFOLDER = f"{TRAIN} --dataset imagefolder --data-root {{c}}/d/"
case("train-images-truncated-png", IMAGEFOLDER + "imgs_trunc", "bad.png", tiny=TRAIN_TINY)
case("train-images-cut-png", IMAGEFOLDER + "imgs_cut", "cut.png", tiny=TRAIN_TINY)
case("train-images-no-iend", IMAGEFOLDER + "imgs_noiend", "noiend.png", tiny=TRAIN_TINY)
case("train-images-bad-crc", IMAGEFOLDER + "imgs_flipped", "flipped.png", tiny=TRAIN_TINY)
case("train-images-half-jpeg", IMAGEFOLDER + "imgs_halfjpeg", "halfjpeg.jpg", tiny=TRAIN_TINY)
case("train-images-bmp-header-only", IMAGEFOLDER + "imgs_header", "header.bmp", tiny=TRAIN_TINY)
case("train-images-deflated-zip-bad-crc", IMAGEFOLDER + "deflated.zip", "2.png", tiny=TRAIN_TINY)
case("train-images-zero-bytes", IMAGEFOLDER + "imgs_zero", "zero.jpg", tiny=TRAIN_TINY)
case("train-images-garbage-jpeg", IMAGEFOLDER + "imgs_garbage", "garbage.jpg", tiny=TRAIN_TINY)
case("train-images-text-as-png", IMAGEFOLDER + "imgs_textpng", "text.png", tiny=TRAIN_TINY)
case("train-images-empty-folder", IMAGEFOLDER + "imgs_empty", "imgs_empty", tiny=TRAIN_TINY)
case("train-images-one-class", IMAGEFOLDER + "imgs_oneclass", "imgs_oneclass", tiny=TRAIN_TINY)
case("train-images-missing-root", IMAGEFOLDER + "nope", "nope", tiny=TRAIN_TINY)
case("train-images-zip-damaged-image", IMAGEFOLDER + "damaged.zip", "broken.png", tiny=TRAIN_TINY)
case("train-images-not-a-zip", IMAGEFOLDER + "notzip.zip", "notzip.zip", tiny=TRAIN_TINY)
case("train-images-cut-zip", IMAGEFOLDER + "cutzip.zip", "cutzip.zip", tiny=TRAIN_TINY)
CIFAR = f"{TRAIN} --dataset cifar10 --data-root {{c}}/d/"
case("train-cifar-payload", CIFAR + "cifar_payload", "data_batch_1", tiny=TRAIN_TINY)
case("train-cifar-payload-meta", CIFAR + "cifar_payload_meta", "batches.meta", tiny=TRAIN_TINY)
case("train-cifar-payload-protocol-0", CIFAR + "cifar_payload_protocol0", "test_batch", tiny=TRAIN_TINY)
case("train-cifar100-payload", f"{TRAIN} --dataset cifar100 --data-root {{c}}/d/cifar100_payload", "test",
     tiny=TRAIN_TINY)
for kind in ("float", "labels_short", "labels_text", "label_range"):
    case(f"train-cifar-{kind}", CIFAR + f"cifar_{kind}", "data_batch_2", tiny=TRAIN_TINY)
case("train-cifar-truncated", CIFAR + "cifar_trunc", "data_batch_1", tiny=TRAIN_TINY)
case("train-cifar-list", CIFAR + "cifar_list", "data_batch_1", tiny=TRAIN_TINY)
case("train-cifar-wrong-shape", CIFAR + "cifar_shape", "data_batch_1", tiny=TRAIN_TINY)
case("train-cifar-text", CIFAR + "cifar_text", "data_batch_1", tiny=TRAIN_TINY)
case("train-cifar-no-labels", CIFAR + "cifar_nolabels", "labels", tiny=TRAIN_TINY)
case("train-cifar-missing-batch", CIFAR + "cifar_missing", "test_batch", tiny=TRAIN_TINY)
# nas train --resume
case("train-resume-truncated-config", "train --resume {c}/r/train_trunc_config", "config.json")
case("train-resume-list-config", "train --resume {c}/r/train_list_config", "config.json")
case("train-resume-binary-config", "train --resume {c}/r/train_binary_config", "config.json")
case("train-resume-no-config", "train --resume {c}/r/train_no_config", "train_no_config")
case("train-resume-model-fraction", "train --resume {c}/r/train_model_frac", "config.json")
case("train-resume-no-model", "train --resume {c}/r/train_no_model", "config.json")
case("train-resume-truncated-checkpoint", "train --resume {c}/r/train_trunc_ckpt", "last.pt")
case("train-resume-payload-checkpoint", "train --resume {c}/r/train_payload_ckpt", "last.pt")
case("train-resume-text-checkpoint", "train --resume {c}/r/train_text_ckpt", "last.pt")
case("train-resume-foreign-checkpoint", "train --resume {c}/r/train_foreign_ckpt", "last.pt")
case("train-resume-search-run", "train --resume {c}/r/darts", "darts")
case("train-resume-a-file", "train --resume notes.txt", "notes.txt")
case("train-resume-missing", "train --resume {c}/r/nope", "nope")
case("train-resume-with-settings", "train --resume {c}/r/train --lr 0.1", "--lr")

# nas search --strategy darts
DARTS = f"search {DARTS_TINY}"
case("darts-space-types3", f"{DARTS} --space {{c}}/s/types3.yaml", "types3.yaml")
case("darts-space-pytag", f"{DARTS} --space {{c}}/s/pytag.yaml", "pytag.yaml")
case("darts-space-chain", f"{DARTS} --space {{c}}/s/chain.yaml", "--strategy")
case("darts-space-unknown", f"{DARTS} --space dartz", "dartz")
case("darts-seed-negative", f"{DARTS} --seed -1", "--seed")
case("darts-out-is-a-file", f"{DARTS} --out notes.txt", "notes.txt")
case("darts-out-not-empty", f"{DARTS} --out full", "full")
case("darts-epochs-0", f"{DARTS} --epochs 0", "--epochs")
case("darts-w-lr-inf", f"{DARTS} --w-lr inf", "--w-lr")
case("darts-order-3", f"{DARTS} --order 3", "--order")
case("darts-partial-channels", f"{DARTS} --partial-channels 3", "partial channels")
case("darts-collapse-remedy", f"{DARTS} --collapse-remedy magic", "--collapse-remedy")
case("darts-train-portion", f"{DARTS} --train-portion 1.5", "--train-portion")
case("darts-device-tpu", f"{DARTS} --device tpu", "--device")
case("darts-strategy-unknown", f"{DARTS} --strategy dartz", "--strategy")
case("darts-dataset-unknown", f"{DARTS} --dataset mnist", "--dataset")
case("darts-images-truncated", f"{DARTS} --dataset imagefolder --data-root {{c}}/d/imgs_trunc", "bad.png")
case("darts-cifar-payload", f"{DARTS} --dataset cifar10 --data-root {{c}}/d/cifar_payload", "data_batch_1")
case("darts-resume-train-checkpoint", "search --resume {c}/r/darts_train_ckpt", "last.pt")
case("darts-resume-truncated-config", "search --resume {c}/r/darts_trunc_config", "config.json")
case("darts-resume-truncated-checkpoint", "search --resume {c}/r/darts_trunc_ckpt", "last.pt")
case("darts-resume-payload-checkpoint", "search --resume {c}/r/darts_payload_ckpt", "last.pt")
case("darts-resume-bad-space", "search --resume {c}/r/darts_bad_space", "config.json")
case("darts-resume-train-run", "search --resume {c}/r/train", "train")
case("darts-resume-missing", "search --resume {c}/r/nope", "nope")

# nas search, black-box strategies with the training evaluator
BLACKBOX = f"search {SEARCH_TRAIN}"
case("blackbox-trials-0", f"{BLACKBOX} --trials 0", "--trials")
case("blackbox-epochs-per-trial-0", f"{BLACKBOX} --epochs-per-trial 0", "--epochs-per-trial")
case("blackbox-epochs-per-trial-text", f"{BLACKBOX} --epochs-per-trial many", "--epochs-per-trial")
case("evolution-population-0", f"{BLACKBOX} --strategy evolution --population 0", "--population")
case("evolution-tournament-too-large", f"{BLACKBOX} --strategy evolution --population 4 --sample-size 9",
     "--sample-size")
case("nsga2-population-1", f"{BLACKBOX} --strategy nsga2 --population 1", "--population")
case("blackbox-enqueue-fraction", f"{BLACKBOX} --enqueue {{c}}/g/frac.json", "frac.json")
case("blackbox-enqueue-deep", f"{BLACKBOX} --enqueue {{c}}/g/deep.json", "deep.json")
case("blackbox-enqueue-binary", f"{BLACKBOX} --strategy evolution --enqueue DARTS_V2,{{c}}/g/bin.json", "bin.json")
case("blackbox-enqueue-unknown", f"{BLACKBOX} --enqueue DARTS_V3", "DARTS_V3")
case("blackbox-enqueue-other-space", f"{BLACKBOX} --enqueue NB201_RESNET", "NB201_RESNET")
case("tpe-storage-bad-url", f"{BLACKBOX} --strategy tpe --storage notaurl", "--storage")
case("blackbox-objectives-unknown", f"{BLACKBOX} --objectives accuracy", "accuracy")
case("blackbox-backend-unknown", f"{BLACKBOX} --backend rayy", "--backend")
case("blackbox-pruner-unknown", f"{BLACKBOX} --pruner median", "--pruner")
case("blackbox-ray-cpus-0", f"{BLACKBOX} --backend ray --cpus-per-trial 0", "--cpus-per-trial")
case("blackbox-trial-setting-text", f"{BLACKBOX} --trial-setting lr=abc", "--trial-setting")
case("blackbox-trial-setting-unknown", f"{BLACKBOX} --trial-setting nosuch=1", "--trial-setting")
case("blackbox-trial-setting-no-value", f"{BLACKBOX} --trial-setting lr", "--trial-setting")
case("blackbox-trial-setting-own-option", f"{BLACKBOX} --trial-setting epochs=3", "--trial-setting")
case("blackbox-trial-setting-inf", f"{BLACKBOX} --trial-setting lr=inf", "--trial-setting")
case("tpe-trial-setting-val-fraction", f"{BLACKBOX} --strategy tpe --trial-setting val_fraction=1",
     "--trial-setting")
case("blackbox-trial-batch-size-1", f"{BLACKBOX} --trial-batch-size 1", "--trial-batch-size")
case("blackbox-trial-init-channels-0", f"{BLACKBOX} --trial-init-channels 0", "--trial-init-channels")
case("blackbox-evaluator-unknown", f"{BLACKBOX} --evaluator table", "--evaluator")
case("blackbox-task-head-with-train", f"{BLACKBOX} --task-head fcos", "--task-head")
case("blackbox-space-icstr", f"{BLACKBOX} --space {{c}}/s/icstr.yaml", "icstr.yaml")
case("blackbox-space-huge", f"{BLACKBOX} --space {{c}}/s/huge.yaml", "huge.yaml")
case("blackbox-images-zero-bytes", f"{BLACKBOX} --dataset imagefolder --data-root {{c}}/d/imgs_zero", "zero.jpg")  # refused by the data layer, but by the trial, after the run folder is made
case("blackbox-seed-too-large", f"{BLACKBOX} --seed 99999999999", "--seed")
case("blackbox-out-not-empty", f"{BLACKBOX} --out full", "full")
# the table evaluator
NB201 = f"search {SEARCH_NB201}"
for table in ("text", "textparams", "shortrow", "longrow", "percent181", "nanfinal"):
    case(f"nb201-table-{table}", f"{NB201} --nb201-root {{c}}/nb201/{table}", ".csv")
for table in ("missingcol", "missingfile", "emptyfile", "mismatch", "binary", "headeronly"):
    case(f"nb201-table-{table}", f"{NB201} --nb201-root {{c}}/nb201/{table}", table)
case("nb201-root-missing", f"{NB201} --nb201-root {{c}}/nb201/nope", "nope")
case("nb201-dataset-unknown", f"{NB201} --nb201-dataset mnist", "--nb201-dataset")
case("nb201-other-space", f"{NB201} --space darts", "--space")
case("nb201-trial-setting", f"{NB201} --trial-setting lr=0.1", "--trial-setting")
case("nb201-enqueue-bad-string", f"{NB201} --enqueue |conv~0|+|", "|conv~0|+|")
case("nb201-enqueue-out-of-range", f"{NB201} --enqueue {{c}}/g/nb201range.json", "nb201range.json")
case("nb201-resume-truncated-config", "search --resume {c}/r/blackbox_trunc_config", "config.json")
case("nb201-resume-bad-study", "search --resume {c}/r/blackbox_bad_study", "study.db")
case("nb201-resume-bad-table", "search --resume {c}/r/blackbox_bad_table", ".csv")
case("nb201-resume-other-strategy", "search --resume {c}/r/blackbox --strategy darts", "--strategy")
# the detection and segmentation evaluators
DETECT_SEARCH = f"search {SEARCH_DETECT}"
SEGMENT_SEARCH = f"search {SEARCH_SEGMENT}"
case("search-detection-bbox", f"{DETECT_SEARCH} {COCO}bbox3.json", "bbox3.json")
case("search-detection-not-json", f"{DETECT_SEARCH} {COCO}notjson.json", "notjson.json")
case("search-detection-truncated-image", f"{DETECT_SEARCH} {COCO}truncimage.json", "trunc.png")
case("search-detection-head-unknown", f"{DETECT_SEARCH} --task-head yolo", "yolo")
case("search-detection-image-size", f"{DETECT_SEARCH} --trial-setting image_size=33", "image_size")
case("search-segmentation-rgb-mask", f"{SEGMENT_SEARCH} {VOC}masks_rgbjpeg", "a.png")
case("search-segmentation-jpeg-mask", f"{SEGMENT_SEARCH} {VOC}masks_ljpeg", "a.png")
case("search-segmentation-classes-1", f"{SEGMENT_SEARCH} {VOC}masks_ok --num-classes 1", "--num-classes")
case("search-segmentation-head-unknown", f"{SEGMENT_SEARCH} --task-head segformer", "segformer")

# nas export
case("export-truncated-config", "export {c}/r/train_trunc_config --out x", "config.json")
case("export-list-config", "export {c}/r/train_list_config --out x", "config.json")
case("export-no-config", "export {c}/r/train_no_config --out x", "train_no_config")
case("export-out-not-empty", "export {c}/r/train --out full", "full")
case("export-out-is-a-file", "export {c}/r/train --out notes.txt", "notes.txt")
case("export-format-unknown", "export earlier --format gif", "gif")
case("export-input-size-0", "export earlier --input-size 0", "--input-size")
case("export-checkpoint-best-missing", "export {c}/r/train_no_best --checkpoint best --out x", "best.pt")
case("export-checkpoint-unknown", "export earlier --checkpoint first", "--checkpoint")
for file in ("payload", "trunc", "text", "empty", "foreign", "list", "zip"):
    case(f"export-checkpoint-{file}", f"export {{c}}/k/{file}.pt --out x", f"{file}.pt")
case("export-run-payload-checkpoint", "export {c}/r/train_payload_ckpt --out x", "last.pt")
case("export-run-truncated-checkpoint", "export {c}/r/train_trunc_ckpt --out x", "last.pt")
case("export-checkpoint-without-out", "export {c}/r/train/checkpoints/last.pt", "--out")
case("export-genotype-frac", "export {c}/g/frac.json --out x", "frac.json")
case("export-genotype-deep", "export {c}/g/deep.json --out x", "deep.json")
case("export-genotype-inline-bool", ["export", json.dumps(_darts_genotype(("sep_conv_3x3", True))), "--out", "x"],
     "True")
case("export-genotype-unknown", "export DARTS_V3 --out x", "DARTS_V3")
case("export-genotype-space-types3", "export DARTS_V2 --space {c}/s/types3.yaml --out x", "types3.yaml")
case("export-num-classes-0", "export DARTS_V2 --num-classes 0 --out x", "--num-classes")
case("export-in-channels-0", "export DARTS_V2 --in-channels 0 --out x", "--in-channels")
case("export-init-channels-0", "export DARTS_V2 --init-channels 0 --out x", "--init-channels")
case("export-seed-negative", "export DARTS_V2 --seed -1 --out x", "--seed")
case("export-not-a-run", "export {c}/d/imgs_empty --out x", "imgs_empty")
case("export-search-run-out-not-empty", "export {c}/r/darts --out full", "full")

# nas detect
case("detect-genotype-frac", "detect --genotype {c}/g/frac.json", "frac.json", tiny=TASK_TINY)
case("detect-genotype-nb201-string", ["detect", "--genotype", "|nor_conv_3x3~1|+|", *TASK_TINY.split()],
     "nor_conv_3x3~1")
case("detect-genotype-inline-json", ["detect", "--genotype", '{"space": "darts", "stages": [[1]]}', *TASK_TINY.split()],
     "stages")
case("detect-space-types3", f"{DETECT} --space {{c}}/s/types3.yaml", "types3.yaml", tiny=TASK_TINY)
case("detect-detector-unknown", f"{DETECT} --detector yolo", "yolo", tiny=TASK_TINY)
case("detect-backbone-unknown", "detect --backbone resnet999", "resnet999", tiny=TASK_TINY)
case("detect-image-size-33", f"{DETECT} --image-size 33", "image_size", tiny=TASK_TINY)
case("detect-fpn-channels-48", f"{DETECT} --detector fcos --fpn-channels 48", "fpn_channels", tiny=TASK_TINY)
case("detect-epochs-0", f"{DETECT} --epochs 0", "--epochs", tiny=TASK_TINY)
case("detect-lr-inf", f"{DETECT} --lr inf", "--lr", tiny=TASK_TINY)
case("detect-dataset-voc", f"{DETECT} --dataset voc", "voc", tiny=TASK_TINY)
case("detect-out-not-empty", f"{DETECT} --out full", "full", tiny=TASK_TINY)
for file in ("bbox3", "negwidth", "bboxstr", "badcat", "badimage", "nofile", "dupid", "notjson", "list",
             "noimages", "binary", "annstring", "imagesdict"):
    case(f"detect-coco-{file}", f"{DETECT} {COCO}{file}.json", f"{file}.json", tiny=TASK_TINY)
for file in ("segtext", "segodd", "rlesize", "cattrue", "iscrowd2", "nowidth", "widthtext"):
    case(f"detect-coco-{file}", f"{DETECT} {COCO}{file}.json", f"{file}.json", tiny=TASK_TINY)
case("detect-coco-zero-byte-image", f"{DETECT} {COCO}zeroimage.json", "zero.png", tiny=TASK_TINY)
case("detect-coco-gif-as-png", f"{DETECT} {COCO}gifimage.json", "gif.png", tiny=TASK_TINY)
case("detect-coco-deep", f"{DETECT} {COCO}deep.json", "deep.json", tiny=TASK_TINY)
case("detect-coco-segmentation", f"{DETECT} {COCO}badseg.json", "badseg.json", tiny=TASK_TINY)
case("detect-coco-segmentation-rle", f"{DETECT} {COCO}segdict.json", "segdict.json", tiny=TASK_TINY)
case("detect-coco-truncated-image", f"{DETECT} {COCO}truncimage.json", "trunc.png", tiny=TASK_TINY)
case("detect-coco-size-mismatch", f"{DETECT} {COCO}sizemismatch.json", "sizemismatch.json", tiny=TASK_TINY)
case("detect-coco-missing-ann", f"{DETECT} {COCO}nope.json", "nope.json", tiny=TASK_TINY)
case("detect-coco-missing-images", f"{DETECT} --dataset coco --data-root {{c}}/coco/nope --ann {{c}}/coco/bbox3.json",
     "nope", tiny=TASK_TINY)
case("detect-init-from-search-run", "detect --init-from {c}/r/darts", "darts", tiny=TASK_TINY)
case("detect-init-from-truncated", "detect --init-from {c}/r/train_trunc_ckpt", "best.pt", tiny=TASK_TINY)
case("detect-init-from-payload", "detect --init-from {c}/r/train_payload_ckpt", "best.pt", tiny=TASK_TINY)
case("detect-init-from-text", "detect --init-from {c}/k/text.pt", "text.pt", tiny=TASK_TINY)
case("detect-resume-train-run", "detect --resume {c}/r/train", "train")
case("detect-resume-truncated-config", "detect --resume {c}/r/train_trunc_config", "config.json")

# nas segment
case("segment-rgb-jpeg-mask", f"{SEGMENT} {VOC}masks_rgbjpeg", "a.png", tiny=TASK_TINY)
case("segment-grey-jpeg-mask", f"{SEGMENT} {VOC}masks_ljpeg", "a.png", tiny=TASK_TINY)
case("segment-bmp-mask", f"{SEGMENT} {VOC}masks_bmp", "a.png", tiny=TASK_TINY)
case("segment-empty-mask", f"{SEGMENT} {VOC}masks_empty", "a.png", tiny=TASK_TINY)
case("segment-text-mask", f"{SEGMENT} {VOC}masks_text", "a.png", tiny=TASK_TINY)
case("segment-empty-image", f"{SEGMENT} --dataset voc --images {{c}}/voc/images_empty --masks {{c}}/voc/masks_ok "
     "--num-classes 3", "a.jpg", tiny=TASK_TINY)
case("segment-truncated-mask", f"{SEGMENT} {VOC}masks_trunc", "a.png", tiny=TASK_TINY)
case("segment-mask-size", f"{SEGMENT} {VOC}masks_size", "a.png", tiny=TASK_TINY)
case("segment-mask-class-7", f"{SEGMENT} {VOC}masks_class7", "a.png", tiny=TASK_TINY)
case("segment-mask-missing", f"{SEGMENT} {VOC}masks_missing_b", "b.png", tiny=TASK_TINY)
case("segment-masks-folder-missing", f"{SEGMENT} {VOC}nope", "nope", tiny=TASK_TINY)
case("segment-damaged-image", f"{SEGMENT} --dataset voc --images {{c}}/voc/images_damaged --masks {{c}}/voc/masks_ok "
     "--num-classes 3", "a.jpg", tiny=TASK_TINY)
case("segment-num-classes-1", f"{SEGMENT} {VOC}masks_ok --num-classes 1", "--num-classes", tiny=TASK_TINY)
case("segment-num-classes-0", f"{SEGMENT} {VOC}masks_ok --num-classes 0", "--num-classes", tiny=TASK_TINY)
case("segment-head-unknown", f"{SEGMENT} --head segformer", "segformer", tiny=TASK_TINY)
case("segment-genotype-bin", "segment --genotype {c}/g/bin.json", "bin.json", tiny=TASK_TINY)
case("segment-genotype-unknown-op", "segment --genotype {c}/g/unknownop.json", "unknownop.json", tiny=TASK_TINY)
case("segment-space-deep", f"{SEGMENT} --space {{c}}/s/deep.yaml", "deep.yaml", tiny=TASK_TINY)
case("segment-resume-train-run", "segment --resume {c}/r/train", "train")
case("segment-out-is-a-file", f"{SEGMENT} --out notes.txt", "notes.txt", tiny=TASK_TINY)
case("segment-init-from-blackbox-run", "segment --init-from {c}/r/blackbox", "blackbox", tiny=TASK_TINY)

# more usage mistakes, destinations and run folders
case("ops-size-negative", "ops --size -3", "--size")
case("ops-channels-float-text", "ops --channels 8.0", "--channels")
case("train-epochs-without-value", f"{TRAIN} --epochs", "--epochs", tiny=TRAIN_TINY)
case("train-epochs-exponent", f"{TRAIN} --epochs 1e3", "--epochs", tiny=TRAIN_TINY)
case("train-lr-0", f"{TRAIN} --lr 0", "--lr", tiny=TRAIN_TINY)
case("train-drop-path-minus-inf", f"{TRAIN} --drop-path=-inf", "--drop-path", tiny=TRAIN_TINY)
case("train-out-earlier-run", f"{TRAIN} --out earlier", "earlier", tiny=TRAIN_TINY)
case("train-resume-overwrite", "train --resume {c}/r/train --overwrite", "--overwrite")
case("train-resume-nested-config", "train --resume {c}/r/train_nested_config", "config.json")
case("darts-warmup-longer-than-search", f"{DARTS} --warmup-epochs 3", "warmup")
case("darts-trials", f"{DARTS} --trials 5", "--trials")
case("darts-backend-of-black-box", f"{DARTS} --backend optuna", "--backend")
case("darts-ray-workers-0", f"{DARTS} --backend ray --workers 0", "--workers")
case("darts-use-gpu-on-cpu", f"{DARTS} --backend ray --use-gpu --device cpu", "--use-gpu")
case("black-box-ray-train-workers", f"{BLACKBOX} --workers 2", "--workers")
case("darts-evaluator", f"{DARTS} --evaluator nb201", "--evaluator")
case("darts-trial-setting", f"{DARTS} --trial-setting lr=0.1", "--trial-setting")
case("darts-epochs-per-trial", f"{DARTS} --epochs-per-trial 2", "--epochs-per-trial")
case("darts-resume-with-out", "search --resume {c}/r/darts --out new", "--out")
case("darts-resume-with-evaluator", "search --resume {c}/r/darts --evaluator nb201", "--evaluator")
case("darts-resume-nested-config", "search --resume {c}/r/train_nested_config", "config.json")
case("darts-resume-kindless", "search --resume {c}/r/train_kindless", "config.json")
case("blackbox-order", f"{BLACKBOX} --order 2", "--order")
case("blackbox-reduction-factor-nan", f"{BLACKBOX} --reduction-factor nan", "--reduction-factor")
case("blackbox-trial-layers-0", f"{BLACKBOX} --trial-layers 0", "--trial-layers")
case("blackbox-trial-setting-bool", f"{BLACKBOX} --trial-setting augment=2", "--trial-setting")
case("blackbox-out-below-a-file", f"{BLACKBOX} --out notes.txt/sub/run", "notes.txt")
case("blackbox-storage-missing-folder", f"{BLACKBOX} --storage sqlite:///missing/study.db", "missing/study.db")
case("blackbox-enqueue-missing-file", f"{BLACKBOX} --enqueue missing.json", "missing.json")
case("evolution-two-objectives", f"{BLACKBOX} --strategy evolution --objectives val_acc,params", "objective")
case("nb201-epochs-per-trial", f"{NB201} --epochs-per-trial 2", "--epochs-per-trial")
case("build-input-size-nan", f"{BUILD} --input-size nan", "--input-size")
case("build-device-cuda-x", f"{BUILD} --device cuda:x", "cuda:x")
case("build-plot-folder", f"{BUILD} --plot full", "--plot")
case("build-plot-no-suffix", f"{BUILD} --plot cell", "--plot")
case("build-plot-below-a-file", f"{BUILD} --plot notes.txt/cell.png", "notes.txt")
case("export-layers-negative", "export DARTS_V2 --layers -1 --out x", "--layers")
case("export-input-size-4", "export DARTS_V2 --input-size 4 --out x", "--input-size")
case("export-out-below-a-file", "export DARTS_V2 --out notes.txt/x", "notes.txt")
case("export-nested-config", "export {c}/r/train_nested_config --out x", "config.json")
case("export-kindless-config", "export {c}/r/train_kindless --out x", "config.json")
case("export-retyped-config", "export {c}/r/train_retyped --out x", "tr@in")
case("export-posing-run", "export {c}/r/train_posing --out x", "train_posing")
case("detect-fpn-channels-4", f"{DETECT} --fpn-channels 4", "--fpn-channels", tiny=TASK_TINY)
case("detect-warmup-steps-negative", f"{DETECT} --warmup-steps -1", "--warmup-steps", tiny=TASK_TINY)
case("segment-lr-inf", f"{SEGMENT} --lr inf", "--lr", tiny=TASK_TINY)
case("segment-resume-nested-config", "segment --resume {c}/r/train_nested_config", "config.json")

# empty and blank values (never "the default"), values too large to work, finished runs without last.pt
case("build-space-empty-string", f"{BUILD} --space ''", "--space")
case("train-space-empty-string", f"{TRAIN} --space ''", "--space", tiny=TRAIN_TINY)
case("train-out-blank", f"{TRAIN} --out ' '", "--out", tiny=TRAIN_TINY)
case("tpe-storage-empty", f"{BLACKBOX} --strategy tpe --storage ''", "--storage")
case("blackbox-objectives-empty", f"{BLACKBOX} --objectives ''", "--objectives")
case("blackbox-objectives-comma", f"{BLACKBOX} --objectives ,", "--objectives")
case("blackbox-enqueue-empty", f"{BLACKBOX} --enqueue ''", "--enqueue")
case("blackbox-enqueue-commas", f"{BLACKBOX} --enqueue ,,", "--enqueue")
case("blackbox-space-empty-string", f"{BLACKBOX} --space ''", "--space")
case("detect-detector-empty", f"{DETECT} --detector ''", "--detector", tiny=TASK_TINY)
case("segment-head-empty", f"{SEGMENT} --head ''", "--head", tiny=TASK_TINY)
case("export-source-empty", "export '' --out x", "RUN_OR_GENOTYPE")
case("ops-channels-huge", "ops --channels 99999999999999", "--channels")
case("ops-size-huge", "ops --size 99999999", "--size")
case("build-input-size-huge", f"{BUILD} --input-size 100000", "--input-size")
case("export-input-size-huge", "export DARTS_V2 --input-size 100000 --out x", "--input-size")
case("train-resume-deleted-checkpoint", "train --resume {c}/r/train_no_last", "last.pt")
case("darts-resume-deleted-checkpoint", "search --resume {c}/r/darts_no_last", "last.pt")


@pytest.mark.parametrize("c", [pytest.param(c, id=c.id, marks=c.marks) for c in CASES])
def test_malformed_input(c: Case, corpus: Corpus, tmp_path: Path, monkeypatch, capsys) -> None:
    work = tmp_path / "work"
    shutil.copytree(corpus.sentinel, work)
    monkeypatch.chdir(work)
    monkeypatch.setenv("NAS_RUNS", str(work / "runs"))
    import nas.run

    monkeypatch.setattr(nas.run, "DEFAULT_ROOT", work / "runs")
    before, corpus_before = snapshot(work), stat_snapshot(corpus.root)
    argv = [arg.replace("{c}", str(corpus.root)) for arg in c.argv]
    crash = ""
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse
        rc = exc.code
    except Exception:  # noqa: BLE001 - a traceback is what this test looks for
        rc, crash = None, traceback.format_exc()
    out, err = capsys.readouterr()
    executed = corpus.marker.exists()
    if executed:
        corpus.marker.unlink()  # so that the cases after this one start clean
    assert not executed, "a planted payload was executed"
    assert not crash, crash[-3000:]
    assert "Traceback" not in out + err, err[-3000:]
    lines = err.strip("\n").splitlines()
    assert rc == 2, f"exit code {rc}; stderr: {err[-2000:]}"
    assert len(lines) == 1, f"{len(lines)} lines on stderr:\n{err[-2000:]}"
    assert lines[0].startswith(f"nas {argv[0]}: error: "), lines[0]
    assert c.name in lines[0], f"the message does not name {c.name!r}: {lines[0]}"
    assert snapshot(work) == before, "the working folder changed"
    assert stat_snapshot(corpus.root) == corpus_before, "an input file or folder changed"


def _option_values(option: str) -> set[str]:
    """Every value given to ``option`` by some case (the last one of a case counts, as for argparse)."""
    return {[c.argv[i + 1] for i, a in enumerate(c.argv) if a == option][-1] for c in CASES if option in c.argv}


def test_the_corpus_is_large_and_covers_every_command() -> None:
    commands = {c.argv[0] for c in CASES}
    assert len(CASES) >= 150 and len({c.id for c in CASES}) == len(CASES)
    assert commands == {"ops", "spaces", "build", "train", "search", "export", "detect", "segment"}
    assert {"darts", "random", "tpe", "evolution", "nsga2"} <= _option_values("--strategy")
    assert {"nb201", "detection", "segmentation"} <= _option_values("--evaluator")
