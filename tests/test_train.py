"""Training: a short digits run and its run folder, bit-identical resume, recipes, bad inputs."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pytest
import torch

from nas.builders import ModelSpec
from nas.cli import build_parser, main
from nas.cli.cmd_train import train_config_from_args
from nas.config import check
from nas.errors import NasError
from nas.export import TOLERANCE, import_source
from nas.genotype import get_reference
from nas.train import TrainConfig, load_checkpoint, load_model, recipe, train
from nas.train.config import TASK_ONLY, check_config
from nas.train.tasks import DataSpec, get_task

# Tiny but complete: auxiliary head, drop-path, Cutout, gradient clipping and the cosine
# schedule are all on, so resume has every piece of state to restore.
TINY = TrainConfig(epochs=2, batch_size=32, init_channels=4, layers=3, image_size=16, train_subset=96,
                   val_subset=64, cutout=4, auxiliary_weight=0.4, drop_path=0.2)
TIMING = ("epoch_time_s", "images_per_s", "peak_mem_mib")  # wall-clock figures differ between any two runs


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny networks run fastest (and least disturbed by other processes) on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One uninterrupted two-epoch run, shared by the tests that only read it."""
    torch.set_num_threads(1)
    return train("DARTS_V2", "digits", config=TINY, out=tmp_path_factory.mktemp("runs") / "full", progress=False)


def folder_hash(path: Path) -> str:
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(path)).encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


def without_timing(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in records]


def test_recipes_and_settings(tmp_path):
    cifar = recipe("CIFAR-10")
    assert (cifar.lr, cifar.momentum, cifar.weight_decay, cifar.batch_size, cifar.epochs) == (0.025, 0.9, 3e-4, 96, 600)
    assert (cifar.cutout, cifar.auxiliary_weight, cifar.drop_path, cifar.grad_clip) == (16, 0.4, 0.2, 5.0)
    # cifar's network size is the space's: darts.yaml is the DARTS evaluation network
    spec = ModelSpec.create(get_reference("DARTS_V2"), init_channels=cifar.init_channels, layers=cifar.layers)
    assert (spec.init_channels, spec.layers) == (36, 20)
    digits = recipe("digits")
    assert digits.epochs <= 20 and digits.cutout == 0 and 8 <= digits.init_channels <= 16 and 5 <= digits.layers <= 8
    with pytest.raises(NasError, match="--dataset mnist: unknown data set"):
        recipe("mnist")
    with pytest.raises(NasError, match="drop_path must be in"):
        check(dataclasses.replace(TINY, drop_path=1.5))
    with pytest.raises(NasError, match="export_formats: 'tflite' is not one of all, source"):
        check(dataclasses.replace(TINY, export_formats=("tflite",)))
    with pytest.raises(NasError, match="precision bf16 is for CUDA"):
        train("DARTS_V2", "digits", config=dataclasses.replace(TINY, precision="bf16", device="cpu"),
              out=tmp_path / "unused")
    assert not (tmp_path / "unused").exists()


def test_cli_options_override_only_what_is_set():
    fields = {f.name for f in dataclasses.fields(TrainConfig)} - set(TASK_ONLY)
    train_parser = build_parser()._subparsers._group_actions[0].choices["train"]
    flags = {a.dest for a in train_parser._actions}
    assert fields <= flags and not set(TASK_ONLY) & flags
    args = build_parser().parse_args(["train", "--genotype", "DARTS_V2", "--lr", "0.1", "--no-augment",
                              "--export-formats", "all"])
    config = train_config_from_args(args, "cifar10")
    assert config.lr == 0.1 and config.augment is False
    assert config.export_formats == ("all",)  # resolved for the task when the run is planned
    assert check_config(config).export_formats == ("source", "pt2", "torchscript", "onnx")
    assert dataclasses.replace(config, lr=0.025, augment=True, export_formats=("source",)) == recipe("cifar10")


