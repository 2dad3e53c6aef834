from __future__ import annotations

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
