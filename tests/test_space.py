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
