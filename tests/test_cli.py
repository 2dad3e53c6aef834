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
def test_user_mistakes_end_in_one_line(args, message):
    result = run_cli(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
