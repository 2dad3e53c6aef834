"""Training, resuming, transfer, export and search of detectors and segmenters on genotype backbones."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from nas.builders import ModelSpec
from nas.checkpoint import load_model
from nas.cli import main
from nas.errors import NasError
from nas.export import export
from nas.genotype import random_genotype
from nas.measure import task_backbone
from nas.train import init_backbone_from, recipe, train_detector, train_segmenter
from nas.train.config import check_config

SIZE = 64
# one or two steps per epoch on 64-pixel images: enough to exercise every part of the loop
TINY = dataclasses.replace(recipe("shapes", "detection"), epochs=1, batch_size=4, image_size=SIZE, train_images=8,
                           val_images=4, warmup_steps=1, export_formats=(), device="cpu")


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: on a shared 2-core machine a second thread mostly waits for the first."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_train_detector_writes_run_folder_metrics_and_checked_export(tmp_path):
    config = dataclasses.replace(TINY, export_formats=("source", "torchscript"), init_channels=4)
    result = train_detector("DARTS_V2", detector="fcos", config=config, out=tmp_path / "run", progress=False)
    run = result.run
    for name in ("config.json", "versions.json", "genotype.json", "model.json", "metrics.jsonl", "curves.png",
                 "result.json", "checkpoints/last.pt", "checkpoints/best.pt"):
        assert (run / name).is_file(), name
    assert any((run / "tensorboard").iterdir())
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1]
    for key in ("map", "map50", "map75"):
        assert 0.0 <= records[0][key] <= 1.0
    assert records[0]["train_loss"] > 0 and "train_bbox_ctrness" in records[0]  # FCOS' own loss parts
    assert json.loads((run / "result.json").read_text())["metrics"]["map"] == records[0]["map"]
    config_json = json.loads((run / "config.json").read_text())
    assert config_json["kind"] == "detect" and config_json["model"]["head"] == "fcos"

    manifest = json.loads((run / "export" / "manifest.json").read_text())
    assert set(manifest["formats"]) == {"source", "torchscript"}
    assert all(entry["max_abs_diff"] <= 1e-4 for entry in manifest["formats"].values())
    # the exported source rebuilds the trained detector by itself, weights included
    from nas.export import import_source

    exported = import_source(run / "export" / "model.py").load()
    model, _, _ = load_model(run / "checkpoints" / "last.pt")
    images = [torch.rand(3, SIZE, SIZE, generator=torch.Generator().manual_seed(3))]
    with torch.no_grad():
        features = model.backbone(images[0][None])
        again = exported.backbone(images[0][None])
    assert max((features[k] - again[k]).abs().max().item() for k in features) <= 1e-4
    with pytest.raises(NasError, match="not available for detection"):
        export(run, "pt2")


def test_nas_segment_command_trains_and_exports(tmp_path, capsys):
    out = tmp_path / "seg"
    code = main(["segment", "--genotype", "NB201_RESNET", "--head", "unet", "--init-channels", "4",
                 "--epochs", "1", "--batch-size", "4", "--image-size", str(SIZE), "--train-images", "8",
                 "--val-images", "4", "--device", "cpu", "--export-formats", "source,pt2,torchscript",
                 "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "epoch 1/1" in printed and "miou" in printed
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert 0.0 <= record["miou"] <= 1.0 and 0.0 <= record["pixel_accuracy"] <= 1.0
    manifest = json.loads((out / "export" / "manifest.json").read_text())
    assert set(manifest["formats"]) == {"source", "pt2", "torchscript"}
    assert all(entry["max_abs_diff"] <= 1e-4 for entry in manifest["formats"].values())
    assert manifest["requires"] == ["torch"]  # genotype cells + U-Net: plain torch


@pytest.mark.parametrize("task", ["detection", "segmentation"])
def test_resume_after_interruption_matches_uninterrupted_run(tmp_path, task):
    config = dataclasses.replace(TINY, epochs=2, init_channels=4)
    # Faster R-CNN samples anchors and proposals from torch's generator: the strictest resume check
    train = train_detector if task == "detection" else train_segmenter
    head = {"detector": "fasterrcnn"} if task == "detection" else {"head": "fcn"}
    common = dict(**head, config=config, progress=False)
    full = train("NB201_RESNET", out=tmp_path / "full", **common)

    def stop_after_first_epoch(epoch, metrics):
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train("NB201_RESNET", out=tmp_path / "cut", report=stop_after_first_epoch, **common)
    resumed = train(resume=tmp_path / "cut", progress=False)
    lines = (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]
    drop = ("epoch_time_s", "images_per_s", "peak_mem_mib")  # wall-clock and process figures
    assert {k: v for k, v in resumed.metrics.items() if k not in drop} == \
           {k: v for k, v in full.metrics.items() if k not in drop}
    a = torch.load(tmp_path / "full" / "checkpoints" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "cut" / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    # the checkpoint rebuilds its own model, as a classifier's does
    model, spec, _ = load_model(tmp_path / "cut" / "checkpoints" / "last.pt")
    assert spec.task == task and spec.same_architecture(resumed.spec)
    assert all(torch.equal(v, a[k]) for k, v in model.state_dict().items())


def test_transfer_from_classification_run(tmp_path):
    from nas.train import TrainConfig, train

    cls_config = TrainConfig(epochs=1, batch_size=8, init_channels=4, layers=5, train_subset=16, val_subset=8,
                             max_train_batches=1, auxiliary_weight=0.0, drop_path=0.0, cutout=0, device="cpu",
                             export_formats=())
    classification = train("DARTS_V2", "digits", config=cls_config, out=tmp_path / "cls", progress=False)
    source = torch.load(classification.run / "checkpoints" / "last.pt", weights_only=True)["model"]

    spec = ModelSpec.create(task="segmentation", head="fcn", num_classes=4, genotype="DARTS_V2", image_size=SIZE,
                           init_channels=4)
    model = spec.build()
    transfer = init_backbone_from(model, spec, classification.run)
    assert len(transfer.loaded) > 0 and transfer.skipped  # the stem and the stride-32 stage stay fresh
    state = task_backbone(model).state_dict()
    for name in transfer.loaded:
        assert torch.equal(state[name], source[transfer.mapping[name]])
    assert transfer.mapping["stage2.cells.1.preprocess0.conv_1.weight"] == "body.cells.2.preprocess0.conv_1.weight"

    # through the training function: the genotype and width come from the classification run
    result = train_segmenter(head="fcn", init_from=classification.run, config=TINY, out=tmp_path / "seg",
                             progress=False)
    assert result.transfer is not None and len(result.transfer.loaded) == len(transfer.loaded)
    assert json.loads((result.run / "config.json").read_text())["transfer"]["loaded"] == len(transfer.loaded)

    wide = ModelSpec.create(task="segmentation", head="fcn", num_classes=4, genotype="DARTS_V2", image_size=SIZE,
                           init_channels=6)
    with pytest.raises(NasError, match="no backbone tensor"):
        init_backbone_from(wide.build(), wide, classification.run)
    other = ModelSpec.create(task="segmentation", head="fcn", num_classes=4, genotype="PC_DARTS", image_size=SIZE,
                            init_channels=4)
    with pytest.raises(NasError, match="another genotype"):
        init_backbone_from(other.build(), other, classification.run)


@pytest.mark.parametrize("space", ["darts", "lecture", "nb201", "mobile"])
def test_every_detector_and_head_trains_and_infers_on_each_space(space):
    from nas.data.tasks import ShapesDataset

    genotype = random_genotype(space, seed=7)
    detection = ShapesDataset(2, image_size=SIZE, seed=5)
    images = [detection[i][0] for i in range(2)]
    targets = [{k: detection[i][1][k] for k in ("boxes", "labels")} for i in range(2)]
    segmentation = ShapesDataset(2, image_size=SIZE, seed=5, task="segmentation")
    batch = torch.stack([segmentation[i][0] for i in range(2)])
    masks = torch.stack([segmentation[i][1] for i in range(2)])
    for task, heads in (("detection", ("fasterrcnn", "retinanet", "fcos")), ("segmentation", ("fcn", "deeplabv3", "unet"))):
        for head in heads:
            torch.manual_seed(0)
            model = ModelSpec.create(task=task, head=head, num_classes=4, genotype=genotype, image_size=SIZE, init_channels=4,
                                    cells_per_stage=1).build()
            optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
            model.train()
            if task == "detection":
                loss = sum(model(images, targets).values())
            else:
                loss = torch.nn.functional.cross_entropy(model(batch), masks)
            loss.backward()
            optimizer.step()
            assert torch.isfinite(loss), (space, head)
            model.eval()
            with torch.no_grad():
                out = model(images) if task == "detection" else model(batch)
            if task == "detection":
                assert len(out) == 2 and all(o["boxes"].shape[-1] == 4 for o in out), (space, head)
            else:
                assert out.shape == (2, 4, SIZE, SIZE), (space, head)


def test_segmenter_export_of_torchvision_backbone_and_format_errors(tmp_path):
    spec = ModelSpec.create(task="segmentation", head="deeplabv3", num_classes=3, backbone="resnet18", image_size=SIZE)
    torch.manual_seed(0)
    paths = export(spec.build(), "source,torchscript", tmp_path / "export", spec=spec)
    manifest = json.loads((tmp_path / "export" / "manifest.json").read_text())
    assert set(paths) == {"source", "torchscript"}
    assert all(entry["max_abs_diff"] <= 1e-4 for entry in manifest["formats"].values())
    assert manifest["requires"] == ["torch", "torchvision"]  # DeepLabV3's head and ResNet-18 live there
    with pytest.raises(NasError, match="torchscript"):
        check_config(dataclasses.replace(TINY, export_formats=("onnx",)), "detection")
    # all: every format the task can export
    assert check_config(dataclasses.replace(TINY, export_formats=("all",)), "detection").export_formats == (
        "source", "torchscript")
    assert check_config(dataclasses.replace(TINY, export_formats=("all",)), "segmentation").export_formats == (
        "source", "pt2", "torchscript", "onnx")


def test_segmentation_evaluator_in_random_search(tmp_path):
    from nas.evaluators import TrainingEvaluator, evaluator_from_config
    from nas.strategies.blackbox.optuna_search import search_blackbox

    evaluator = TrainingEvaluator(task="segmentation", head="fcn", space="nb201", epochs=1, init_channels=4,
                                  device="cpu", batch_size=4, image_size=SIZE, train_images=8, val_images=4,
                                  warmup_steps=1)
    assert evaluator.config()["name"] == "segmentation" and evaluator.objective == "miou"
    assert evaluator_from_config(evaluator.config()).config() == evaluator.config()
    result = search_blackbox("nb201", evaluator, strategy="random", trials=2, out=tmp_path / "search", seed=0,
                             objectives="miou,params", progress=False)
    trials = [t for t in result.study.trials if t.state.name == "COMPLETE"]
    assert len(trials) == 2
    for trial in trials:
        metrics = trial.user_attrs["metrics"]
        assert 0.0 <= metrics["miou"] <= 1.0 and metrics["params"] > metrics["backbone_params"] > 0
        assert (tmp_path / "search" / "trials" / f"{trial.number:04d}" / "checkpoints" / "last.pt").is_file()
    assert result.genotype is not None and result.pareto


@pytest.mark.parametrize("argv, message", [
    (["detect", "--genotype", "DARTS_V2", "--detector", "yolo"], "unknown detector 'yolo'; choose one of"),
    (["segment", "--genotype", "DARTS_V2", "--head", "pspnet"], "unknown segmentation head 'pspnet'"),
    (["detect", "--genotype", "DARTS_V2", "--dataset", "coco", "--data-root", "{tmp}"], "needs --ann FILE"),
    (["detect", "--genotype", "DARTS_V2", "--dataset", "coco", "--data-root", "{tmp}", "--ann", "{tmp}/none.json"],
     "annotation file not found"),
    (["detect", "--image-size", "96"], "pass --genotype"),
    (["segment", "--genotype", "DARTS_V2", "--image-size", "100"], "multiple of 32"),
])
def test_cli_bad_input_is_one_line_exit_2(tmp_path, capsys, argv, message):
    code = main([a.replace("{tmp}", str(tmp_path)) for a in argv])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and err.count("\n") == 1
    assert not any(tmp_path.rglob("config.json"))  # nothing was created


def test_nas_search_command_with_a_segmentation_evaluator(tmp_path, capsys):
    import optuna

    out = tmp_path / "search"
    tiny = ["--trial-setting", f"image_size={SIZE}", "--trial-setting", "train_images=8",
            "--trial-setting", "val_images=4", "--trial-setting", "warmup_steps=1"]
    code = main(["search", "--strategy", "random", "--space", "nb201", "--evaluator", "segmentation",
                 "--task-head", "fcn", "--trials", "2", "--epochs-per-trial", "1", "--trial-init-channels", "4",
                 "--trial-batch-size", "4", *tiny, "--device", "cpu", "--out", str(out)])
    assert code == 0
    evaluator = json.loads((out / "config.json").read_text())["evaluator"]
    assert (evaluator["name"], evaluator["head"], evaluator["dataset"]) == ("segmentation", "fcn", "shapes")
    assert (evaluator["image_size"], evaluator["train_images"], evaluator["init_channels"]) == (SIZE, 8, 4)
    assert (out / "genotype.json").is_file()
    # the resumed search rebuilds the same evaluator from the run folder
    assert main(["search", "--resume", str(out), "--trials", "3"]) == 0
    study = optuna.load_study(study_name="random-nb201", storage=f"sqlite:///{out / 'study.db'}")
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(done) == 3 and all(0 <= t.user_attrs["metrics"]["miou"] <= 1 for t in done)


@pytest.mark.parametrize("argv, message", [
    (["--evaluator", "segmentation", "--task-head", "yolo"], "unknown segmentation head 'yolo'"),
    (["--evaluator", "train", "--task-head", "fcn"], "--task-head applies to --evaluator detection or segmentation"),
    (["--trial-setting", "lr=fast"], "--trial-setting lr='fast': expected float"),
    (["--trial-setting", "epochs=2"], "--trial-setting epochs: use --epochs-per-trial"),
    (["--trial-setting", "learning_rate=0.1"], "unknown setting 'learning_rate'"),
    (["--evaluator", "detection", "--trial-setting", "image_size=100"], "multiple of 32"),
    (["--trial-setting", "lr"], "is not NAME=VALUE"),
    (["--evaluator", "segmentation", "--dataset", "nope"], "unknown segmentation dataset 'nope'"),
    (["--evaluator", "detection", "--dataset", "coco", "--data-root", "."], "--dataset coco needs --ann FILE"),
])
def test_search_trial_settings_and_task_options_are_checked(tmp_path, capsys, argv, message):
    code = main(["search", "--strategy", "random", "--trials", "1", "--out", str(tmp_path / "run"), *argv])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("task", ["detection", "segmentation"])
def test_channels_last_and_extra_hooks_apply_to_every_task(tmp_path, task):
    from nas.train import train
    from nas.train.engine import Hook

    class Layouts(Hook):
        """Records the memory layout of every convolution weight after each step."""

        def __init__(self):
            self.steps = []

        def after_step(self, trainer):
            convs = [m.weight for m in trainer.model.modules() if isinstance(m, torch.nn.Conv2d)]
            self.steps.append(all(w.is_contiguous(memory_format=torch.channels_last) for w in convs))

    layouts = Layouts()
    config = dataclasses.replace(TINY, channels_last=True, max_train_batches=1, init_channels=4)
    result = train("NB201_RESNET", task=task, head="fcn" if task == "segmentation" else "retinanet", config=config,
                   out=tmp_path / "run", progress=False, hooks=[layouts])
    assert layouts.steps == [True] and result.metrics["train_images"] == TINY.batch_size


def test_a_resumed_task_run_refuses_another_head_or_data_set(tmp_path, capsys):
    run = tmp_path / "never-made"
    for flags in (["--detector", "retinanet"], ["--dataset", "coco"]):
        assert main(["detect", "--resume", str(run), *flags]) == 2
        assert "--resume continues with the run's own settings; drop " + flags[0] in capsys.readouterr().err
    assert main(["segment", "--resume", str(run), "--head", "fcn"]) == 2
    assert "drop --head" in capsys.readouterr().err
