"""DARTS: supernet, architecture steps, derivation, search runs, resume and the command line.

Searches here are tiny (C=4, 3 cells, 8x8 digits, 1-2 steps per epoch) so the file runs in
about a minute on two CPU cores.
"""
from __future__ import annotations

import json

import pytest
import torch
import yaml

from nas.cli import main
from nas.config import check
from nas.errors import NasError
from nas.genotype import resolve_genotype
from nas.space import load_space
from nas.strategies.oneshot.architect import Architect
from nas.strategies.oneshot.derive import derive_genotype
from nas.strategies.oneshot.search import search_darts, train_step
from nas.strategies.oneshot.settings import DartsConfig
from nas.strategies.oneshot.supernet import Supernet, edges_per_cell


def tiny(**changes) -> DartsConfig:
    settings = dict(epochs=1, batch_size=16, init_channels=4, layers=3, image_size=8, max_steps=1)
    settings.update(changes)
    return DartsConfig(**settings)


def batch(n: int = 8, size: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=g), torch.randint(0, 10, (n,), generator=g)


def write_space(tmp_path, name: str, ops: list[str], *, dense: bool) -> str:
    cell = {"inputs": 1, "nodes": 3, "edges_per_node": "all", "output": "last", "types": ["normal"]} if dense else \
        {"inputs": 2, "nodes": 2, "edges_per_node": 2, "output": "concat", "types": ["normal", "reduction"]}
    network = {"stem_multiplier": 1, "reduction": "residual"} if dense else {"stem_multiplier": 3, "reduction": "cell"}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "kind": "cell", "ops": ops, "cell": cell, "network": network}))
    return str(path)


