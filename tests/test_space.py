from __future__ import annotations

import re

import pytest

from nas.errors import NasError
from nas.genotype import random_genotype
from nas.space import available_spaces, load_space


def test_shipped_spaces():
    assert {"darts", "lecture", "nb201", "mobile"} <= set(available_spaces())
    darts = load_space("darts")
    assert len(darts.ops) == 8 and darts.nodes == 4 and darts.edges_per_node == 2
    assert darts.cell_types == ("normal", "reduction")
    nb = load_space("nb201")
    assert nb.dense and nb.nodes == 3 and nb.inputs == 1 and set(nb.ops) == {
        "none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"}
    mobile = load_space("mobile")
    assert mobile.kind == "chain" and len(mobile.ops) == 18  # 3 kernels x 3 expansions x SE on/off


def test_user_space_file_without_code(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text("name: tiny\nkind: cell\nops: [skip_connect, conv_3x3, inception]\n"
                    "cell: {inputs: 2, nodes: 2, edges_per_node: 2, output: concat, types: [normal, reduction]}\n"
                    "network: {init_channels: 8, layers: 3}\n")
    space = load_space(str(path))
    assert space.name == "tiny" and space.nodes == 2
    genotype = random_genotype(space, seed=1)
    genotype.validate(space)


def test_round_trip_of_space_dict(tmp_path):
    import yaml

    for name in ("darts", "nb201", "mobile"):
        space = load_space(name)
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(space.to_dict()))
        again = load_space(str(path))
        assert again.ops == space.ops and again.stages == space.stages and again.nodes == space.nodes


