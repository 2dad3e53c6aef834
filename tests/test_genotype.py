from __future__ import annotations

import csv
import itertools
from pathlib import Path

import networkx as nx
import pytest

from nas.errors import NasError
from nas.genotype import (
    REFERENCES,
    CellGenotype,
    Genotype,
    from_nb201_string,
    get_reference,
    mutate,
    random_genotype,
    resolve_genotype,
    to_nb201_string,
)
from nas.space import load_space

from .conftest import shared_data

SPACES = ["darts", "lecture", "nb201", "mobile"]


@pytest.mark.parametrize("name", list(REFERENCES))
def test_references_are_valid_and_round_trip(name, tmp_path):
    genotype = REFERENCES[name]
    genotype.validate(genotype.space)
    assert Genotype.from_json(genotype.to_json()) == genotype
    path = genotype.save(tmp_path / "g.json")
    assert Genotype.load(path) == genotype
    assert resolve_genotype(str(path)) == genotype
    assert resolve_genotype(name.lower()) == genotype


@pytest.mark.parametrize("space", SPACES)
def test_sampling_is_seeded_and_valid(space):
    samples = [random_genotype(space, seed=s) for s in range(30)]
    for g in samples:
        g.validate(space)
    assert samples == [random_genotype(space, seed=s) for s in range(30)]
    assert len({g.to_json() for g in samples}) > 20, "samples should differ across seeds"


@pytest.mark.parametrize("space", SPACES)
def test_mutation_changes_exactly_one_thing_and_stays_in_space(space):
    for s in range(40):
        g = random_genotype(space, seed=s)
        m = mutate(g, space, seed=s)
        m.validate(space)
        assert m != g
        assert mutate(g, space, seed=s) == m
        if load_space(space).kind == "cell":
            diffs = [(a, b) for (_, ca), (_, cb) in zip(g.cells, m.cells)
                     for na, nb in zip(ca.nodes, cb.nodes) for a, b in zip(na, nb) if a != b]
            assert len(diffs) in (1, 2)  # one edge changed (re-sorting inputs may move a second)


def test_networkx_view_and_depth():
    g = get_reference("DARTS_V2")
    graph = g.graph("normal", inputs=2)
    assert nx.is_directed_acyclic_graph(graph)
    assert set(graph.predecessors("out")) == {2, 3, 4, 5}
    assert graph[2][5]["ops"] == ["dil_conv_3x3"]
    assert g.depth("normal", 2) == 2  # input -> node 2 -> node 5


def test_nb201_strings_round_trip_over_the_whole_space():
    ops = ["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"]
    seen = set()
    for combo in itertools.islice(itertools.product(ops, repeat=6), 0, None, 37):
        arch = "|{}~0|+|{}~0|{}~1|+|{}~0|{}~1|{}~2|".format(*combo)
        g = from_nb201_string(arch)
        g.validate("nb201")
        assert to_nb201_string(g) == arch
        seen.add(arch)
    assert len(seen) > 400


def test_nb201_strings_of_the_benchmark_file():
    path = shared_data("nas-bench-201", "nb201_200epoch_test.csv")
    with open(path) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 15625
    for row in rows[::97]:
        assert to_nb201_string(from_nb201_string(row["ArchitectureString"])) == row["ArchitectureString"]


def test_pruning_removes_dead_nodes():
    # node 1 and node 2 only feed node 3 through `none`: dead, so their convs become `none`
    g = from_nb201_string("|nor_conv_3x3~0|+|nor_conv_1x1~0|nor_conv_3x3~1|+|skip_connect~0|none~1|none~2|")
    pruned = g.prune("nb201")
    pruned.validate("nb201")
    assert to_nb201_string(pruned) == "|none~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|"
    # a live chain is kept as it is
    resnet = get_reference("NB201_RESNET")
    assert resnet.prune("nb201") == resnet


def _darts_cell(nodes, concat=(2, 3, 4, 5)):
    return CellGenotype(tuple(tuple(n) for n in nodes), concat)


GOOD = [[("sep_conv_3x3", 0), ("sep_conv_3x3", 1)]] * 4