def test_training_run_folder(finished):
    run = finished.run
    for name in ("config.json", "versions.json", "genotype.json", "genotype.png", "model.json", "metrics.jsonl",
                 "curves.png", "result.json", "checkpoints/last.pt", "checkpoints/best.pt", "export/model.py",
                 "export/model.safetensors", "export/model_state_dict.pt", "export/manifest.json"):
        assert (run / name).is_file(), name
    assert any((run / "tensorboard").iterdir())
    config = json.loads((run / "config.json").read_text())
    assert config["seed"] == 0 and config["train"]["epochs"] == 2 and config["model"]["layers"] == 3
    size = json.loads((run / "model.json").read_text())
    assert size["params"] == sum(p.numel() for n, p in finished.model.named_parameters() if "auxiliary" not in n)
    assert size["macs"] > 0
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    assert all(r["train_images"] == TINY.train_subset for r in records)  # 96 images = 3 full batches of 32
    for key in ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "epoch_time_s", "images_per_s"):
        assert all(isinstance(r[key], float) for r in records), key
    assert records[0]["lr"] == TINY.lr and records[1]["lr"] < TINY.lr  # cosine schedule
    assert records[0]["drop_path"] == 0 and records[1]["drop_path"] == pytest.approx(TINY.drop_path / 2)
    assert finished.metrics["val_acc"] == records[-1]["val_acc"]
    assert finished.metrics["best_val_acc"] == max(r["val_acc"] for r in records)
    # the checkpoint rebuilds its own model, from plain data (weights_only), with the trained weights
    model, spec, state = load_model(run / "checkpoints" / "last.pt")
    assert state["epoch"] == 2 and spec.same_architecture(finished.spec)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        want = finished.model.eval()(x)
        assert torch.equal(model(x), want)
        exported = import_source(run / "export" / "model.py").load()
        assert (exported(x) - want).abs().max().item() <= TOLERANCE


def test_resume_after_interruption_is_bit_identical(tmp_path, finished):
    class Killed(Exception):
        pass

    def kill_after_first_epoch(epoch, metrics):
        if epoch == 1:
            raise Killed

    run = tmp_path / "interrupted"
    with pytest.raises(Killed):
        train("DARTS_V2", "digits", config=TINY, out=run, progress=False, report=kill_after_first_epoch)
    assert load_checkpoint(run / "checkpoints" / "last.pt")["epoch"] == 1
    assert not (run / "result.json").exists()
    # as if killed after logging epoch 2 but before its checkpoint: resume must drop that record
    with open(run / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"epoch": 2, "val_acc": 0.0}) + "\n")
    epochs_run: list[int] = []
    resumed = train(None, resume=run, progress=False, report=lambda epoch, metrics: epochs_run.append(epoch))
    assert epochs_run == [2]  # continued from the checkpoint, did not start over
    for key, value in finished.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[key], value), key
    full = [json.loads(line) for line in (finished.run / "metrics.jsonl").read_text().splitlines()]
    again = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert without_timing(again) == without_timing(full)
    assert without_timing([resumed.metrics]) == without_timing([finished.metrics])


def test_checkpoint_of_another_architecture_is_refused(tmp_path, finished):
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(finished.run, run)
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    state["spec"]["genotype"] = get_reference("DARTS_V1").to_dict()
    torch.save(state, run / "checkpoints" / "last.pt")
    before = folder_hash(run)
    with pytest.raises(NasError, match="holds another architecture"):
        train(None, resume=run, progress=False)
    assert main(["train", "--resume", str(run)]) == 2
    assert folder_hash(run) == before


