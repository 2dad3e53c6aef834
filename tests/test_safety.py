"""Nothing executed from data: pickles planted in CIFAR batches and checkpoints, and YAML tags in
space files, would write a marker file if they ran; every command must refuse them in one line
(exit 2) and leave no marker and no run folder behind.

Each payload is first shown to work when loaded without restriction, so a refusal is a real one.
"""
from __future__ import annotations

import contextlib
import os
import pickle
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from nas.cli import main


class OpensMarker:
    """Unpickled, creates ``path`` (``open(path, "w")``)."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


class ShellMarker:
    """Unpickled, runs ``touch path`` through ``os.system``."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(self.path)}",)


PAYLOADS = {"open": OpensMarker, "os.system": ShellMarker}


def nas(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str]:
    """Run ``nas ARGS`` in this process: (exit code, stderr)."""
    capsys.readouterr()
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


def assert_refused(code: int, err: str, command: str, *names: str | Path) -> None:
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith(f"nas {command}: error: "), err
    assert "Traceback" not in err
    for name in names:
        assert str(name) in lines[0], (name, err)


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "PAYLOAD-RAN"


# ----------------------------------------------------------------------------- CIFAR batches


def _batch(n: int = 4) -> dict:
    return {"data": np.zeros((n, 3072), dtype=np.uint8), "labels": [0] * n}


def _cifar_root(base: Path, poisoned: str, content: object, protocol: int = 2) -> Path:
    """A torchvision-layout CIFAR-10 root whose file ``poisoned`` holds ``content`` pickled."""
    folder = base / "cifar" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    files = {f"data_batch_{i}": _batch() for i in range(1, 6)}
    files.update({"test_batch": _batch(), "batches.meta": {"label_names": ["a", "b"]}})
    files[poisoned] = content
    for name, value in files.items():
        (folder / name).write_bytes(pickle.dumps(value, protocol=protocol))
    return folder.parent


# INST (protocol 0) and STACK_GLOBAL (protocol 4) reach the unpickler's find_class by other opcodes.
def _inst_payload(marker: Path) -> bytes:
    return b"(S'touch " + shlex.quote(str(marker)).encode() + b"'\nios\nsystem\n."


CIFAR_CASES = {
    "os.system in a batch's labels": ("data_batch_1", lambda m: {**_batch(), "labels": ShellMarker(m)}, 2),
    "open as the whole batch": ("data_batch_3", OpensMarker, 2),
    "open in the meta file": ("batches.meta", lambda m: {"label_names": [OpensMarker(m)]}, 2),
    "os.system in the test batch, protocol 0": ("test_batch", lambda m: {**_batch(), "data": ShellMarker(m)}, 0),
    "open, protocol 4 (STACK_GLOBAL)": ("data_batch_5", lambda m: [_batch(), OpensMarker(m)], 4),
}


@pytest.mark.parametrize("case", CIFAR_CASES)
def test_a_cifar_batch_carrying_a_payload_is_refused_unrun(case, tmp_path, marker, capsys):
    poisoned, make, protocol = CIFAR_CASES[case]
    payload = make(marker)
    pickle.loads(pickle.dumps(payload, protocol=protocol))  # the payload is live ...
    assert marker.exists()
    marker.unlink()
    root = _cifar_root(tmp_path, poisoned, payload, protocol)
    out = tmp_path / "run"
    code, err = nas(capsys, "train", "--genotype", "DARTS_V2", "--dataset", "cifar10", "--data-root", root,
                    "--epochs", "1", "--no-progress", "--out", out)
    assert not marker.exists()  # ... but not here
    assert_refused(code, err, "train", root / "cifar-10-batches-py" / poisoned, "refused to load", "re-download")
    assert not out.exists()


def test_a_cifar100_file_carrying_a_payload_is_refused_unrun(tmp_path, marker, capsys):
    folder = tmp_path / "data" / "cifar-100-python"
    folder.mkdir(parents=True)
    fine = {"data": np.zeros((2, 3072), dtype=np.uint8), "fine_labels": [0, 1]}
    for name, content in {"train": fine, "test": {**fine, "fine_labels": OpensMarker(marker)},
                          "meta": {"fine_label_names": ["a", "b"]}}.items():
        (folder / name).write_bytes(pickle.dumps(content, protocol=2))
    code, err = nas(capsys, "train", "--genotype", "DARTS_V2", "--dataset", "cifar100", "--data-root", folder.parent,
                    "--epochs", "1", "--no-progress", "--out", tmp_path / "run")
    assert not marker.exists()
    assert_refused(code, err, "train", folder / "test", "io.open", "re-download CIFAR-100")
    assert not (tmp_path / "run").exists()


def test_an_inst_opcode_payload_is_refused(tmp_path, marker, capsys):
    root = _cifar_root(tmp_path, "data_batch_2", None)
    (root / "cifar-10-batches-py" / "data_batch_2").write_bytes(_inst_payload(marker))
    code, err = nas(capsys, "search", "--strategy", "darts", "--dataset", "cifar10", "--data-root", root,
                    "--epochs", "1", "--out", tmp_path / "run")
    assert not marker.exists()
    assert_refused(code, err, "search", "data_batch_2", "os.system")
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------- checkpoints


def _payload_checkpoint(path: Path, marker: Path, kind: str) -> Path:
    """A ``.pt`` file that runs a payload when loaded without ``weights_only``."""
    if kind == "plain pickle":
        path.write_bytes(pickle.dumps({"format": 1, "model": OpensMarker(marker), "spec": {}}, protocol=2))
    elif kind == "torch zip":
        torch.save({"format": 1, "model": {"w": torch.zeros(1)}, "spec": ShellMarker(marker)}, path)
    else:  # torch's legacy (pre-zip) format
        torch.save({"format": 1, "model": OpensMarker(marker), "spec": {}}, path,
                   _use_new_zipfile_serialization=False)
    return path