# -- supernet ------------------------------------------------------------------------------------
@pytest.mark.parametrize("space", ["darts", "lecture", "nb201"])
def test_supernet_alphas_per_cell_type_and_separate_parameter_groups(space):
    sp = load_space(space)
    net = Supernet(sp, C=4, layers=3)
    assert set(net.alphas) == set(sp.cell_types)
    for alpha in net.alphas.values():
        assert alpha.shape == (edges_per_cell(sp), len(sp.ops))
    arch = {id(p) for p in net.arch_parameters()}
    weights = {id(p) for p in net.weight_parameters()}
    assert arch and weights and not arch & weights
    assert arch | weights == {id(p) for p in net.parameters()}
    # affine-free BatchNorm inside the mixed ops; pooling followed by one
    mixed = net.cells[0].edges[0]
    bns = [m for m in mixed.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and not any(bn.affine for bn in bns)
    for name, op in zip(sp.ops, mixed.ops):
        if "pool" in name:
            assert isinstance(op[-1], torch.nn.BatchNorm2d)
    assert net(batch()[0]).shape == (8, 10)


def test_partial_channels_cut_weights_and_add_edge_normalisation():
    full = Supernet("darts", C=8, layers=3)
    partial = Supernet("darts", C=8, layers=3, partial_channels=4, edge_normalisation=True)
    assert sum(p.numel() for p in partial.weight_parameters()) < sum(p.numel() for p in full.weight_parameters()) / 2
    assert partial.betas is not None and set(partial.betas) == {"normal", "reduction"}
    edge_weights = partial.edge_weights()["normal"]
    for edges in partial.node_edges:  # a softmax over the edges entering each node
        assert float(edge_weights[edges.start:edges.stop].sum().detach()) == pytest.approx(1.0)
    assert partial(batch()[0]).shape == (8, 10)
    with pytest.raises(NasError, match="must be a positive divisor"):
        Supernet("darts", C=6, layers=3, partial_channels=4)


def test_chain_space_is_refused_with_a_clear_error():
    with pytest.raises(NasError, match="DARTS searches cell spaces"):
        Supernet("mobile", C=4, layers=3)
    with pytest.raises(NasError, match="cell spaces.*mobile.*chain"):
        search_darts("mobile", "digits", config=tiny(), progress=False, plots=False)


# -- architecture steps ---------------------------------------------------------------------------
@pytest.mark.parametrize("order", [1, 2])
def test_both_orders_move_the_architecture_weights_and_leave_weights_to_the_weight_step(order):
    torch.manual_seed(0)
    net = Supernet("nb201", C=4, layers=3)
    w_opt = torch.optim.SGD(net.weight_parameters(), lr=0.025, momentum=0.9)
    architect = Architect(net, order=order)
    (x, y), (xv, yv) = batch(seed=1), batch(seed=2)
    alphas = [a.detach().clone() for a in net.arch_parameters()]
    weights = [p.detach().clone() for p in net.weight_parameters()]
    architect.step(x, y, xv, yv, w_lr=0.025, w_optimizer=w_opt)
    assert any(not torch.equal(a, b) for a, b in zip(net.arch_parameters(), alphas))
    # the unrolled step and the finite differences restore the weights exactly
    assert all(torch.equal(p, w) for p, w in zip(net.weight_parameters(), weights))
    train_step(net, architect, w_opt, x, y, xv, yv, lr=0.025, grad_clip=5.0)
    assert any(not torch.equal(p, w) for p, w in zip(net.weight_parameters(), weights))
    assert all(a.requires_grad for a in net.arch_parameters())


def test_second_order_hessian_vector_product_matches_autograd():
    torch.manual_seed(0)
    net = Supernet("nb201", C=4, layers=3).double()
    architect = Architect(net, order=2)
    x, y = batch(4, seed=3)
    x = x.double()
    weights = [p for p in net.weight_parameters()]
    vector = [torch.randn_like(p) for p in weights]
    original = [p.detach().clone() for p in weights]
    # r = 1e-4 rather than the paper's 0.01: a random direction through a network this small
    # is far from linear at 0.01, and the point here is the arithmetic of the product
    approx = architect._hessian_vector_product(weights, original, vector, x, y, r=1e-4)
    assert all(torch.equal(p, w) for p, w in zip(weights, original))
    loss = torch.nn.functional.cross_entropy(net(x), y)
    grads = torch.autograd.grad(loss, weights, create_graph=True)
    exact = torch.autograd.grad(sum((g * v).sum() for g, v in zip(grads, vector)), net.arch_parameters())
    a, e = torch.cat([t.flatten() for t in approx]), torch.cat([t.flatten() for t in exact])
    assert torch.nn.functional.cosine_similarity(a, e, dim=0) > 0.999
    assert float((a - e).norm() / e.norm()) < 0.05


def test_second_order_differs_from_first_order():
    (x, y), (xv, yv) = batch(seed=1), batch(seed=2)
    grads = {}
    for order in (1, 2):
        torch.manual_seed(0)
        net = Supernet("nb201", C=4, layers=3)
        w_opt = torch.optim.SGD(net.weight_parameters(), lr=0.025, momentum=0.9)
        Architect(net, order=order).step(x, y, xv, yv, w_lr=0.5, w_optimizer=w_opt)
        grads[order] = torch.cat([a.grad.flatten() for a in net.arch_parameters()])
    assert not torch.allclose(grads[1], grads[2])


# -- derivation ----------------------------------------------------------------------------------
def test_topk_derivation_ignores_none_and_keeps_the_strongest_edges():
    space = load_space("darts")
    ops = list(space.ops)
    w = torch.full((14, 8), 0.1)
    w[:, ops.index("none")] = 0.9  # `none` strongest everywhere: must not decide anything
    w[0, ops.index("sep_conv_3x3")] = 0.5  # node 2: edges 0>2 and 1>2
    w[1, ops.index("max_pool_3x3")] = 0.3
    w[2 + 2, ops.index("dil_conv_5x5")] = 0.6  # node 3 reads 0, 1, 2: edge 2>3 strongest
    w[2 + 0, ops.index("skip_connect")] = 0.4
    genotype = derive_genotype(space, {"normal": w, "reduction": w})
    nodes = genotype.cell("normal").nodes
    assert nodes[0] == (("sep_conv_3x3", 0), ("max_pool_3x3", 1))
    assert nodes[1] == (("dil_conv_5x5", 2), ("skip_connect", 0))
    assert all(op != "none" for node in nodes for op, _ in node)


def test_dense_derivation_keeps_every_edge_and_may_pick_none():
    space = load_space("nb201")
    w = torch.zeros(6, 5)
    w[:, space.ops.index("nor_conv_1x1")] = 0.5
    w[5, space.ops.index("none")] = 0.9  # edge 2>3
    nodes = derive_genotype(space, {"normal": w}).cell("normal").nodes
    assert [len(n) for n in nodes] == [1, 2, 3]
    assert nodes[2][2] == ("none", 2)
    assert nodes[0][0] == ("nor_conv_1x1", 0)


# -- search runs ---------------------------------------------------------------------------------
@pytest.mark.parametrize("space", ["darts", "lecture", "nb201"])
def test_tiny_search_end_to_end(space, tmp_path):
    plots = space == "darts"  # drawing takes longer than the search itself: once is enough
    result = search_darts(space, "digits", config=tiny(epochs=2), out=tmp_path / "run", progress=False, plots=plots)
    result.genotype.validate(space)
    run = result.path
    assert resolve_genotype(str(run)) == result.genotype  # what `nas train --genotype RUN` reads
    files = ["checkpoints/last.pt", "result.json", "alphas/epoch_001.json", "alphas/epoch_002.json"]
    for name in files + (["genotype.png", "alphas.png", "alpha_history.png"] if plots else []):
        assert (run / name).is_file(), name
    assert any((run / "tensorboard").iterdir())
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    assert {"train_loss", "train_acc", "val_loss", "val_acc", "genotype"} <= set(records[0])
    per_epoch = [json.loads(line) for line in (run / "genotypes.jsonl").read_text().splitlines()]
    assert len(per_epoch) == 2
    alphas = json.loads((run / "alphas/epoch_002.json").read_text())
    assert torch.allclose(torch.tensor(alphas["weights"]["normal"]), result.alphas["normal"])


def test_single_op_spaces_give_that_op_everywhere(tmp_path):
    for ops, dense in ((["sep_conv_3x3"], False), (["nor_conv_3x3"], True)):
        space = write_space(tmp_path, f"only_{ops[0]}", ops, dense=dense)
        result = search_darts(space, "digits", config=tiny(), out=tmp_path / ops[0], progress=False, plots=False)
        edges = [edge for _, cell in result.genotype.cells for node in cell.nodes for edge in node]
        assert edges and {op for op, _ in edges} == set(ops)


def test_same_seed_same_genotype(tmp_path):
    runs = [search_darts("darts", "digits", config=tiny(), seed=seed, out=tmp_path / f"r{i}",
                         progress=False, plots=False) for i, seed in enumerate((5, 5, 6))]
    assert runs[0].genotype == runs[1].genotype
    assert all(torch.equal(runs[0].alphas[k], runs[1].alphas[k]) for k in runs[0].alphas)
    assert not torch.equal(runs[0].alphas["normal"], runs[2].alphas["normal"])


def test_resume_after_interruption_matches_an_uninterrupted_run(tmp_path):
    config = tiny(epochs=2, max_steps=2, order=2)
    whole = search_darts("nb201", "digits", config=config, out=tmp_path / "whole", progress=False, plots=False)

    class Interrupted(Exception):
        pass

    def stop_after_first(epoch, metrics):
        if epoch == 1:
            raise Interrupted

    with pytest.raises(Interrupted):
        search_darts("nb201", "digits", config=config, out=tmp_path / "cut", progress=False, plots=False,
                     report=stop_after_first)
    assert not (tmp_path / "cut" / "genotype.json").exists()
    resumed = search_darts(resume=tmp_path / "cut", progress=False, plots=False)
    assert resumed.epochs == 2
    assert resumed.genotype == whole.genotype
    assert all(torch.equal(resumed.alphas[k], whole.alphas[k]) for k in whole.alphas)
    assert [r["epoch"] for r in resumed.metrics] == [1, 2]
    assert resumed.metrics[1]["train_loss"] == pytest.approx(whole.metrics[1]["train_loss"])


def test_partial_channels_search_derives_a_valid_genotype(tmp_path):
    result = search_darts("darts", "digits", config=tiny(partial_channels=2), out=tmp_path / "pc", progress=False,
                          plots=False)
    result.genotype.validate("darts")
    assert result.edge_weights is not None and set(result.edge_weights) == {"normal", "reduction"}
    saved = json.loads((result.path / "alphas/epoch_001.json").read_text())
    assert saved["betas"] is not None and saved["edge_weights"] is not None


def test_collapse_remedies(tmp_path):
    aux = search_darts("nb201", "digits", config=tiny(epochs=2, max_steps=2, collapse_remedy="aux-skip"),
                       out=tmp_path / "aux", progress=False,
                       plots=False)
    betas = [r["aux_skip_beta"] for r in aux.metrics]
    assert 0 < betas[1] < betas[0] <= 1  # decays linearly over the search
    # early stop (DARTS+) as soon as the normal cell holds max_skips skip connections
    space = write_space(tmp_path, "skips", ["skip_connect"], dense=False)
    stopped = search_darts(space, "digits", config=tiny(epochs=3, collapse_remedy="early-stop", max_skips=2),
                           out=tmp_path / "stop", progress=False, plots=False)
    assert stopped.stopped_early and stopped.epochs == 1
    assert json.loads((stopped.path / "result.json").read_text())["stopped_early"] is True


def test_config_errors_say_what_to_change(tmp_path):
    with pytest.raises(NasError, match="partial channels K=3 must divide init channels 8"):
        check(DartsConfig(partial_channels=3))
    with pytest.raises(NasError, match="order: 3 is not one of 1, 2"):
        check(DartsConfig(order=3))
    with pytest.raises(NasError, match="collapse_remedy: 'fair' is not one of aux-skip, early-stop, none"):
        check(DartsConfig(collapse_remedy="fair"))
    (tmp_path / "config.json").write_text('{"kind": "random", "strategy": "random"}')
    with pytest.raises(NasError, match="not a DARTS search run"):
        search_darts(resume=tmp_path, progress=False, plots=False)


def test_command_line(tmp_path, capsys):
    out = tmp_path / "cli"
    rc = main(["search", "--strategy", "darts", "--space", "nb201", "--epochs", "1", "--max-steps", "1",
               "--init-channels", "4", "--layers", "3", "--image-size", "8", "--batch-size", "16", "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert f"next: nas train --genotype {out}" in printed
    assert (out / "genotype.json").is_file()
    rc = main(["search", "--strategy", "darts", "--space", "mobile", "--out", str(tmp_path / "chain")])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "cell spaces" in err


# -- convergence criterion -------------------------------------------------------------------------
def _weights_with(space, choice: dict[int, tuple[str, float]], default_op: str, default_weight: float):
    """Per cell type, [edges, ops] softmax weights: op ``default_op`` holds ``default_weight``
    on every edge (the rest shared equally), except the edges in ``choice``."""
    ops = list(space.ops)
    rows = []
    for e in range(edges_per_cell(space)):
        op, weight = choice.get(e, (default_op, default_weight))
        row = torch.full((len(ops),), (1 - weight) / (len(ops) - 1))
        row[ops.index(op)] = weight
        rows.append(row)
    w = torch.stack(rows)
    return {t: w.clone() for t in space.cell_types}


def test_decisiveness_counts_derived_edges_at_twice_uniform_weight():
    from nas.strategies.oneshot.derive import decisiveness

    space = load_space("darts")  # 8 ops: twice uniform is 0.25
    strong = _weights_with(space, {}, "sep_conv_3x3", 0.25)
    d = decisiveness(space, strong, derive_genotype(space, strong))
    assert (d.edges, d.decisive, d.threshold, d.parameter_free) == (16, 16, 0.25, 0)
    assert d.converged and d.verdict().startswith("architecture weights decisive")

    near_uniform = _weights_with(space, {}, "sep_conv_3x3", 0.126)
    d = decisiveness(space, near_uniform, derive_genotype(space, near_uniform))
    assert d.decisive == 0 and not d.converged and "NOT decisive" in d.verdict()

    # node 0 reads edges 0 and 1, node 1 edges 2-4: make both of node 0's edges weak
    weak_node = _weights_with(space, {0: ("sep_conv_3x3", 0.2), 1: ("sep_conv_3x3", 0.2)}, "sep_conv_3x3", 0.5)
    d = decisiveness(space, weak_node, derive_genotype(space, weak_node))
    assert (d.decisive, d.edges) == (12, 16) and d.share == 0.75 and not d.converged  # per cell type: 2 weak


def test_decisiveness_refuses_a_parameter_free_normal_cell():
    from nas.strategies.oneshot.derive import decisiveness

    space = load_space("darts")
    pools = _weights_with(space, {}, "max_pool_3x3", 0.6)
    d = decisiveness(space, pools, derive_genotype(space, pools))
    assert d.share == 1.0 and d.parameter_free == d.normal_ops == 8 and not d.converged
    half = _weights_with(space, {e: ("max_pool_3x3", 0.6) for e in (0, 1, 2, 3)}, "dil_conv_3x3", 0.6)
    genotype = derive_genotype(space, half)
    d = decisiveness(space, half, genotype)
    assert d.parameter_free * 2 <= d.normal_ops and d.converged


def test_recomputation_by_default_only_for_large_full_supernets():
    assert not DartsConfig().uses_recompute(16)  # the digits demo: small, kept
    assert DartsConfig(init_channels=16).uses_recompute(32)  # the paper's search
    assert not DartsConfig(init_channels=16, partial_channels=4).uses_recompute(32)
    assert DartsConfig(recompute=True).uses_recompute(8) and not DartsConfig(init_channels=16, recompute=False
                                                                              ).uses_recompute(32)


def test_resume_takes_a_checkpoint_with_edge_batchnorm_statistics(tmp_path):
    """Checkpoints written before edges dropped their BatchNorm running statistics still load."""
    from nas.strategies.oneshot.search import _restore, load_search_checkpoint

    result = search_darts("darts", "digits", config=tiny(), out=tmp_path / "run", progress=False, plots=False)
    path = result.path / "checkpoints" / "last.pt"
    state = load_search_checkpoint(path)
    model = Supernet("darts", C=4, layers=3)
    edge_bn = "cells.0.edges.0.ops.4.3"  # sep_conv_3x3's inner BatchNorm of the first edge
    assert f"{edge_bn}.running_mean" not in model.state_dict()
    state["model"] = {**state["model"], f"{edge_bn}.running_mean": torch.zeros(4),
                      f"{edge_bn}.running_var": torch.ones(4), f"{edge_bn}.num_batches_tracked": torch.tensor(5)}
    w_opt = torch.optim.SGD(model.weight_parameters(), lr=0.1, momentum=0.9)
    a_opt = torch.optim.Adam(model.arch_parameters())
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(w_opt, T_max=1)
    epoch, _, _ = _restore(path, state, model, w_opt, a_opt, scheduler)
    assert epoch == 1
    assert torch.equal(model.alphas["normal"].detach(), state["model"]["alphas.normal"])
