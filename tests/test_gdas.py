"""GDAS: one sampled op per edge, straight-through architecture gradients, the temperature
schedule, and search runs (run folder, resume, seeds, the command line) shared with DARTS.

Supernets and searches are tiny (C=4, 3 cells, 8x8 digits, 1-2 steps per epoch).
"""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from nas.cli import main
from nas.config import check
from nas.errors import NasError
from nas.genotype import resolve_genotype
from nas.strategies.oneshot.search import search_darts
from nas.strategies.oneshot.settings import GdasConfig
from nas.strategies.oneshot.supernet import MixedOp, Supernet

TINY = ["--epochs", "2", "--max-steps", "2", "--init-channels", "4", "--layers", "3", "--image-size", "8",
        "--batch-size", "16"]


def tiny(**changes) -> GdasConfig:
    settings = dict(epochs=2, batch_size=16, init_channels=4, layers=3, image_size=8, max_steps=2)
    settings.update(changes)
    return GdasConfig(**settings)


def batch(n: int = 8, size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 3, size, size, generator=g), torch.randint(0, 10, (n,), generator=g)


def count_op_calls(net: Supernet) -> dict[MixedOp, list[int]]:
    """Per mixed op, which candidate ops ran (1) since the counts were last zeroed: hooks on
    every module of each op (the mixed op runs an op's parts, its shared ReLU aside)."""
    calls: dict[MixedOp, list[int]] = {}
    for module in net.modules():
        if isinstance(module, MixedOp):
            counts = calls[module] = [0] * len(module.ops)
            for i, op in enumerate(module.ops):
                for part in op.modules():
                    part.register_forward_hook(lambda *_, counts=counts, i=i: counts.__setitem__(i, 1))
    return calls


# -- the sampled forward pass --------------------------------------------------------------------
@pytest.mark.parametrize("space", ["darts", "nb201"])
@pytest.mark.parametrize("partial_channels", [1, 2])
def test_sampled_forward_runs_exactly_one_op_per_edge(space, partial_channels):
    torch.manual_seed(0)
    net = Supernet(space, C=4, layers=3, partial_channels=partial_channels)
    calls = count_op_calls(net)
    x, _ = batch()
    net.tau, net.generator = 1.0, torch.Generator().manual_seed(0)
    assert net(x).shape == (8, 10)
    assert all(sum(c) == 1 for c in calls.values())  # so the hooks see each op that runs
    # the op that ran is the sampled one (the same generator state draws the same sample)
    _, indices = net.sample_weights(1.0, torch.Generator().manual_seed(0))
    for cell in net.cells:
        for e, edge in enumerate(getattr(cell, "edges", [])):
            assert calls[edge][indices[cell.cell_type][e]] == 1


def test_hard_weights_are_one_hot_and_all_logits_of_an_edge_get_gradient():
    torch.manual_seed(0)
    net = Supernet("darts", C=4, layers=3)
    tau = 2.0
    weights, indices = net.sample_weights(tau, torch.Generator().manual_seed(3))
    for t, w in weights.items():  # one-hot in value: (1 - p) + p may round, 0 - p + p does not
        hard = F.one_hot(torch.tensor(indices[t]), w.shape[1]).float()
        assert torch.equal(w.detach() * (1 - hard), torch.zeros_like(w))
        assert torch.allclose(w.detach(), hard, rtol=0, atol=1e-6)
    net.tau, net.generator = tau, torch.Generator().manual_seed(3)
    x, y = batch()
    F.cross_entropy(net(x), y).backward()
    none = net.space.ops.index("none")
    for t, a in net.alphas.items():
        for e, (grad, index) in enumerate(zip(a.grad, indices[t])):
            if index == none:  # a zero output: its weight has no effect, nor a gradient
                assert torch.count_nonzero(grad) == 0
                continue
            # through the soft sample p: d p_i / d alpha_j = p_i (delta_ij - p_j) / tau, so every
            # logit of the edge moves, the sampled one against the others, and the row sums to 0
            assert torch.count_nonzero(grad) == len(grad), (t, e)
            others = torch.cat([grad[:index], grad[index + 1:]])
            assert bool((torch.sign(others) == -torch.sign(grad[index])).all())
            assert abs(float(grad.sum())) < 1e-6 * float(grad.abs().sum()) + 1e-12


def test_the_weight_step_samples_without_architecture_gradients():
    from nas.strategies.oneshot.architect import Architect
    from nas.strategies.oneshot.search import train_step

    torch.manual_seed(0)
    net = Supernet("nb201", C=4, layers=3)
    net.tau, net.generator = 1.0, torch.Generator().manual_seed(0)
    w_opt = torch.optim.SGD(net.weight_parameters(), lr=0.025, momentum=0.9)
    architect = Architect(net, order=1, lr=0.1)
    before = {t: a.detach().clone() for t, a in net.alphas.items()}
    x, y = batch()
    train_step(net, architect, w_opt, x, y, x, y, lr=0.025, grad_clip=5.0)
    assert any(not torch.equal(before[t], a) for t, a in net.alphas.items())


