"""No wasted evaluations, local search, warm starts, epoch budgets and what a search may not
optimise: the pieces that make a black-box search count its budget honestly."""
from __future__ import annotations

import collections
import csv
import json

import optuna
import pytest

from nas.cli import main
from nas.errors import NasError
from nas.evaluators import Evaluator
from nas.genotype import from_nb201_string
from nas.genotype.nb201 import nb201_function, nb201_graph
from nas.space import load_space
from nas.strategies.blackbox.distinct import function_key
from nas.strategies.blackbox.local import RESTART
from nas.strategies.blackbox.optuna_search import make_sampler, search_blackbox
from nas.strategies.blackbox.sampling import params_to_genotype
from nas.strategies.blackbox.warm import warm_start
from tests.conftest import shared_data

NB201 = load_space("nb201")


def f(arch: str) -> str:
    return nb201_function(from_nb201_string(arch))


# -- what a NAS-Bench-201 cell computes ------------------------------------------------------------
def test_cells_that_compute_the_same_are_one_function():
    # node 3 reads conv(x) once directly (edge 0->3) or through a skip from node 1 (edges 0->1, 1->3)
    direct = "|none~0|+|none~0|none~1|+|nor_conv_3x3~0|none~1|none~2|"
    through_a_skip = "|nor_conv_3x3~0|+|none~0|none~1|+|none~0|skip_connect~1|none~2|"
    assert f(direct) == f(through_a_skip) == "nor_conv_3x3(x) ; out=nor_conv_3x3(x)"
    # a node that reaches the output through none edges only is dead, whatever it computes
    dead_node = "|nor_conv_1x1~0|+|avg_pool_3x3~0|none~1|+|nor_conv_3x3~0|none~1|none~2|"
    assert f(dead_node) == f(direct)
    # the order of a sum does not matter: conv(x) + pool(x) either way round
    a = "|nor_conv_3x3~0|+|avg_pool_3x3~0|none~1|+|none~0|skip_connect~1|skip_connect~2|"
    b = "|avg_pool_3x3~0|+|nor_conv_3x3~0|none~1|+|none~0|skip_connect~1|skip_connect~2|"
    assert f(a) == f(b) == "avg_pool_3x3(x) ; nor_conv_3x3(x) ; out=avg_pool_3x3(x)+nor_conv_3x3(x)"
    # every cell whose output is always zero is one function
    assert f("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|") == "zero"
    assert f("|nor_conv_3x3~0|+|skip_connect~0|none~1|+|none~0|none~1|none~2|") == "zero"


def test_different_computations_stay_apart():
    # one layer conv(x) feeding two ops, against two separate conv(x) layers: same expression,
    # different weights sharing, so different functions
    shared = "|nor_conv_3x3~0|+|none~0|avg_pool_3x3~1|+|none~0|nor_conv_3x3~1|skip_connect~2|"
    separate = "|nor_conv_3x3~0|+|nor_conv_3x3~0|none~1|+|none~0|nor_conv_3x3~1|avg_pool_3x3~2|"
    assert f(shared) != f(separate)
    assert f(shared).split(" ; ").count("nor_conv_3x3(x)") == 1  # one layer conv(x)
    assert f(separate).split(" ; ").count("nor_conv_3x3(x)") == 2  # two layers conv(x)
    # a convolution of zeros is BatchNorm's learned shift, not zero; a pooling of zeros is zero
    conv_of_zeros = "|none~0|+|none~0|none~1|+|nor_conv_3x3~0|none~1|nor_conv_1x1~2|"
    pool_of_zeros = "|none~0|+|none~0|none~1|+|nor_conv_3x3~0|none~1|avg_pool_3x3~2|"
    assert f(conv_of_zeros) == "nor_conv_3x3(x) ; out=c+nor_conv_3x3(x)"
    assert f(pool_of_zeros) == "nor_conv_3x3(x) ; out=nor_conv_3x3(x)"
    assert f("|nor_conv_1x1~0|+|none~0|none~1|+|none~0|none~1|none~2|") == "zero"