@pytest.mark.parametrize("damage", ["no optimizer", "weights of another shape"])
def test_a_damaged_but_loadable_checkpoint_is_refused_in_one_line(tmp_path, capsys, finished, damage):
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(finished.run, run)
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    if damage == "no optimizer":
        del state["optimizer"]
    else:
        name = next(k for k, v in state["model"].items() if v.ndim == 4)
        state["model"][name] = torch.zeros(1, 1, 1, 1)
    torch.save(state, run / "checkpoints" / "last.pt")
    before = folder_hash(run)
    assert main(["train", "--resume", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "last.pt" in err and "Traceback" not in err, err
    assert folder_hash(run) == before


def test_bad_inputs_change_nothing(tmp_path, capsys, finished):
    def fails(argv: list[str], message: str) -> None:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and message in err, err

    bad = tmp_path / "bad.json"
    bad.write_text("{\"space\": \"darts\", ")
    fails(["train", "--genotype", str(bad), "--out", str(tmp_path / "a")], "not valid JSON")
    empty = tmp_path / "empty"
    empty.mkdir()
    fails(["train", "--genotype", "DARTS_V2", "--dataset", "imagefolder", "--data-root", str(empty),
           "--out", str(tmp_path / "b")], str(empty))
    wrong = tmp_path / "flat"
    wrong.mkdir()
    (wrong / "notes.txt").write_text("no class folders here")
    fails(["train", "--genotype", "DARTS_V2", "--dataset", "cifar10", "--data-root", str(wrong),
           "--out", str(tmp_path / "c")], str(wrong))
    fails(["train", "--genotype", "DARTS_V2", "--export-formats", "tflite", "--out", str(tmp_path / "d")],
          "'tflite' is not one of all, source")
    for name in "abcd":
        assert not (tmp_path / name).exists()
    before = folder_hash(finished.run)
    fails(["train", "--genotype", "DARTS_V2", "--out", str(finished.run)], "already exists")
    fails(["train", "--resume", str(finished.run), "--dataset", "cifar10"], "trains on digits")
    fails(["train", "--resume", str(finished.run), "--lr", "0.1"], "drop --lr")
    fails(["export", str(finished.run), "--format", "source,tflite"], "unknown export format 'tflite'")
    assert folder_hash(finished.run) == before


def test_cli_trains_nb201_and_exports_more_formats(tmp_path, capsys):
    run = tmp_path / "nb201"
    arch = "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|skip_connect~0|none~1|avg_pool_3x3~2|"
    assert main(["train", "--genotype", arch, "--epochs", "1", "--init-channels", "4", "--layers", "5",
                 "--image-size", "16", "--train-subset", "64", "--val-subset", "32", "--batch-size", "32",
                 "--max-train-batches", "1", "--out", str(run), "--no-progress"]) == 0
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 1 and records[0]["images_per_s"] > 0
    # the training wrote its own export into RUN/export: a later export goes beside it, to RUN/export-2
    before = (run / "export" / "manifest.json").read_bytes()
    assert main(["export", str(run), "--format", "torchscript"]) == 0
    assert (run / "export" / "manifest.json").read_bytes() == before
    manifest = json.loads((run / "export-2" / "manifest.json").read_text())
    assert set(manifest["formats"]) == {"torchscript"}
    assert manifest["formats"]["torchscript"]["max_abs_diff"] <= TOLERANCE
    # naming the training's folder is writing into it: refused without --overwrite
    assert main(["export", str(run), "--format", "torchscript", "--out", str(run / "export")]) == 2
    assert "--overwrite" in capsys.readouterr().err and not (run / "export" / "model.torchscript.pt").exists()
    assert main(["export", str(run), "--format", "torchscript", "--out", str(run / "export"), "--overwrite"]) == 0
    manifest = json.loads((run / "export" / "manifest.json").read_text())
    assert set(manifest["formats"]) == {"source", "torchscript"}  # the training run's source export is kept
    assert "torchscript" in capsys.readouterr().out


def test_validation_can_be_held_out_of_the_training_set(tmp_path):
    def _load_data(dataset, root, cfg):
        data = get_task("classification").load_data(DataSpec(dataset, root), cfg)
        return data.train, data.val, data.test

    cfg = dataclasses.replace(TINY, val_fraction=0.25, train_subset=None, val_subset=None)
    train_set, val_set, test_set = _load_data("digits", None, cfg)
    whole = train_set.dataset
    assert set(train_set.indices).isdisjoint(val_set.indices)
    assert len(train_set) + len(val_set) == len(whole) and abs(len(val_set) - 0.25 * len(whole)) <= 10
    # validation images are the training images without augmentation; the test split stays apart
    assert whole.transform is not None and val_set.dataset.transform is None and val_set.dataset.images is whole.images
    assert len(test_set) == len(_load_data("digits", None, dataclasses.replace(TINY, val_subset=None))[1])
    # the held-out part is a property of the data, not of the run
    other = _load_data("digits", None, dataclasses.replace(cfg, seed=7))
    assert other[1].indices == val_set.indices

    result = train("NB201_RESNET", "digits", config=dataclasses.replace(TINY, val_fraction=0.25, epochs=1),
                   out=tmp_path / "held-out", progress=False)
    saved = json.loads((tmp_path / "held-out" / "result.json").read_text())["metrics"]
    assert 0 <= result.metrics["test_acc"] <= 1 and result.metrics["test_loss"] > 0
    assert saved["test_acc"] == result.metrics["test_acc"] and saved["val_acc"] == result.metrics["val_acc"]
    with pytest.raises(NasError, match="val_fraction must be in"):
        check(dataclasses.replace(TINY, val_fraction=1.0))


def test_a_diverged_loss_stops_the_run_with_trial_diverged(tmp_path):
    from nas.errors import TrialDiverged

    config = dataclasses.replace(TINY, epochs=1, lr=1e12, grad_clip=0.0, auxiliary_weight=0.0, drop_path=0.0,
                                 export_formats=())
    with pytest.raises(TrialDiverged, match="training loss became nan in epoch 1"):
        train("DARTS_V2", "digits", config=config, out=tmp_path / "nan", progress=False)
    assert not (tmp_path / "nan" / "metrics.jsonl").read_text().strip()  # the diverged epoch is not logged
    assert not (tmp_path / "nan" / "checkpoints" / "last.pt").exists()