# -- settings --------------------------------------------------------------------------------------
def test_temperature_anneals_linearly_from_tau_max_to_tau_min():
    config = GdasConfig(epochs=5)
    taus = [config.temperature(epoch) for epoch in range(5)]
    assert taus[0] == 10.0 and taus[-1] == 0.1
    steps = [a - b for a, b in zip(taus, taus[1:])]
    assert all(s == pytest.approx(steps[0]) and s > 0 for s in steps)
    assert GdasConfig(epochs=1).temperature(0) == 10.0


def test_gdas_settings_errors_say_what_to_change():
    with pytest.raises(NasError, match="first-order"):
        check(GdasConfig(order=2))
    with pytest.raises(NasError, match="--tau-min .* must not exceed"):
        check(GdasConfig(tau_min=2.0, tau_max=1.0))
    with pytest.raises(NasError, match="tau_max"):
        check(GdasConfig(tau_max=0.0))


# -- search runs -----------------------------------------------------------------------------------
def test_search_records_the_temperature_and_same_seed_gives_the_same_search(tmp_path):
    runs = [search_darts("darts", "digits", config=tiny(), seed=seed, out=tmp_path / f"r{i}", progress=False,
                         plots=False) for i, seed in enumerate((5, 5, 6))]
    assert [r["tau"] for r in runs[0].metrics] == [10.0, 0.1]
    assert runs[0].genotype == runs[1].genotype
    assert all(torch.equal(runs[0].alphas[k], runs[1].alphas[k]) for k in runs[0].alphas)
    assert not torch.equal(runs[0].alphas["normal"], runs[2].alphas["normal"])
    config = json.loads((runs[0].path / "config.json").read_text())
    assert config["strategy"] == "gdas" and config["gdas"]["tau_max"] == 10.0


def test_command_line_run_folder_and_resume_match_an_uninterrupted_run(tmp_path, capsys):
    whole = tmp_path / "whole"
    assert main(["search", "--strategy", "gdas", "--space", "darts", *TINY, "--tau-max", "5",
                 "--out", str(whole)]) == 0
    assert f"next: nas train --genotype {whole}" in capsys.readouterr().out
    for name in ("config.json", "genotype.json", "genotype.png", "alphas.png", "alpha_history.png", "metrics.jsonl",
                 "genotypes.jsonl", "result.json", "checkpoints/last.pt", "alphas/epoch_002.json"):
        assert (whole / name).is_file(), name
    assert any((whole / "tensorboard").iterdir())
    records = [json.loads(line) for line in (whole / "metrics.jsonl").read_text().splitlines()]
    assert [r["tau"] for r in records] == [5.0, 0.1]
    resolve_genotype(str(whole)).validate("darts")

    class Stop(Exception):
        pass

    def stop_after_first(epoch, metrics):
        if epoch == 1:
            raise Stop

    with pytest.raises(Stop):
        search_darts("darts", "digits", config=tiny(tau_max=5.0), out=tmp_path / "cut", progress=False,
                     plots=False, report=stop_after_first)
    state = torch.load(tmp_path / "cut/checkpoints/last.pt", weights_only=True)
    assert state["epoch"] == 1 and state["sampler"]["tau"] == 5.0
    assert main(["search", "--resume", str(tmp_path / "cut")]) == 0
    assert resolve_genotype(str(tmp_path / "cut")) == resolve_genotype(str(whole))
    cut, full = (json.loads((run / "alphas/epoch_002.json").read_text())["alphas"] for run in (tmp_path / "cut", whole))
    assert cut == full
    resumed = [json.loads(line) for line in (tmp_path / "cut/metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in resumed] == [1, 2]
    assert resumed[1]["train_loss"] == pytest.approx(records[1]["train_loss"])


def test_command_line_refuses_mixed_strategies(tmp_path, capsys):
    assert main(["search", "--strategy", "darts", "--tau-max", "5", "--out", str(tmp_path / "a")]) == 2
    assert "--tau-max is a setting of --strategy gdas, not darts" in capsys.readouterr().err
    assert main(["search", "--strategy", "gdas", "--order", "2", "--out", str(tmp_path / "b")]) == 2
    assert "first-order" in capsys.readouterr().err
    darts = tmp_path / "darts"
    assert main(["search", "--strategy", "darts", "--space", "nb201", "--epochs", "1", "--max-steps", "1",
                 "--init-channels", "4", "--layers", "3", "--image-size", "8", "--batch-size", "16",
                 "--out", str(darts)]) == 0
    capsys.readouterr()
    assert main(["search", "--strategy", "gdas", "--resume", str(darts)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "is a darts search, not gdas" in err