@pytest.mark.parametrize("cells", [pytest.param(None, marks=pytest.mark.slow), 2000])
def test_the_function_text_is_the_layer_graph_up_to_isomorphism(cells):
    """Cells with one text have isomorphic layer graphs, and cells with different texts do not
    (graphs bucketed by a Weisfeiler-Lehman hash, then compared exactly): all 15,625 cells (slow;
    5,605 functions), or 2,000 cells drawn at random."""
    import random

    import networkx as nx
    from networkx.algorithms.isomorphism import categorical_edge_match, categorical_node_match

    root = shared_data("nas-bench-201")
    with open(root / "nb201_200epoch_test.csv", newline="") as fh:
        archs = [row["ArchitectureString"] for row in csv.DictReader(fh)]
    assert len(archs) == 15625
    if cells is not None:
        archs = random.Random(0).sample(archs, cells)
    groups = collections.defaultdict(list)
    for arch in archs:
        genotype = from_nb201_string(arch)
        groups[nb201_function(genotype)].append(genotype)
    assert cells is not None or len(groups) == 5605
    node, edge = categorical_node_match("op", None), categorical_edge_match("n", 1)
    buckets = collections.defaultdict(list)
    for text, members in groups.items():
        first = nb201_graph(members[0])
        assert all(nx.is_isomorphic(first, nb201_graph(g), node_match=node, edge_match=edge) for g in members[1:]), text
        buckets[nx.weisfeiler_lehman_graph_hash(first, node_attr="op")].append(first)
    for graphs in buckets.values():
        for i, g in enumerate(graphs):
            assert not any(nx.is_isomorphic(g, h, node_match=node, edge_match=edge) for h in graphs[:i])


# -- no cell evaluated twice -------------------------------------------------------------------------
def conv_count(trial: optuna.Trial) -> float:
    from nas.strategies.blackbox.sampling import suggest_genotype

    genotype = suggest_genotype(trial, NB201)
    return float(str(genotype.to_dict()).count("nor_conv_3x3"))


@pytest.mark.parametrize("strategy", ["random", "tpe", "evolution", "local"])
def test_distinct_searches_evaluate_every_function_once(strategy):
    def run(distinct):
        sampler = make_sampler(strategy, NB201, seed=3, population=4, sample_size=2, distinct=distinct)
        study = optuna.create_study(direction="maximize", sampler=sampler)
        study.optimize(conv_count, n_trials=60)
        return [params_to_genotype(t.params, NB201) for t in study.trials]

    cells = run("function")
    assert len(cells) == 60 and len({function_key(g) for g in cells}) == 60
    genotypes = run("same")
    assert len({g.to_json() if hasattr(g, "to_json") else str(g.to_dict()) for g in genotypes}) == 60


def test_repeats_are_what_distinct_off_evaluates():
    sampler = make_sampler("evolution", NB201, seed=0, population=4, sample_size=2, distinct="off")
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(conv_count, n_trials=60)
    assert len({function_key(params_to_genotype(t.params, NB201)) for t in study.trials}) < 60


def test_the_same_seed_gives_the_same_distinct_search():
    def run():
        study = optuna.create_study(direction="maximize",
                                    sampler=make_sampler("tpe", NB201, seed=7, distinct="function"))
        study.optimize(conv_count, n_trials=25)
        return [t.params for t in study.trials]

    assert run() == run()


def test_nsga2_front_holds_no_repeated_or_identical_cell(tmp_path):
    class Toy(Evaluator):
        objective = "val_acc"
        space = "nb201"
        provides = ("val_acc", "params")

        def evaluate(self, genotype, *, report=None, workdir=None):
            text = str(genotype.to_dict())
            return {"val_acc": text.count("nor_conv_3x3") / 6, "params": text.count("nor_conv")}

    # repeats evaluated (distinct off), so the trials hold repeated cells; the front lists each function once
    result = search_blackbox(NB201, Toy(), strategy="nsga2", trials=30, seed=1, population=4, distinct="off",
                             objectives="val_acc,params", out=tmp_path / "run", progress=False)
    assert len({function_key(params_to_genotype(t.params, NB201)) for t in result.study.trials}) < 30
    keys = [function_key(g) for g, _ in result.pareto]
    assert keys and len(keys) == len(set(keys))
    members = json.loads((tmp_path / "run" / "pareto.json").read_text())["members"]
    assert len(members) == len(keys)


# -- local search ------------------------------------------------------------------------------------
def test_local_search_climbs_to_the_optimum_and_restarts_at_a_local_optimum():
    study = optuna.create_study(direction="maximize", sampler=make_sampler("local", NB201, seed=0, distinct="function"))
    study.optimize(conv_count, n_trials=40)
    assert study.best_value == 6  # all six edges 3x3 convolutions: at most 6 improving moves away
    # a flat objective: the first cell is a local optimum once its 24 neighbours are evaluated
    flat = optuna.create_study(direction="maximize", sampler=make_sampler("local", NB201, seed=0,
                                                                          distinct="function"))
    flat.optimize(lambda t: conv_count(t) * 0, n_trials=30)
    restarts = [t.number for t in flat.trials if t.system_attrs.get(RESTART)]
    assert restarts and restarts[0] == 25


