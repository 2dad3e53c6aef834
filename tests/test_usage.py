"""Every usage mistake of the ``nas`` command: one line, exit code 2, the input named, nothing
created or changed. In one process (``nas.cli.main``), in a folder of earlier results that each
case must leave byte for byte as it was."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from nas.cli import Parser, _assemble, main
from nas.config import check_value, parse_number, parse_value
from nas.errors import NasError
from nas.genotype import get_reference
from nas.run import Run, allow_overwrite, check_destination, read_config
from nas.train.config import TrainConfig

TINY_TRAIN = ["--genotype", "NB201_RESNET", "--epochs", "1", "--max-train-batches", "1", "--init-channels", "4",
              "--layers", "5", "--image-size", "16", "--train-subset", "64", "--val-subset", "32", "--batch-size",
              "32", "--no-progress"]


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """Earlier results in the current folder: files and run folders, sound and damaged."""
    monkeypatch.chdir(tmp_path)
    Path("afile").write_text("mine")
    Path("full").mkdir()
    Path("full/keep.txt").write_text("keep")
    Path("cell.png").write_bytes(b"an earlier diagram")
    _run("trainrun", {"kind": "train"})  # names its kind, lacks every setting
    _run("darts-run", {"kind": "darts", "strategy": "darts"})
    Path("truncated").mkdir()
    Path("truncated/config.json").write_text('{"kind": "train", "mod')
    Path("listed").mkdir()
    Path("listed/config.json").write_text("[1, 2, 3]")
    Path("binary").mkdir()
    Path("binary/config.json").write_bytes(b"\x80\x81\xfe\xff" * 16)
    Path("nested").mkdir()
    Path("nested/config.json").write_text("[" * 100_000 + "]" * 100_000)
    _run("kindless", {"model": {}})
    # a trained run whose config.json lost its kind: exporting its genotype untrained would be wrong
    _run("retyped", {"kind": "tr@in"})
    get_reference("NB201_RESNET").save(Path("retyped/genotype.json"))
    Path("retyped/model.json").write_text("{}")
    _run("posing", {"kind": "random"})  # a search kind, but a trained run's files
    get_reference("NB201_RESNET").save(Path("posing/genotype.json"))
    Path("posing/model.json").write_text("{}")
    Path("exported").mkdir()  # an earlier export
    Path("exported/manifest.json").write_text('{"formats": {"source": {"file": "model.py"}}}')
    Path("exported/model.py").write_text("# an earlier export\n")
    return tmp_path


def _run(name: str, config: dict) -> None:
    Path(name).mkdir()
    Path(name, "config.json").write_text(json.dumps(config))


def _snapshot(root: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else None for p in sorted(root.rglob("*"))}


def refused(argv: list[str], capsys, root: Path, *named: str) -> str:
    """Run ``nas argv``: exit 2, one line on stderr naming ``named``, no traceback, no file
    created or changed under ``root``; returns the line."""
    before = _snapshot(root)
    code = main(argv)
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2, (argv, captured.err)
    assert len(lines) == 1 and lines[0].startswith("nas") and ": error: " in lines[0], captured.err
    assert "Traceback" not in captured.err
    for text in named:
        assert text in lines[0], (text, lines[0])
    assert _snapshot(root) == before, argv
    return lines[0]


# (argv, texts the one line must hold)
USAGE = [
    # unknown choices: the valid ones, never the usage block
    (["search", "--strategy", "x"], ["--strategy", "unknown value 'x'", "choose from darts, evolution, gdas, local, nsga2"]),
    (["search", "--nb201-dataset", "imagenet"], ["--nb201-dataset", "'imagenet'", "cifar10, cifar100"]),
    (["export", "DARTS_V2", "--checkpoint", "first"], ["--checkpoint", "'first'", "last, best"]),
    (["search", "--order", "3"], ["--order", "3 is not one of 1, 2"]),
    (["search", "--strategy", "random", "--backend", "dask"], ["--backend", "'dask' is not one of optuna, ray"]),
    (["train", "--genotype", "DARTS_V2", "--precision", "fp8"], ["--precision", "'fp8'"]),
    (["nope"], ["unknown command 'nope'", "train"]),
    ([], ["COMMAND"]),
    (["search", "--lr", "0.1"], ["nas search: error: unrecognized arguments: --lr 0.1"]),
    (["train", "--epochs"], ["nas train: error: --epochs: expected one argument"]),
    (["build", "--plot"], ["--plot: expected one argument"]),
    # numbers: type, range and finiteness from the settings' declarations
    (["train", "--genotype", "DARTS_V2", "--lr", "inf"], ["--lr", "finite", "inf"]),
    (["train", "--genotype", "DARTS_V2", "--lr", "nan"], ["--lr", "finite", "nan"]),
    (["train", "--genotype", "DARTS_V2", "--lr", "-0.1"], ["--lr", "positive"]),
    (["train", "--genotype", "DARTS_V2", "--lr", "0"], ["--lr", "positive"]),
    (["train", "--genotype", "DARTS_V2", "--lr", "fast"], ["--lr", "takes a number, got 'fast'"]),
    (["train", "--genotype", "DARTS_V2", "--epochs", "0"], ["--epochs", "at least 1, got 0"]),
    (["train", "--genotype", "DARTS_V2", "--epochs", "1.5"], ["--epochs", "integer", "'1.5'"]),
    (["train", "--genotype", "DARTS_V2", "--epochs", "1e3"], ["--epochs", "integer"]),
    (["train", "--genotype", "DARTS_V2", "--batch-size", "1"], ["--batch-size", "at least 2"]),
    (["train", "--genotype", "DARTS_V2", "--momentum", "1"], ["--momentum", "[0, 1)"]),
    (["train", "--genotype", "DARTS_V2", "--drop-path=-inf"], ["--drop-path", "finite"]),
    (["train", "--genotype", "DARTS_V2", "--drop-path", "-inf"], ["--drop-path: expected one argument"]),
    (["train", "--genotype", "DARTS_V2", "--init-channels", "0"], ["--init-channels", "at least 1"]),
    (["train", "--genotype", "DARTS_V2", "--layers", "2"], ["--layers", "at least 3"]),
    (["train", "--genotype", "DARTS_V2", "--val-fraction", "1"], ["--val-fraction", "[0, 1)"]),
    (["train", "--genotype", "DARTS_V2", "--seed", "-1"], ["--seed", "[0, 4294967295]"]),
    (["train", "--genotype", "DARTS_V2", "--device", "tpu"], ["--device tpu", "unknown device"]),
    (["search", "--w-lr", "inf"], ["--w-lr", "finite"]),
    (["search", "--epochs", "0"], ["--epochs", "at least 1"]),
    (["search", "--layers", "2"], ["--layers", "at least 3"]),
    (["search", "--train-portion", "1"], ["--train-portion", "(0, 1)"]),
    (["search", "--partial-channels", "3"], ["partial channels K=3 must divide init channels 8"]),
    (["search", "--warmup-epochs", "10"], ["warmup epochs (10)"]),
    (["search", "--seed", "4294967296"], ["--seed", "4294967296"]),
    (["search", "--seed", "one"], ["--seed", "'one'"]),
    (["search", "--device", "tpu", "--out", "new"], ["--device tpu"]),
    (["search", "--strategy", "random", "--trials", "0", "--out", "new"], ["--trials", "at least 1, got 0"]),
    (["search", "--strategy", "random", "--trials", "ten"], ["--trials", "'ten'"]),
    (["search", "--strategy", "evolution", "--population", "0", "--out", "new"], ["--population", "at least 2"]),
    (["search", "--strategy", "evolution", "--population", "1"], ["--population", "at least 2, got 1"]),
    (["search", "--strategy", "evolution", "--sample-size", "0"], ["--sample-size", "at least 1"]),
    (["search", "--strategy", "evolution", "--population", "4", "--sample-size", "5", "--out", "new"],
     ["--sample-size 5", "population (4)"]),
    (["search", "--strategy", "evolution", "--sample-size", "21"], ["--sample-size 21", "(20, the default)"]),
    (["search", "--strategy", "random", "--cpus-per-trial", "0"], ["--cpus-per-trial", "positive"]),
    (["search", "--strategy", "random", "--reduction-factor", "nan"], ["--reduction-factor", "finite"]),
    (["search", "--strategy", "random", "--epochs-per-trial", "0", "--out", "new"], ["--epochs-per-trial", "at least 1"]),
    (["search", "--strategy", "random", "--epochs-per-trial", "2.5"], ["--epochs-per-trial", "integer"]),
    (["search", "--strategy", "random", "--trial-batch-size", "1"], ["--trial-batch-size", "at least 2"]),
    (["search", "--strategy", "random", "--trial-init-channels", "0"], ["--trial-init-channels", "at least 1"]),
    (["search", "--strategy", "random", "--trial-layers", "0"], ["--trial-layers", "at least 3"]),
    (["search", "--strategy", "random", "--num-classes", "1"], ["--num-classes", "at least 2"]),
    (["search", "--strategy", "random", "--evaluator", "nb201", "--space", "nb201", "--epochs-per-trial", "2"],
     ["--epochs-per-trial applies to trials that train"]),
    (["search", "--strategy", "random", "--trial-setting", "lr=inf"], ["--trial-setting lr='inf'", "finite"]),
    (["search", "--strategy", "random", "--trial-setting", "lr=nan"], ["--trial-setting lr='nan'"]),
    (["search", "--strategy", "random", "--trial-setting", "augment=2"], ["--trial-setting augment='2'", "true or false"]),
    (["search", "--strategy", "random", "--trial-setting", "epochs=2"], ["--trial-setting epochs", "--epochs-per-trial"]),
    (["search", "--strategy", "random", "--trial-setting", "lr"], ["--trial-setting 'lr' is not NAME=VALUE"]),
    (["build", "--genotype", "DARTS_V2", "--num-classes", "0", "--plot", "new.png"], ["--num-classes", "at least 1"]),
    (["build", "--genotype", "DARTS_V2", "--init-channels", "0", "--plot", "new.png"], ["--init-channels"]),
    (["build", "--genotype", "DARTS_V2", "--layers", "0", "--plot", "new.png"], ["--layers", "at least 3"]),
    (["build", "--genotype", "DARTS_V2", "--input-size", "0", "--plot", "new.png"], ["--input-size", "[8, 512]"]),
    (["build", "--genotype", "DARTS_V2", "--input-size", "nan", "--plot", "new.png"], ["--input-size", "'nan'"]),
    (["build", "--genotype", "DARTS_V2", "--device", "tpu", "--plot", "new.png"], ["--device tpu"]),
    (["build", "--genotype", "DARTS_V2", "--device", "cuda:x", "--plot", "new.png"], ["--device cuda:x"]),
    (["ops", "--channels", "0"], ["--channels", "at least 1, got 0"]),
    (["ops", "--size", "0"], ["--size", "at least 1, got 0"]),
    (["ops", "--size", "-3"], ["--size", "got -3"]),
    (["ops", "--channels", "8.0"], ["--channels", "integer"]),
    (["export", "DARTS_V2", "--num-classes", "0", "--out", "new"], ["--num-classes", "at least 1"]),
    (["export", "DARTS_V2", "--in-channels", "0", "--out", "new"], ["--in-channels"]),
    (["export", "DARTS_V2", "--init-channels", "0", "--out", "new"], ["--init-channels"]),
    (["export", "DARTS_V2", "--layers", "-1", "--out", "new"], ["--layers"]),
    (["export", "DARTS_V2", "--input-size", "4", "--out", "new"], ["--input-size", "[8, 512]"]),
    (["export", "DARTS_V2", "--seed", "-5", "--out", "new"], ["--seed"]),
    (["segment", "--genotype", "DARTS_V2", "--num-classes", "1", "--out", "new"], ["--num-classes", "at least 2"]),
    (["segment", "--genotype", "DARTS_V2", "--lr", "inf", "--out", "new"], ["--lr", "finite"]),
    (["detect", "--genotype", "DARTS_V2", "--fpn-channels", "4", "--out", "new"], ["--fpn-channels", "at least 8"]),
    (["detect", "--genotype", "DARTS_V2", "--warmup-steps", "-1", "--out", "new"], ["--warmup-steps"]),
]

DESTINATIONS = [
    # every command that writes refuses an existing, non-empty destination without --overwrite,
    # a file, a path below a file, before anything is made
    (["train", "--genotype", "DARTS_V2", "--out", "full"], ["--out full", "not empty", "--overwrite"]),
    (["train", "--genotype", "DARTS_V2", "--out", "afile"], ["--out afile is a file"]),
    (["train", "--genotype", "DARTS_V2", "--out", "afile/run"], ["--out afile/run lies below afile"]),
    (["train", "--genotype", "DARTS_V2", "--out", "trainrun"], ["--out trainrun", "--resume"]),
    (["search", "--out", "full"], ["--out full", "not empty"]),
    (["search", "--out", "afile"], ["--out afile is a file"]),
    (["search", "--strategy", "random", "--out", "afile/sub/run"], ["lies below afile"]),
    (["detect", "--genotype", "DARTS_V2", "--out", "full"], ["--out full", "not empty"]),
    (["segment", "--genotype", "DARTS_V2", "--out", "afile/x"], ["lies below afile"]),
    (["export", "DARTS_V2", "--out", "full"], ["--out full", "not empty", "--overwrite"]),
    (["export", "DARTS_V2", "--out", "exported"], ["--out exported", "not empty"]),
    (["export", "DARTS_V2", "--out", "afile"], ["--out afile is a file"]),
    (["export", "DARTS_V2", "--out", "afile/x"], ["lies below afile"]),
    (["build", "--genotype", "DARTS_V2"], ["--plot cell.png already exists", "--overwrite"]),
    (["build", "--genotype", "DARTS_V2", "--plot", "cell.png"], ["--plot cell.png already exists"]),
    (["build", "--genotype", "DARTS_V2", "--plot", "missing/cell.png"], ["--plot missing/cell.png", "missing does not exist"]),
    (["build", "--genotype", "DARTS_V2", "--plot", "afile/cell.png"], ["the folder afile is a file"]),
    (["build", "--genotype", "DARTS_V2", "--plot", "full"], ["--plot full is a folder"]),
    (["build", "--genotype", "DARTS_V2", "--plot", "cell.txt"], ["--plot cell.txt", ".png"]),
    (["build", "--genotype", "DARTS_V2", "--plot", "cell"], ["--plot cell", ".png"]),
]

RESUMES = [
    # run folders given to --resume or to nas export: damaged, of another kind, no run at all
    (["search", "--resume", "trainrun"], ["trainrun is a 'train' run, not a `nas search` run"]),
    (["search", "--resume", "truncated"], ["truncated/config.json is damaged", "line 1"]),
    (["search", "--resume", "listed"], ["listed/config.json is damaged", "list"]),
    (["search", "--resume", "binary"], ["binary/config.json is damaged", "UTF-8"]),
    (["search", "--resume", "nested"], ["nested/config.json is damaged"]),
    (["search", "--resume", "kindless"], ["kindless/config.json names no run kind"]),
    (["search", "--resume", "full"], ["full is not a run folder (no config.json)"]),
    (["search", "--resume", "missing"], ["missing is not a run folder"]),
    (["search", "--resume", "darts-run", "--out", "new"], ["--resume", "drop --out"]),
    (["search", "--resume", "darts-run", "--evaluator", "nb201"], ["--evaluator: --strategy darts scores no trials"]),
    (["search", "--resume", "darts-run", "--overwrite"], ["drop --overwrite"]),
    (["search", "--resume", "darts-run"], ["darts-run", "not a DARTS search run"]),
    (["train", "--resume", "truncated"], ["truncated/config.json is damaged"]),
    (["train", "--resume", "listed"], ["listed/config.json is damaged"]),
    (["train", "--resume", "darts-run"], ["darts-run is a 'darts' run, not a `nas train` run"]),
    (["train", "--resume", "trainrun"], ["trainrun/config.json has no setting 'model'"]),
    (["train", "--resume", "trainrun", "--overwrite"], ["drop --overwrite"]),
    (["detect", "--resume", "trainrun"], ["trainrun is a 'train' run, not a `nas detect` run"]),
    (["segment", "--resume", "nested"], ["nested/config.json is damaged"]),
    (["export", "truncated", "--out", "new"], ["truncated/config.json is damaged"]),
    (["export", "listed", "--out", "new"], ["listed/config.json is damaged"]),
    (["export", "kindless", "--out", "new"], ["kindless/config.json names no run kind"]),
    (["export", "retyped", "--out", "new"], ["retyped/config.json names the run kind 'tr@in'", "damaged"]),
    (["export", "posing", "--out", "new"], ["posing holds a trained model", "damaged"]),
    (["export", "trainrun", "--out", "new"], ["trainrun has no checkpoints/last.pt"]),
    (["export", "full", "--out", "new"], ["full is not a run folder"]),
]

SEARCH_INPUTS = [
    # black-box settings refused before the run folder exists
    (["search", "--strategy", "random", "--enqueue", "NOPE", "--out", "new"], ["--enqueue NOPE", "unknown genotype"]),
    (["search", "--strategy", "random", "--space", "nb201", "--enqueue", "DARTS_V2", "--out", "new"],
     ["--enqueue DARTS_V2", "space 'darts', not 'nb201'"]),
    (["search", "--strategy", "random", "--enqueue", "missing.json", "--out", "new"], ["--enqueue missing.json"]),
    (["search", "--strategy", "random", "--storage", "bad://x", "--out", "new"], ["--storage bad://x"]),
    (["search", "--strategy", "random", "--storage", "sqlite:///missing/study.db", "--out", "new"],
     ["--storage sqlite:///missing/study.db"]),
    (["search", "--strategy", "evolution", "--objectives", "val_acc,params", "--out", "new"],
     ["evolution optimises one objective"]),
    # options the chosen strategy would ignore
    (["search", "--strategy", "random", "--workers", "2"], ["--workers is a setting of --strategy darts, gdas, not random"]),
    (["search", "--backend", "optuna"], ["--backend", "'optuna' is not one of local, ray"]),
    (["search", "--trials", "5", "--out", "new"], ["--trials is a setting of --strategy", "add --strategy"]),
    (["search", "--strategy", "random", "--order", "2"], ["--order is a setting of --strategy darts, gdas, not random"]),
    (["search", "--evaluator", "nb201"], ["--evaluator: --strategy darts scores no trials"]),
    (["search", "--strategy", "darts", "--trial-setting", "lr=0.1"], ["--trial-setting: --strategy darts"]),
    (["search", "--epochs-per-trial", "2", "--out", "new"], ["--epochs-per-trial: --strategy darts"]),
]


CASES = USAGE + DESTINATIONS + RESUMES + SEARCH_INPUTS


@pytest.mark.parametrize("argv, named", CASES, ids=[" ".join(argv) or "(nothing)" for argv, _ in CASES])
def test_a_usage_mistake_is_one_line_and_changes_nothing(argv, named, workspace, capsys):
    refused(argv, capsys, workspace, *named)


def test_every_parser_says_usage_errors_in_one_line():
    parser, sub = _assemble()
    assert isinstance(parser, Parser)
    assert sub.choices and all(isinstance(p, Parser) for p in sub.choices.values())


# -- the one declaration of a number -------------------------------------------------------------------
@pytest.mark.parametrize("name, value, message", [
    ("lr", math.inf, "lr must be a finite number, got inf"),
    ("lr", math.nan, "lr must be a finite number, got nan"),
    ("lr", True, "lr must be a number, got True"),
    ("lr", "0.1", "lr must be a number, got '0.1'"),
    ("epochs", True, "epochs must be an integer, got True"),
    ("epochs", 2.0, "epochs must be an integer, got 2.0"),
    ("epochs", 0, "epochs must be at least 1, got 0"),
    ("augment", 1, "augment must be true or false, got 1"),
    ("image_size", None, None),  # optional: unset is fine
    ("epochs", None, "epochs must be set, got None"),
    ("export_formats", ("tflite",), "export_formats: 'tflite' is not one of"),
])
def test_check_value_refuses_wrong_types_infinities_and_bools_as_numbers(name, value, message):
    if message is None:
        check_value(TrainConfig, name, value)
        return
    with pytest.raises(NasError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_value(TrainConfig, name, value)


def test_a_number_without_a_settings_field_is_checked_the_same_way():
    assert parse_number(" 8 ", int, min=8) == 8
    for text, message in (("7", "must be at least 8, got 7"), ("inf", "takes an integer"),
                          ("8.0", "takes an integer"), ("", "takes an integer")):
        with pytest.raises(NasError, match=message):
            parse_number(text, int, min=8)
    with pytest.raises(NasError, match="x must be a finite number"):
        parse_number("nan", float, name="x", min=0)
    assert parse_value(TrainConfig, "init_channels", "none") is None
    with pytest.raises(NasError, match="^must be at least 1, got 0$"):
        parse_value(TrainConfig, "init_channels", "0", label="")


# -- destinations and run folders --------------------------------------------------------------------
def test_check_destination_and_run_create_refuse_before_making_anything(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("keep")
    with pytest.raises(NasError, match="not empty"):
        Run.create("train", {}, out=tmp_path / "full")
    assert check_destination(tmp_path / "new") == tmp_path / "new" and not (tmp_path / "new").exists()
    assert check_destination(tmp_path / "full", overwrite=True) == tmp_path / "full"
    (tmp_path / "locked").mkdir(mode=0o500)
    try:
        import os

        if os.access(tmp_path / "locked", os.W_OK):  # root writes anywhere
            pytest.skip("this user can write into a read-only folder")
        with pytest.raises(NasError, match="cannot be written to"):
            check_destination(tmp_path / "locked" / "run")
    finally:
        (tmp_path / "locked").chmod(0o700)


def test_a_new_run_in_an_earlier_ones_folder_replaces_its_records_and_keeps_other_files(tmp_path):
    out = tmp_path / "run"
    first = Run.create("train", {"n": 1}, out=out)
    first.log({"epoch": 1})
    (out / "checkpoints").mkdir()
    (out / "checkpoints" / "last.pt").write_bytes(b"the earlier run's weights")
    (out / "notes.txt").write_text("mine")
    with allow_overwrite(out):
        second = Run.create("train", {"n": 2}, out=out)
    assert second.config["n"] == 2 and second.metrics() == []
    assert not (out / "checkpoints" / "last.pt").exists()  # a resume must not continue the earlier run
    assert (out / "notes.txt").read_text() == "mine" and (out / "checkpoints").is_dir()
    with pytest.raises(NasError, match="not empty"):  # outside the block: refused again
        Run.create("train", {"n": 3}, out=out)


def test_run_configs_name_their_file_in_every_error(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"kind": "train", "model": {"task": "classification"}}))
    config = read_config(path)
    assert config["model"]["task"] == "classification"
    with pytest.raises(NasError, match=f"{path} has no setting 'genotype'"):
        config["model"]["genotype"]
    assert config.get("missing") is None and json.loads(json.dumps(config)) == config
    with pytest.raises(NasError, match="is a 'train' run, not a `nas search` run"):
        Run.open(tmp_path, kinds=("darts",), what="a `nas search` run")


def test_overwrite_lets_each_command_write_where_it_refused(workspace, capsys):
    # build --plot: the earlier diagram is replaced only when asked
    assert main(["build", "--genotype", "NB201_RESNET", "--init-channels", "4", "--overwrite", "--json"]) == 0
    assert Path("cell.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    capsys.readouterr()
    # train into an earlier run's folder: its records are replaced, other files stay
    assert main(["train", *TINY_TRAIN, "--out", "full"]) == 2
    assert "--overwrite" in capsys.readouterr().err and sorted(p.name for p in Path("full").iterdir()) == ["keep.txt"]
    assert main(["train", *TINY_TRAIN, "--out", "full", "--overwrite"]) == 0
    assert main(["train", *TINY_TRAIN, "--out", "full", "--overwrite", "--seed", "1"]) == 0
    records = [json.loads(line) for line in Path("full/metrics.jsonl").read_text().splitlines()]
    assert len(records) == 1 and records[0]["epoch"] == 1  # one run's epochs, not two runs'
    assert json.loads(Path("full/config.json").read_text())["train"]["seed"] == 1
    assert Path("full/keep.txt").read_text() == "keep"
    # the second training replaced its own export in full/export (the same folder, allowed by --overwrite)
    assert json.loads(Path("full/export/manifest.json").read_text())["formats"].keys() == {"source"}
    # export into a non-empty folder: refused, then written with --overwrite; other files stay
    capsys.readouterr()
    assert main(["export", "full", "--format", "torchscript"]) == 0  # by default beside the earlier one
    assert Path("full/export-2/model.torchscript.pt").is_file()
    assert json.loads(Path("full/export/manifest.json").read_text())["formats"].keys() == {"source"}
    assert main(["export", "full", "--format", "torchscript", "--out", "exported"]) == 2
    assert "--out exported already exists" in capsys.readouterr().err
    assert main(["export", "full", "--format", "torchscript", "--out", "exported", "--overwrite"]) == 0
    assert Path("exported/model.py").read_text() == "# an earlier export\n"  # never touched: not written
    manifest = json.loads(Path("exported/manifest.json").read_text())
    assert set(manifest["formats"]) == {"torchscript"}  # the earlier one was of another model


def test_help_is_exit_0_and_a_parser_error_never_raises(capsys):
    assert main(["--help"]) == 0
    assert "COMMAND" in capsys.readouterr().out
    parser = Parser(prog="nas x")
    parser.add_argument("--n", type=int)
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["--n", "x"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == "nas x: error: --n: invalid int value: 'x'\n"
