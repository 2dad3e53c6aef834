from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from nas.cli import main
from nas.config import setting, to_dict
from nas.genotype import Genotype, random_genotype, resolve_genotype
from nas.run import Run
from nas.space import load_space
from nas.strategies import Strategy, get_strategy, register_strategy


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nas", *args], capture_output=True, text=True, timeout=300)


def test_build_prints_measurements_and_writes_the_diagram(tmp_path, capsys):
    plot = tmp_path / "cell.png"
    assert main(["build", "--genotype", "NB201_RESNET", "--init-channels", "4", "--plot", str(plot), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["params"] > 0 and stats["macs"] > 0 and stats["latency_ms"] > 0
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_ops_lists_every_op(capsys):
    from nas.ops import list_ops

    assert main(["ops", "--channels", "4", "--size", "8"]) == 0
    out = capsys.readouterr().out
    for name in list_ops():
        assert name in out


@pytest.mark.parametrize("args, message", [
    (["build", "--genotype", "NOPE"], "unknown genotype 'NOPE'"),
    (["build", "--genotype", "DARTS_V2", "--space", "nb201"], "genotype is for space 'darts', not 'nb201'"),
    (["build", "--genotype", "/no/such/genotype.json"], "not found"),
    (["build", "--genotype", "DARTS_V2", "--space", "/no/such/space.yaml"], "not found"),
])
def test_user_mistakes_end_in_one_line(args, message):
    result = run_cli(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


# -- nas search ------------------------------------------------------------------------------------
@dataclass
class ToySettings:
    toy_samples: int = setting(3, "random genotypes to draw; the search keeps the last", min=1)


@dataclass
class ToyResult:
    path: Path
    genotype: Genotype


@register_strategy
class Toy(Strategy):
    """Draws random genotypes: a strategy registered from outside the package."""

    name = "toy"
    kind = "oneshot"
    Settings = ToySettings
    description = "random genotypes, for the tests"

    def search(self, space, settings, *, evaluator=None, data=None, out=None, resume=None, seed=0, progress=True):
        if resume is not None:
            run = Run.open(resume)
            genotype = Genotype.load(run.path / "genotype.json")
            run.write_json("config.json", {**run.config, "resumed": run.config.get("resumed", 0) + 1})
            return ToyResult(run.path, genotype)
        space = load_space(space)
        run = Run.create("toy", {"strategy": self.name, "space": space.name, "seed": seed,
                                 "settings": to_dict(settings)}, out=out, name=space.name)
        for i in range(settings.toy_samples):
            genotype = random_genotype(space, seed=seed + i)
        genotype.save(run.path / "genotype.json")
        run.close()
        return ToyResult(run.path, genotype)


def test_a_strategy_registered_in_a_test_runs_through_the_api_and_nas_search(tmp_path, capsys):
    result = get_strategy("toy").search("nb201", ToySettings(toy_samples=2), out=tmp_path / "api")
    assert result.genotype == random_genotype(load_space("nb201"), seed=1)

    out = tmp_path / "cli"
    assert main(["search", "--strategy", "toy", "--space", "nb201", "--toy-samples", "4", "--seed", "3",
                 "--out", str(out)]) == 0
    assert f"next: nas train --genotype {out}" in capsys.readouterr().out
    assert resolve_genotype(str(out)) == random_genotype(load_space("nb201"), seed=6)
    assert json.loads((out / "config.json").read_text())["settings"] == {"toy_samples": 4}
    # --resume finds the strategy in the run's config.json
    assert main(["search", "--resume", str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["resumed"] == 1

    with pytest.raises(SystemExit):
        main(["search", "--help"])
    assert "--toy-samples TOY_SAMPLES" in capsys.readouterr().out
    assert main(["search", "--strategy", "toy", "--toy-samples", "0"]) == 2
    assert capsys.readouterr().err.strip() == "nas search: error: --toy-samples: toy_samples must be at least 1, got 0"


def test_search_help_loads_no_torch_optuna_or_ray():
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "nas", "search", "--help"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "--strategy" in result.stdout
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if "|" in line}
    assert not {name.split(".")[0] for name in imported} & {"torch", "torchvision", "optuna", "ray"}


def test_search_usage_errors_stay_short(tmp_path):
    result = run_cli("search", "--strategy", "nope")
    assert result.returncode == 2
    assert "invalid choice: 'nope'" in result.stderr and len(result.stderr.strip().splitlines()) == 2
    result = run_cli("search", "--strategy", "random", "--trial-setting", "lr=fast", "--out", str(tmp_path / "r"))
    assert result.returncode == 2
    assert "--trial-setting lr='fast': expected float (lr takes a number, got 'fast')" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "r").exists()
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "config.json").write_text('{"kind": "train"}')
    result = run_cli("search", "--resume", str(tmp_path / "train"))
    assert result.returncode == 2 and "was not made by nas search (no known strategy in its config.json)" in \
        result.stderr