# -- warm start --------------------------------------------------------------------------------------
def test_a_warm_start_evaluates_the_best_ranked_cells_first(tmp_path, capsys):
    root = shared_data("nas-bench-201")
    out = tmp_path / "run"
    code = main(["search", "--strategy", "local", "--evaluator", "nb201", "--nb201-root", str(root),
                 "--trials", "20", "--warm-start", "nb201-jacov", "--warm-sample", "300", "--warm-top", "5",
                 "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "warm start: nb201-jacov ranked 300 random cells" in printed and "apart from the 20 evaluations" in printed
    config = json.loads((out / "config.json").read_text())
    assert config["warm_start"]["scored"] == 300 and len(config["warm_start"]["best_scores"]) == 5
    assert config["sampler"]["start"] == 5
    from nas.evaluators.nb201_table import NB201TableEvaluator

    table = NB201TableEvaluator(root)
    expected = warm_start(NB201, lambda g: table.record(g).jacov, proxy="nb201-jacov", sample=300, top=5, seed=0)
    with open(out / "trials.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 20  # the ranking is not part of the budget
    assert [r["genotype"] for r in rows[:5]] == [table.record(g).arch for g in expected.genotypes]
    scores = [table.record(g).jacov for g in expected.genotypes]
    assert scores == sorted(scores, reverse=True)
    assert len({function_key(from_nb201_string(r["genotype"])) for r in rows}) == 20


# -- what a search may not do ------------------------------------------------------------------------
@pytest.mark.parametrize("extra, named", [
    (["--objectives", "test_acc"], ["objective 'test_acc' is read from a test split", "val_acc"]),
    (["--objectives", "val_acc,test_acc_12"], ["'test_acc_12' is read from a test split"]),
    (["--pruner", "sha"], ["--pruner sha", "reports none"]),
    (["--pruner", "hyperband"], ["--pruner hyperband", "reports none"]),
    (["--backend", "ray", "--scheduler", "asha"], ["--scheduler asha", "reports none"]),
    (["--budget-epochs", "10"], ["--budget-epochs", "trains none"]),
    (["--warm-top", "3"], ["--warm-top belongs to a warm start"]),
    (["--warm-start", "nb201-jacov", "--warm-sample", "5", "--warm-top", "9"], ["--warm-top 9", "--warm-sample"]),
])
def test_what_cannot_act_or_would_read_test_data_is_refused(tmp_path, capsys, extra, named):
    root = shared_data("nas-bench-201")
    out = tmp_path / "run"
    code = main(["search", "--strategy", "tpe", "--evaluator", "nb201", "--nb201-root", str(root), "--trials", "5",
                 "--out", str(out), *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert all(text in err[0] for text in named), err[0]
    assert not out.exists()


# -- an epoch budget -----------------------------------------------------------------------------------
class Curve(Evaluator):
    """Reports 4 epochs of an accuracy that grows with the number of 3x3 convolutions."""

    objective = "val_acc"
    space = "nb201"
    reports_epochs = True
    epochs = 4

    def evaluate(self, genotype, *, report=None, workdir=None):
        quality = str(genotype.to_dict()).count("nor_conv_3x3") / 6
        for epoch in range(1, self.epochs + 1):
            value = quality * epoch / self.epochs
            if report is not None:
                report(epoch, {"val_acc": value})
        return {"val_acc": value}


def test_an_epoch_budget_ends_a_hyperband_search(tmp_path):
    result = search_blackbox(NB201, Curve(), strategy="tpe", trials=1000, seed=0, pruner="hyperband",
                             budget_epochs=30, out=tmp_path / "run", progress=False)
    trials = result.study.trials
    spent = sum(len(t.intermediate_values) for t in trials)
    assert 30 <= spent < 30 + Curve.epochs
    assert any(t.state == optuna.trial.TrialState.PRUNED for t in trials)  # trials that ran 1 epoch
    assert len(trials) > 30 / Curve.epochs  # pruned trials leave budget for more trials
    assert json.loads((tmp_path / "run" / "config.json").read_text())["budget_epochs"] == 30


def test_make_sampler_refuses_what_cannot_work():
    with pytest.raises(NasError, match="local optimises one objective"):
        make_sampler("local", NB201, multi_objective=True)
    with pytest.raises(NasError, match="unknown --distinct"):
        make_sampler("random", NB201, distinct="isomorphic")