@pytest.mark.parametrize("cells, message", [
    ({"normal": _darts_cell([[("sep_conv_3x3", 0), ("sep_conv_3x3", 3)]] + GOOD[1:]),
      "reduction": _darts_cell(GOOD)}, "out of range or makes a cycle"),
    ({"normal": _darts_cell([[("sep_conv_3x3", 0), ("sep_conv_3x3", -1)]] + GOOD[1:]),
      "reduction": _darts_cell(GOOD)}, "out of range"),
    ({"normal": _darts_cell([[("conv_9x9", 0), ("sep_conv_3x3", 1)]] + GOOD[1:]),
      "reduction": _darts_cell(GOOD)}, "op 'conv_9x9' on edge 0->2 is not in space 'darts'"),
    ({"normal": _darts_cell([[("sep_conv_3x3", 0)]] + GOOD[1:]),
      "reduction": _darts_cell(GOOD)}, "node 2 has 1 input edges; space 'darts' wants 2"),
    ({"normal": _darts_cell(GOOD[:3]), "reduction": _darts_cell(GOOD)}, "has 3 nodes"),
    ({"normal": _darts_cell(GOOD)}, "do not match space 'darts' cell types"),
    ({"normal": _darts_cell(GOOD, concat=(2, 9)), "reduction": _darts_cell(GOOD)}, "output node 9 is out of range"),
])
def test_invalid_genotypes(cells, message):
    with pytest.raises(NasError, match=message):
        Genotype.from_cells("darts", **cells).validate("darts")


def test_genotype_from_another_space():
    with pytest.raises(NasError, match="genotype is for space 'darts', not 'nb201'"):
        get_reference("DARTS_V2").validate("nb201")