@pytest.mark.parametrize("text, message", [
    ("name: x\nkind: cell\nops: [conv_9x9]\ncell: {}\n", "unknown op 'conv_9x9'"),
    ("name: x\nkind: tree\nops: [conv_3x3]\n", "kind must be 'cell' or 'chain'"),
    ("kind: cell\nops: [conv_3x3]\n", "missing key 'name'"),
    ("name: x\nkind: cell\nops: [conv_3x3]\ncell: {inputs: 1, edges_per_node: 2}\n", "exceeds cell.inputs"),
    ("name: x\nkind: cell\nops: [conv_3x3]\ncell: {nodes: 0}\n", "cell.nodes must be a positive integer"),
    ("name: x\nkind: cell\nops: []\ncell: {}\n", "'ops' must be a non-empty list"),
    ("name: x\nkind: chain\nblocks: {kernel: [3], expansion: [6]}\nstages: [{channels: 8, stride: 3}]\n",
     "stride must be 1 or 2"),
    ("name: [unclosed\n", "not valid YAML"),
    ("- just\n- a list\n", "must be a mapping"),
])
def test_malformed_space_files(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(NasError, match=message):
        load_space(str(path))


CELL = "name: x\nkind: cell\nops: [conv_3x3, skip_connect]\n"
CHAIN = "name: c\nkind: chain\nblocks: {kernel: [3], expansion: [6]}\n"


@pytest.mark.parametrize("text, message", [
    (CELL + "cell: {types: 3}\n", "cell.types must be \\[normal\\] or \\[normal, reduction\\], got 3"),
    (CELL + "cell: {types: normal}\n", "cell.types must be"),
    (CELL + "cell: {}\nnetwork: {init_channels: '16'}\n", "network.init_channels must be a positive integer, got '16'"),
    (CELL + "cell: {}\nnetwork: {init_channels: -4}\n", "network.init_channels must be a positive integer, got -4"),
    (CELL + "cell: {}\nnetwork: {layers: 0}\n", "network.layers must be a positive integer, got 0"),
    (CELL + "cell: {}\nnetwork: {layers: 8.5}\n", "network.layers must be a positive integer, got 8.5"),
    (CELL + "cell: {}\nnetwork: {stem_multiplier: true}\n", "network.stem_multiplier must be a positive integer, got True"),
    (CELL + "cell: {}\nnetwork: {reduction: pool}\n", "network.reduction must be 'cell' or 'residual', got 'pool'"),
    (CELL + "cell: {}\nnetwork: {head: relu}\n", "network.head must be 'none' or 'bn_relu'"),
    (CELL + "cell: {}\nnetwork: {init_chanels: 16}\n",
     "unknown key 'network.init_chanels'; did you mean 'network.init_channels'"),
    (CELL + "cell: {}\nnetwork: [init_channels, 16]\n", "'network' must be a mapping of macro settings, got a list"),
    (CELL + "cell: [inputs, 2]\n", "'cell' must be a mapping .*, got a list"),
    (CELL + "cell: {node: 4}\n", "unknown key 'cell.node'; did you mean 'cell.nodes'"),
    (CELL + "cell: {nodes: -1}\n", "cell.nodes must be a positive integer, got -1"),
    (CELL + "cell: {nodes: true}\n", "cell.nodes must be a positive integer, got True"),
    (CELL + "cell: {nodes: '4'}\n", "cell.nodes must be a positive integer, got '4'"),
    (CELL + "cell: {inputs: 2.0}\n", "cell.inputs must be a positive integer, got 2.0"),
    (CELL + "cell: {edges_per_node: some}\n", "cell.edges_per_node must be a positive integer or 'all'"),
    (CELL + "cell: {edges_per_node: true}\n", "cell.edges_per_node must be a positive integer, got True"),
    (CELL + "cell: {output: [concat]}\n", "cell.output must be 'concat' or 'last', got \\['concat'\\]"),
    (CELL + "cell: {}\nextra: 1\n", "unknown key 'extra'"),
    (CELL + "cells: {}\n", "unknown key 'cells'; did you mean 'cell'"),
    ("name: x\nkind: cell\nops: conv_3x3\ncell: {}\n", "'ops' must be a non-empty list of op names, got 'conv_3x3'"),
    ("name: x\nkind: cell\nops: [conv_3x3, 5]\ncell: {}\n", "'ops' must be a non-empty list of op names"),
    ("name: x\nkind: cell\nops: [conv3x3]\ncell: {}\n", "unknown op 'conv3x3'; did you mean 'conv_3x3'"),
    ("name: x\nkind: cell\nops: [conv_3x3, conv_3x3]\ncell: {}\n", "'ops' lists an op twice"),
    ("name: 3\nkind: cell\nops: [conv_3x3]\ncell: {}\n", "'name' must be a short name .*, got 3"),
    ("name: ../../etc\nkind: cell\nops: [conv_3x3]\ncell: {}\n", "'name' must be a short name"),
    ("name: [x]\nkind: cell\nops: [conv_3x3]\ncell: {}\n", "'name' must be a short name"),
    ("name: x\nkind: [cell]\nops: [conv_3x3]\ncell: {}\n", "kind must be 'cell' or 'chain', got \\['cell'\\]"),
    ("name: x\nkind: {a: 1}\nops: [conv_3x3]\ncell: {}\n", "kind must be 'cell' or 'chain'"),
    ("name: x\ndescription: [a]\nkind: cell\nops: [conv_3x3]\ncell: {}\n", "'description' must be a string"),
    (CHAIN + "stages: [{channels: 8, stride: true}]\n", "stages\\[0\\].stride must be 1 or 2, got True"),
    (CHAIN + "stages: [{channels: 8, stride: 1.0}]\n", "stages\\[0\\].stride must be 1 or 2, got 1.0"),
    (CHAIN + "stages: [{channels: '8'}]\n", "stages\\[0\\].channels must be a positive integer, got '8'"),
    (CHAIN + "stages: [{stride: 1}]\n", "missing key 'stages\\[0\\].channels'"),
    (CHAIN + "stages: [{channels: 8, depth: [1, 0]}]\n", "stages\\[0\\].depth must be a positive integer, got 0"),
    (CHAIN + "stages: [{channels: 8, depth: []}]\n", "stages\\[0\\].depth must be a positive integer or a non-empty"),
    (CHAIN + "stages: [{channels: 8, width: 2}]\n", "unknown key 'stages\\[0\\].width'"),
    (CHAIN + "stages: [8]\n", "stages\\[0\\] must be a mapping .*, got an integer"),
    (CHAIN + "stages: {channels: 8}\n", "'stages' must be a non-empty list"),
    (CHAIN + "stages: [{channels: 8}]\nnetwork: {stem_stride: 3}\n", "network.stem_stride must be 1 or 2, got 3"),
    (CHAIN + "stages: [{channels: 8}]\nnetwork: {layers: 3}\n", "unknown key 'network.layers'"),
    ("name: c\nkind: chain\nblocks: {kernel: 3, expansion: [6]}\nstages: [{channels: 8}]\n",
     "blocks.kernel must be a non-empty list of positive integers, got 3"),
    ("name: c\nkind: chain\nblocks: {kernel: [3.0], expansion: [6]}\nstages: [{channels: 8}]\n",
     "blocks.kernel must be a non-empty list of positive integers"),
    ("name: c\nkind: chain\nblocks: {kernel: [3], expansion: [6], se: [maybe]}\nstages: [{channels: 8}]\n",
     "blocks.se must be a non-empty list of true / false"),
    ("name: c\nkind: chain\nblocks: {kernel: [3]}\nstages: [{channels: 8}]\n", "missing key 'blocks.expansion'"),
    ("name: c\nkind: chain\nblocks: {kernel: [4], expansion: [6]}\nstages: [{channels: 8}]\n", "unknown op"),
    ("name: c\nkind: chain\nblocks: [3, 6]\nstages: [{channels: 8}]\n", "'blocks' must map kernel"),
    ("!!python/object/apply:os.system [echo hacked]\n", "not valid YAML .*python/object"),
    ("name: x\nkind: cell\nops: !!python/name:os.system\n", "not valid YAML"),
    ("name: x\n\tkind: cell\n", "not valid YAML"),
    ("when: 2024-13-45\n", "not valid YAML"),
    ("", "a space file must be a mapping .*got null"),
    ("42\n", "a space file must be a mapping .*got an integer"),
])
def test_space_files_are_checked_by_type(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(NasError, match=f"^{path}: {message}"):
        load_space(str(path))


def test_space_files_that_are_no_text_or_too_large_or_too_deep(tmp_path):
    path = tmp_path / "bad.yaml"
    for blob, message in [(b"\x89PNG\r\n\x1a\n\x00\xff\xfe", "not a text file \\(not UTF-8\\)"),
                          (b"name: x\x00\n", "not a text file \\(it holds NUL bytes\\)"),
                          (b"a: " + b"[" * 20_000 + b"]" * 20_000 + b"\n", "nested too deeply"),
                          (b"# " + b"x" * (2 * 1024 * 1024) + b"\n", "too large for a space file")]:
        path.write_bytes(blob)
        with pytest.raises(NasError, match=f"^{path}: {message}"):
            load_space(str(path))
    for text in ("x" * 5000 + ".yaml", "a\x00b.yaml", str(tmp_path / "sub.yaml")):  # no such file, not a path
        (tmp_path / "sub.yaml").mkdir(exist_ok=True)
        with pytest.raises(NasError, match="search space file .* not found"):
            load_space(text)
    with pytest.raises(NasError, match="unknown search space"):
        load_space(str(tmp_path))
    with pytest.raises(NasError, match=re.escape("unknown search space 'a\\x00b'")):
        load_space("a\x00b")


def test_a_folder_named_like_a_shipped_space_does_not_hide_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "nb201").mkdir()
    assert load_space("nb201").name == "nb201"
    (tmp_path / "darts").write_text("name: mine\nkind: cell\nops: [conv_3x3]\ncell: {}\n")
    assert load_space("darts").name == "mine"  # a file is a path, as it always was


def test_a_space_written_by_nas_reads_back_strictly(tmp_path):
    for name in available_spaces():
        space = load_space(name)
        from nas.space import space_from_dict

        assert space_from_dict(space.to_dict()).to_dict() == space.to_dict()


def test_unknown_space_and_missing_file():
    with pytest.raises(NasError, match="unknown search space 'nope'; known: .*darts"):
        load_space("nope")
    with pytest.raises(NasError, match="not found"):
        load_space("/no/such/space.yaml")


def test_shipped_spaces_are_package_data():
    import importlib.resources

    from nas.space import SPACES_DIR

    package_files = importlib.resources.files("nas") / "searchspaces"
    assert SPACES_DIR.is_dir() and SPACES_DIR.samefile(str(package_files))
    assert sorted(p.name for p in SPACES_DIR.glob("*.yaml")) == [f"{n}.yaml" for n in available_spaces()]
    for name in available_spaces():
        assert load_space(name).source == str(SPACES_DIR / f"{name}.yaml")


def test_spaces_load_from_any_folder(tmp_path):
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", "from nas.space import load_space; print(load_space('darts').name)"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "darts", result.stderr


@pytest.mark.slow
def test_wheel_contains_the_space_files(tmp_path):
    import shutil
    import subprocess
    import sys
    import zipfile
    from pathlib import Path

    pytest.importorskip("setuptools", reason="building without isolation needs setuptools in this environment")
    repo = Path(__file__).resolve().parent.parent
    source = tmp_path / "source"  # a copy, so that the build leaves nothing in the checkout
    shutil.copytree(repo / "nas", source / "nas", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(repo / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path / "dist"), str(source)], check=True, capture_output=True, timeout=600)
    wheel, = (tmp_path / "dist").glob("nas-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"nas/searchspaces/{n}.yaml" for n in ("darts", "lecture", "nb201", "mobile")} <= names


def test_space_kinds_are_a_registry(tmp_path):
    from nas.space import get_space_kind, register_space_kind, space_kinds

    assert space_kinds()[:2] == ["cell", "chain"]
    assert get_space_kind("cell").read is not None
    with pytest.raises(ValueError, match="already registered"):
        register_space_kind("cell", read=lambda d, s: None, write=lambda s: {})
    with pytest.raises(NasError, match="unknown space kind 'tree'"):
        get_space_kind("tree")


def test_a_registered_space_kind_reads_and_writes_its_files(tmp_path, monkeypatch):
    import nas.space

    monkeypatch.setattr(nas.space, "_KINDS", dict(nas.space._KINDS))  # the registration ends with the test

    def read(data, source):
        ops = tuple(nas.space.need(data, "ops", source))
        return nas.space.SearchSpace(name=data["name"], kind="single", ops=ops, cell_types=(),
                                     network=dict(data.get("network") or {}), source=source)

    nas.space.register_space_kind("single", read=read, write=lambda space: {"ops": list(space.ops)})
    path = tmp_path / "single.yaml"
    path.write_text("name: one\nkind: single\nops: [conv_3x3]\n")
    space = load_space(str(path))
    assert space.kind == "single" and space.ops == ("conv_3x3",)
    assert nas.space.space_from_dict(space.to_dict()).ops == space.ops
    with pytest.raises(NasError, match="missing key 'ops'"):
        nas.space.space_from_dict({"name": "x", "kind": "single"})