CHECKPOINT_KINDS = ("plain pickle", "torch zip", "torch legacy")


@pytest.mark.parametrize("kind", CHECKPOINT_KINDS)
def test_checkpoint_payloads_are_live(kind, tmp_path, marker):
    path = _payload_checkpoint(tmp_path / "evil.pt", marker, kind)
    with contextlib.suppress(RuntimeError):  # a plain pickle runs as torch reads its "magic number"
        torch.load(path, weights_only=False)
    assert marker.exists()


@pytest.fixture(scope="module")
def train_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished one-epoch `nas train` run on digits (tiny network, two batches)."""
    out = tmp_path_factory.mktemp("safety") / "train"
    assert main(["train", "--genotype", "DARTS_V2", "--dataset", "digits", "--epochs", "1", "--init-channels", "4",
                 "--layers", "3", "--batch-size", "16", "--max-train-batches", "2", "--train-subset", "32",
                 "--val-subset", "32", "--no-progress", "--out", str(out)]) == 0
    return out


def _poisoned_run(source: Path, target: Path, marker: Path, kind: str) -> Path:
    shutil.copytree(source, target)
    for name in ("last.pt", "best.pt"):
        _payload_checkpoint(target / "checkpoints" / name, marker, kind)
    return target


@pytest.mark.parametrize("kind", CHECKPOINT_KINDS)
def test_export_refuses_a_payload_checkpoint(kind, tmp_path, marker, capsys):
    evil = _payload_checkpoint(tmp_path / "evil.pt", marker, kind)
    code, err = nas(capsys, "export", evil, "--out", tmp_path / "exported")
    assert not marker.exists()
    assert_refused(code, err, "export", evil, "refused to load")
    assert not (tmp_path / "exported").exists()


def test_export_refuses_a_run_whose_checkpoint_carries_a_payload(train_run, tmp_path, marker, capsys):
    run = _poisoned_run(train_run, tmp_path / "run", marker, "torch zip")
    code, err = nas(capsys, "export", run, "--checkpoint", "best", "--out", tmp_path / "exported")
    assert not marker.exists()
    assert_refused(code, err, "export", run / "checkpoints" / "best.pt", "posix.system")


@pytest.mark.parametrize("kind", CHECKPOINT_KINDS)
def test_resume_refuses_a_payload_checkpoint(kind, train_run, tmp_path, marker, capsys):
    run = _poisoned_run(train_run, tmp_path / "run", marker, kind)
    before = {p.name: p.read_bytes() for p in run.glob("*.json*")}
    code, err = nas(capsys, "train", "--resume", run, "--no-progress")
    assert not marker.exists()
    assert_refused(code, err, "train", run / "checkpoints", "refused to load")
    assert {p.name: p.read_bytes() for p in run.glob("*.json*")} == before  # records untouched


@pytest.mark.parametrize("command", ["detect", "segment"])
def test_init_from_refuses_a_payload_checkpoint(command, train_run, tmp_path, marker, capsys):
    evil = _payload_checkpoint(tmp_path / "evil.pt", marker, "plain pickle")
    code, err = nas(capsys, command, "--init-from", evil, "--epochs", "1", "--no-progress", "--out", tmp_path / "o")
    assert not marker.exists()
    assert_refused(code, err, command, evil, "io.open")
    run = _poisoned_run(train_run, tmp_path / "run", marker, "torch zip")
    code, err = nas(capsys, command, "--init-from", run, "--epochs", "1", "--no-progress", "--out", tmp_path / "o")
    assert not marker.exists()
    assert_refused(code, err, command, run / "checkpoints" / "best.pt")
    assert not (tmp_path / "o").exists()


def test_darts_resume_refuses_a_payload_checkpoint(tmp_path, marker, capsys):
    run = tmp_path / "darts"
    assert main(["search", "--strategy", "darts", "--space", "nb201", "--epochs", "1", "--max-steps", "1",
                 "--init-channels", "4", "--layers", "3", "--image-size", "8", "--batch-size", "16",
                 "--out", str(run)]) == 0
    _payload_checkpoint(run / "checkpoints" / "last.pt", marker, "torch zip")
    code, err = nas(capsys, "search", "--resume", run)
    assert not marker.exists()
    assert_refused(code, err, "search", run / "checkpoints" / "last.pt")


# ------------------------------------------------------------------------------------- YAML


def _evil_space(path: Path, marker: Path) -> Path:
    path.write_text(f"name: evil\nkind: !!python/object/apply:os.system [\"touch {shlex.quote(str(marker))}\"]\n"
                    "ops: [skip_connect]\n")
    return path


def test_a_space_file_with_a_python_tag_is_refused_unrun(tmp_path, marker, capsys):
    space = _evil_space(tmp_path / "evil.yaml", marker)
    yaml.unsafe_load(space.read_text())  # the payload is live ...
    assert marker.exists()
    marker.unlink()
    for args in (["build", "--genotype", "DARTS_V2"],
                 ["train", "--genotype", "DARTS_V2", "--no-progress", "--out", tmp_path / "run"],
                 ["search", "--strategy", "random", "--trials", "1", "--out", tmp_path / "run"]):
        code, err = nas(capsys, *args, "--space", space)
        assert not marker.exists()  # ... but not here
        assert_refused(code, err, args[0], space)
    assert not (tmp_path / "run").exists()