def test_bad_genotype_files(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(NasError, match="not valid JSON"):
        Genotype.load(bad)
    bad.write_text('{"cells": 3}')
    with pytest.raises(NasError, match="'space' must be the name"):
        Genotype.load(bad)
    with pytest.raises(NasError, match="not found"):
        Genotype.load(tmp_path / "missing.json")
    with pytest.raises(NasError, match="unknown genotype 'NOPE'"):
        resolve_genotype("NOPE")
    with pytest.raises(NasError, match="not a NAS-Bench-201 arch string"):
        from_nb201_string("|conv~0|+|")


NORMAL = {"nodes": [[["sep_conv_3x3", 0], ["sep_conv_3x3", 1]]] * 4, "concat": [2, 3, 4, 5]}


def _genotype_with(**changes):
    data = {"space": "darts", "cells": {"normal": NORMAL, "reduction": NORMAL}}
    data.update(changes)
    return data


def _edge(src, op="sep_conv_3x3"):
    """The darts genotype with its first edge replaced by ``[op, src]``."""
    nodes = [[[op, src], ["sep_conv_3x3", 1]]] + NORMAL["nodes"][1:]
    return _genotype_with(cells={"normal": {"nodes": nodes, "concat": [2, 3, 4, 5]}, "reduction": NORMAL})


@pytest.mark.parametrize("data, message", [
    ([1, 2], "not a genotype \\(a JSON object\\), got a list"),
    (3, "not a genotype \\(a JSON object\\), got an integer"),
    ("darts", "got a string"),
    (None, "got null"),
    ({"cells": {"normal": NORMAL}}, "'space' must be the name"),
    (_genotype_with(space=["darts"]), "'space' must be the name .* got \\['darts'\\]"),
    (_genotype_with(space=""), "'space' must be the name"),
    (_genotype_with(stages=[["inverted_residual_k3_e1"]]), "'cells' .* or 'stages' .*, not both"),
    ({"space": "darts"}, "has neither"),
    (_genotype_with(cell={}), "unknown key 'cell'; did you mean 'cells'"),
    (_genotype_with(cells=[NORMAL]), "'cells' must map cell types"),
    (_genotype_with(cells={}), "'cells' must map cell types"),
    (_genotype_with(cells={"normal": [1]}), "cells.normal must be a mapping with 'nodes' and 'concat', got a list"),
    (_genotype_with(cells={"normal": {"nodes": []}}), "cells.normal needs 'nodes' and 'concat'"),
    (_genotype_with(cells={"normal": {**NORMAL, "concatenate": [2]}}), "unknown key 'cells.normal.concatenate'; did you mean 'cells.normal.concat'"),
    (_genotype_with(cells={"normal": {**NORMAL, "nodes": 4}}), "cells.normal.nodes must be a list of nodes"),
    (_genotype_with(cells={"normal": {**NORMAL, "nodes": [3]}}), "cells.normal.nodes\\[0\\] must be a list"),
    (_genotype_with(cells={"normal": {**NORMAL, "nodes": [[["sep_conv_3x3", 0, 1]]]}}),
     "cells.normal.nodes\\[0\\]\\[0\\] must be an edge \\[op, source node\\]"),
    (_genotype_with(cells={"normal": {**NORMAL, "nodes": [["sep_conv_3x3"]]}}), "must be an edge"),
    (_genotype_with(cells={"normal": {**NORMAL, "concat": "2345"}}), "cells.normal.concat must be a list"),
    (_genotype_with(cells={"normal": {**NORMAL, "concat": [2, 3.0]}}), "concat\\[1\\] must be a node index"),
    (_genotype_with(cells={"normal": {**NORMAL, "concat": [2, True]}}), "concat\\[1\\] must be a node index"),
    (_edge(1.5), "nodes\\[0\\]\\[0\\]: the source node must be a node index \\(an integer\\), got 1.5"),
    (_edge(1.0), "got 1.0"),
    (_edge(True), "got True"),
    (_edge("1"), "got '1'"),
    (_edge(None), "got None"),
    (_edge(-1), "must be a node index \\(0 or more\\), got -1"),
    (_edge(0, op=3), "the op must be an op name \\(a string\\), got 3"),
    (_edge(0, op=""), "the op must be an op name"),
    (_genotype_with(cells=None, stages=[["inverted_residual_k3_e1"], "abc"]), "stages\\[1\\] must be a list"),
    (_genotype_with(cells=None, stages=[[1]]), "stages\\[0\\]\\[0\\] must be a block op name"),
    (_genotype_with(cells=None, stages=[]), "'stages' is empty"),
    (_genotype_with(space_definition=[1]), "a space file must be a mapping"),
])
def test_genotype_fields_are_checked_by_type(data, message):
    if isinstance(data, dict) and data.get("cells", 0) is None:
        data = {k: v for k, v in data.items() if k != "cells"}
    with pytest.raises(NasError, match=f"^g\\.json\\b.*{message}"):
        Genotype.from_dict(data, "g.json")


@pytest.mark.parametrize("data, message", [
    (_edge(2), "edge 2->2 is out of range or makes a cycle"),
    (_edge(99), "edge 99->2 is out of range"),
    (_edge(0, op="sep_conv3x3"), "op 'sep_conv3x3' on edge 0->2 is not in space 'darts'; did you mean 'sep_conv_3x3'"),
    (_genotype_with(cells={"normal": {**NORMAL, "concat": []}, "reduction": NORMAL}), "concat is empty"),
])
def test_genotype_files_are_checked_against_their_space(data, message):
    with pytest.raises(NasError, match=f"^g\\.json: genotype .*{message}"):
        Genotype.from_dict(data, "g.json").validate("darts")


def test_genotype_file_that_is_no_text_or_too_large_or_too_deep(tmp_path):
    path = tmp_path / "g.json"
    for blob, message in [(b"\x89PNG\r\n\x1a\n\x00\xff", "not a text file \\(not UTF-8\\)"),
                          (b'{"space": "darts\x00"}', "not a text file \\(it holds NUL bytes\\)"),
                          (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
                          (b'{"space": ' + b"1" * 5000 + b"}", "not valid JSON"),
                          (b" " * (2 * 1024 * 1024), "too large for a genotype file")]:
        path.write_bytes(blob)
        with pytest.raises(NasError, match=f"^{path}: {message}"):
            Genotype.load(path)


def test_genotype_strings_are_checked():
    import json

    text = json.dumps(_edge(1.5))
    with pytest.raises(NasError, match="^genotype '.*': cells.normal.nodes\\[0\\]\\[0\\]: the source node"):
        resolve_genotype(text)
    assert resolve_genotype(str(get_reference("DARTS_V2"))) == get_reference("DARTS_V2")
    with pytest.raises(NasError, match="unknown genotype 'DARTS_V3'; did you mean 'DARTS_V2'"):
        resolve_genotype("DARTS_V3")
    for text in ("x" * 5000, "a\x00b"):  # not a possible path: still a one-line message
        with pytest.raises(NasError, match="unknown genotype"):
            resolve_genotype(text)
    for arch in ("|nor_conv_3x3~0.5|+|none~0|none~1|+|none~0|none~1|none~2|",
                 "|nor_conv_3x3~-0|+|none~0|none~1|+|none~0|none~1|none~2|",
                 "|nor_conv_3x3~ 0|+|none~0|none~1|+|none~0|none~1|none~2|",
                 "|nor_conv_3x3~0||+|none~0|none~1|+|none~0|none~1|none~2|"):
        with pytest.raises(NasError, match="not a NAS-Bench-201 arch string"):
            from_nb201_string(arch)
    with pytest.raises(NasError, match="has 10000 nodes separated by '\\+', not 3"):
        from_nb201_string("+".join(["|none~0|"] * 10_000))


def test_a_run_folder_without_genotype(tmp_path):
    with pytest.raises(NasError, match="is a folder without a genotype.json"):
        resolve_genotype(str(tmp_path))


USER_SPACE = ("name: tiny\nkind: cell\nops: [skip_connect, conv_3x3, max_pool_3x3]\n"
              "cell: {inputs: 2, nodes: 2, edges_per_node: 2, output: concat, types: [normal, reduction]}\n"
              "network: {init_channels: 4, layers: 3}\n")


def user_genotype_file(tmp_path) -> tuple[Genotype, Path]:
    """A genotype of a user's space saved to genotype.json, with the space file deleted."""
    space_file = tmp_path / "tiny.yaml"
    space_file.write_text(USER_SPACE)
    genotype = random_genotype(str(space_file), seed=3)
    path = genotype.save(tmp_path / "genotype.json")
    space_file.unlink()
    return genotype, path


def test_genotype_of_a_user_space_carries_its_definition(tmp_path):
    import torch

    from nas.builders import build_backbone, build_classifier

    genotype, path = user_genotype_file(tmp_path)
    loaded = Genotype.load(path)
    assert loaded == genotype and loaded.space_definition is not None
    assert "space_definition" not in str(loaded) and "conv_3x3" in str(loaded)  # logs stay one short line
    assert loaded.space_definition.to_dict() == genotype.space_definition.to_dict()
    assert load_space(loaded).ops == ("skip_connect", "conv_3x3", "max_pool_3x3")
    with pytest.raises(NasError, match="unknown search space 'tiny'"):
        load_space(loaded.space)  # the name alone is not enough: the file is gone
    net = build_classifier(loaded, num_classes=3).eval()
    assert net(torch.randn(2, 3, 16, 16)).shape == (2, 3)
    features = build_backbone(loaded, init_channels=4).eval()(torch.randn(1, 3, 32, 32))
    assert [f.shape[-1] for f in features.values()] == [8, 4, 2, 1]
    # mutation and pruning keep the definition
    assert mutate(loaded, load_space(loaded), seed=0).space_definition is not None
    assert loaded.prune(load_space(loaded)).space_definition is not None


def test_shipped_space_genotypes_stay_short(tmp_path):
    genotype = random_genotype("darts", seed=0)
    assert genotype.space_definition is None and set(genotype.to_dict()) == {"space", "cells"}
    # a user file named like a shipped space but with other ops is not the shipped space
    space_file = tmp_path / "darts.yaml"
    space_file.write_text(USER_SPACE.replace("name: tiny", "name: darts"))
    assert random_genotype(str(space_file), seed=0).space_definition is not None


def test_embedded_definition_is_validated(tmp_path):
    genotype, path = user_genotype_file(tmp_path)
    data = genotype.to_dict()
    data["space_definition"]["ops"] = ["conv_9x9"]
    with pytest.raises(NasError, match="unknown op 'conv_9x9'"):
        Genotype.from_dict(data, "g.json")
    data = genotype.to_dict()
    data["space"] = "other"
    with pytest.raises(NasError, match="names space 'other' but embeds space 'tiny'"):
        Genotype.from_dict(data, "g.json")


def test_nas_train_needs_no_space_file(tmp_path):
    import json
    import subprocess
    import sys

    _, path = user_genotype_file(tmp_path)
    run = tmp_path / "run"
    result = subprocess.run([sys.executable, "-m", "nas", "train", "--genotype", str(path), "--epochs", "1",
                             "--init-channels", "4", "--layers", "3", "--image-size", "16", "--train-subset", "32",
                             "--val-subset", "16", "--batch-size", "16", "--max-train-batches", "1",
                             "--export-formats", "source", "--out", str(run), "--no-progress"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert json.loads((run / "genotype.json").read_text())["space_definition"]["name"] == "tiny"
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1


def test_every_maker_of_genotypes_attaches_a_user_space(tmp_path):
    import torch

    from nas.strategies.blackbox.sampling import genotype_to_params, params_to_genotype
    from nas.strategies.oneshot.derive import derive_genotype
    from nas.strategies.oneshot.supernet import edges_per_cell

    space_file = tmp_path / "tiny.yaml"
    space_file.write_text(USER_SPACE)
    space = load_space(str(space_file))
    sampled = random_genotype(space, seed=0)
    derived = derive_genotype(space, {t: torch.rand(edges_per_cell(space), len(space.ops)) for t in space.cell_types})
    decided = params_to_genotype(genotype_to_params(sampled, space), space)
    for genotype in (sampled, mutate(sampled, space, seed=1), derived, decided, sampled.prune(space)):
        assert genotype.space_definition is not None and genotype.space_definition.to_dict() == space.to_dict()
    shipped = load_space("nb201")
    assert params_to_genotype(genotype_to_params(random_genotype(shipped, seed=0), shipped), shipped).space_definition is None
