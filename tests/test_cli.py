from __future__ import annotations

import json
import subprocess
import sys

import pytest

from nas.cli import main


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
def test_user_mistakes_end_in_one_line(args, message, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_the_nas_command_exits_2_with_one_line(tmp_path):
    # the installed entry point: exit code and stderr of a real process, once
    result = run_cli("search", "--strategy", "nope")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == ("nas search: error: --strategy: unknown value 'nope'; choose from darts, evolution, "
                             "gdas, local, nsga2, random, tpe\n")


# -- nas search ------------------------------------------------------------------------------------
def test_search_help_loads_no_torch_optuna_or_ray():
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "nas", "search", "--help"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "--strategy" in result.stdout
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if "|" in line}
    assert not {name.split(".")[0] for name in imported} & {"torch", "torchvision", "optuna", "ray"}


def test_search_usage_errors_stay_short(tmp_path, capsys):
    assert main(["search", "--strategy", "random", "--trial-setting", "lr=fast", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "--trial-setting lr='fast': expected float (lr takes a number, got 'fast')" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "r").exists()
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "config.json").write_text('{"kind": "train"}')
    assert main(["search", "--resume", str(tmp_path / "train")]) == 2
    assert "is a 'train' run, not a `nas search` run" in capsys.readouterr().err


def test_a_search_of_no_trials_is_refused_before_its_run_folder(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["search", "--strategy", "random", "--trials", "0", "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip() == "nas search: error: --trials: must be at least 1, got 0"
    assert not out.exists()


def test_out_that_is_a_file_and_seeds_out_of_range_are_one_line_errors(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("mine")
    assert main(["train", "--genotype", "NB201_RESNET", "--out", str(afile)]) == 2
    assert capsys.readouterr().err.strip() == \
        f"nas train: error: --out {afile} is a file, not a folder; choose another --out"
    assert afile.read_text() == "mine"
    assert main(["train", "--genotype", "NB201_RESNET", "--seed", "-1", "--out", str(tmp_path / "a")]) == 2
    assert "--seed: must be in [0, 4294967295], got -1" in capsys.readouterr().err
    assert main(["search", "--strategy", "darts", "--seed", "4294967296", "--out", str(tmp_path / "b")]) == 2
    assert "--seed: must be in [0, 4294967295], got 4294967296" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
