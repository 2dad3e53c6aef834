"""One-shot search on several processes: torchrun (gloo, on the CPU) and Ray Train."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nas.cli import main

REPO = Path(__file__).resolve().parent.parent
WORKER = REPO / "tests" / "distributed_search.py"
TINY = ["--space", "nb201", "--init-channels", "4", "--layers", "3", "--max-steps", "2"]


def _torchrun(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           *args], capture_output=True, text=True, timeout=timeout, cwd=REPO,
                          check=False, env={**os.environ, **(env or {})})


def _nas(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nas", *args], capture_output=True, text=True, timeout=timeout,
                          cwd=REPO, check=False, env={**os.environ, **(env or {})})


def _state(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoints" / "last.pt", weights_only=True)["model"]


def test_two_processes_search_what_one_searches_at_twice_the_batch(tmp_path: Path) -> None:
    """DARTS (first and second order), PC-DARTS and GDAS in float64: 2 ranks at batch 8 end where
    1 process at batch 16 ends (weights, architecture parameters, BatchNorm running statistics),
    and the ranks' architecture parameters agree in every bit after every step (also with
    --no-sync-batch-norm, whose search differs from one process's)."""
    two = _torchrun(str(WORKER), str(tmp_path / "two"), "--batch", "8")
    assert two.returncode == 0, two.stderr[-3000:]
    one = subprocess.run([sys.executable, str(WORKER), str(tmp_path / "one"), "--batch", "16"], capture_output=True,
                         text=True, timeout=300, cwd=REPO, check=False)
    assert one.returncode == 0, one.stderr[-3000:]
    checks = json.loads((tmp_path / "two" / "checks.json").read_text())
    assert checks["checked"] == 5 * 2 * 4 and checks["differing"] == 0  # 5 cases x 2 epochs x 4 steps
    for case in ("darts", "darts-order2", "pc-darts", "gdas"):
        config = json.loads((tmp_path / "two" / case / "config.json").read_text())
        assert (config["world_size"], config["batch_per_rank"], config["global_batch"]) == (2, 8, 16)
        a, b = _state(tmp_path / "one" / case), _state(tmp_path / "two" / case)
        assert a.keys() == b.keys()
        for key in a:
            if a[key].is_floating_point():
                assert a[key].dtype == torch.float64
                assert torch.allclose(a[key], b[key], rtol=0, atol=1e-4), (case, key)
        assert not torch.equal(a["alphas.normal"], torch.zeros_like(a["alphas.normal"]))  # they did move
        genotypes = [(tmp_path / run / case / "genotype.json").read_text() for run in ("one", "two")]
        assert genotypes[0] == genotypes[1]
    # with --no-sync-batch-norm each rank normalises by its own 8 images: another search
    a, b = _state(tmp_path / "one" / "darts-local-bn"), _state(tmp_path / "two" / "darts-local-bn")
    assert (a["alphas.normal"] - b["alphas.normal"]).abs().max() > 1e-6


@pytest.mark.slow  # about 1 min on 2 cores
def test_torchrun_search_resumes_on_as_many_processes_only(tmp_path: Path) -> None:
    run = tmp_path / "run"
    killed = _torchrun("-m", "nas", "search", *TINY, "--epochs", "2", "--out", str(run),
                       env={"NAS_KILL_AT": "darts.after_checkpoint"})  # rank 0, after epoch 1's checkpoint
    assert killed.returncode != 0
    assert [r["epoch"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())] == [1]
    assert not (run / "result.json").exists()

    alone = _nas("search", "--resume", str(run))
    assert alone.returncode == 2
    assert alone.stderr.strip().splitlines() == [(
        f"nas search: error: {run} was searched on 2 process(es), this is 1: each process's share of every batch "
        "depends on it; resume it on 2 processes (torchrun --nproc_per_node 2, or nodes x processes per node making "
        "2)")]

    resumed = _torchrun("-m", "nas", "search", "--resume", str(run))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming {run} after epoch 1/2" in resumed.stdout
    assert resumed.stdout.count("next: nas train --genotype") == 1  # rank 0 alone speaks
    assert [r["epoch"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())] == [1, 2]
    assert json.loads((run / "result.json").read_text())["epochs"] == 2

    single = tmp_path / "single"
    assert _nas("search", *TINY, "--epochs", "1", "--out", str(single)).returncode == 0
    refused = _torchrun("-m", "nas", "search", "--resume", str(single))
    assert refused.returncode != 0
    # the error is rank 0's, printed once although both ranks stop on it
    assert refused.stderr.count(f"{single} was searched on 1 process(es), this is 2") == 1
    assert "resume it without torchrun" in refused.stderr


@pytest.mark.parametrize("argv, message", [
    (["--strategy", "random", "--evaluator", "nb201"], "torchrun runs the one-shot strategies"),
    (["--backend", "ray"], "--backend ray starts its own worker processes; run it without torchrun"),
])
def test_what_torchrun_cannot_run_is_refused_before_it_starts(argv, message, monkeypatch, capsys,
                                                              tmp_path: Path) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["search", *argv, "--out", str(tmp_path / "run")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.slow  # about 1.5 min on 2 cores
def test_ray_train_search_restarts_failed_workers_after_their_last_epoch(tmp_path: Path) -> None:
    """Two CPU workers on a local Ray, both killed after reporting epoch 2: Ray Train restarts
    them and the search goes on after epoch 2."""
    run = tmp_path / "run"
    done = _nas("search", *TINY, "--epochs", "3", "--backend", "ray", "--workers", "2", "--out", str(run),
                env={"NAS_KILL_AT": "ray_train.after_report@2", "RAY_ADDRESS": ""}, timeout=600)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert f"resuming {run} after epoch 2/3" in output
    config = json.loads((run / "config.json").read_text())
    assert (config["world_size"], config["darts"]["backend"], config["darts"]["workers"]) == (2, "ray", 2)
    assert [r["epoch"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())] == [1, 2, 3]
    assert json.loads((run / "result.json").read_text())["epochs"] == 3
    assert (run / "genotype.png").is_file()
    reported = {p.name: p for p in (run / "ray").rglob("epoch_*") if p.is_dir()}
    assert torch.load(reported["epoch_003"] / "last.pt", weights_only=True)["epoch"] == 3
    assert done.stdout.count("next: nas train --genotype") == 1


def test_a_restarted_ray_train_search_takes_the_newer_checkpoint(tmp_path: Path) -> None:
    from nas.strategies.oneshot.ray_train import _take_newer

    reported, own = tmp_path / "reported.pt", tmp_path / "run" / "checkpoints" / "last.pt"
    torch.save({"epoch": 2}, reported)
    _take_newer(reported, own)  # the run folder has none yet
    assert torch.load(own, weights_only=True)["epoch"] == 2
    torch.save({"epoch": 3}, own)
    _take_newer(reported, own)  # the folder's own is newer: kept
    assert torch.load(own, weights_only=True)["epoch"] == 3
    torch.save({"epoch": 1}, own)
    _take_newer(reported, own)
    assert torch.load(own, weights_only=True)["epoch"] == 2


@pytest.mark.parametrize("workers, threads, gpu, message", [
    (3, 1, False, "3 workers of 1 CPU thread(s) need 3 CPUs; the Ray cluster has 2"),
    (2, 2, False, "2 workers of 2 CPU thread(s) need 4 CPUs"),
    (2, 1, True, "--use-gpu gives each of 2 workers a GPU; the Ray cluster has 1"),
])
def test_ray_train_workers_the_cluster_cannot_hold_are_refused(workers, threads, gpu, message) -> None:
    from nas.errors import NasError
    from nas.strategies.oneshot.ray_train import _check_resources
    from nas.strategies.oneshot.settings import DartsConfig

    config = DartsConfig(backend="ray", workers=workers, threads=threads, use_gpu=gpu)
    with pytest.raises(NasError, match=message.replace("(", r"\(").replace(")", r"\)")):
        _check_resources({"CPU": 2.0, "GPU": 1.0}, workers, config)
    _check_resources({"CPU": 8.0, "GPU": 8.0}, workers, config)  # room enough: no error
