"""Evaluators: the NAS-Bench-201 table (real CSVs when present, small fake tables otherwise) and
the training evaluator on a tiny digits run."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from nas.errors import NasError
from nas.evaluators import evaluator_from_config
from nas.evaluators.nb201_table import (
    TABLE_12_EPOCHS,
    TABLE_200_EPOCHS,
    TABLE_PARAMS,
    NB201TableEvaluator,
)
from nas.evaluators.training import TrainingEvaluator
from nas.genotype import from_nb201_string, get_reference, to_nb201_string
from tests.conftest import shared_data

ARCHES = ["|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|",
          "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|",
          "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"]


def fake_tables(root: Path) -> Path:
    """Three tiny tables in the benchmark's formats (numbers invented for the test)."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / TABLE_12_EPOCHS, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["arch", "cellstr", "cifar10-test", "cifar10-val", "cifar100-test", "cifar100-val",
                    "imagenet-test", "imagenet-val"])
        for i, arch in enumerate(ARCHES):
            w.writerow([i, arch, 80 + i, 70 + i, 50 + i, 40 + i, 30 + i, 20 - i])
    with open(root / TABLE_200_EPOCHS, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["CIFAR10TestAccuracy200Epochs", "CIFAR100TestAccuracy200Epochs", "ImageNetTestAccuracy200Epochs",
                    "ArchitectureString", "UniqueString"])
        for i, arch in enumerate(ARCHES):
            w.writerow([90 + i, 60 + i, 35 + i, arch, "x"])
    with open(root / TABLE_PARAMS, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["arch", "cellstr", "params", "score", "test_top1", "valid_top1", "valid_test_top1"])
        for i, arch in enumerate(ARCHES):
            w.writerow([i, arch, 0.5 + i / 10, 0, 0, 0, 0])
    return root


def test_table_lookup_on_fake_tables(tmp_path: Path) -> None:
    root = fake_tables(tmp_path / "nb201")
    table = NB201TableEvaluator(root, dataset="cifar100")
    metrics = table.evaluate(from_nb201_string(ARCHES[1]))
    # the tables hold percent; the evaluator reports fractions, as the training evaluator does
    assert metrics == {"val_acc": 0.41, "test_acc": 0.61, "test_acc_12": 0.51, "params": 600_000, "index": 1,
                       "arch": ARCHES[1]}
    imagenet = NB201TableEvaluator(root, dataset="ImageNet16-120")
    assert imagenet.optimum()["best_val_arch"] == ARCHES[0]  # val falls with the index there
    assert imagenet.optimum()["best_test_arch"] == ARCHES[2]
    again = evaluator_from_config(table.config())
    assert again.config() == table.config() and again.evaluate(from_nb201_string(ARCHES[0]))["val_acc"] == 0.40


def test_table_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(NasError, match=f"NAS-Bench-201 folder {tmp_path / 'nowhere'} not found"):
        NB201TableEvaluator(tmp_path / "nowhere")
    root = fake_tables(tmp_path / "nb201")
    (root / TABLE_PARAMS).unlink()
    with pytest.raises(NasError, match=f"NAS-Bench-201 table {root / TABLE_PARAMS} not found"):
        NB201TableEvaluator(root)
    root = fake_tables(tmp_path / "other")
    table = NB201TableEvaluator(root)
    with pytest.raises(NasError, match="scores cells of the nb201 space, not 'darts'"):
        table.evaluate(get_reference("DARTS_V2"))
    with pytest.raises(NasError, match="is not in the NAS-Bench-201 tables"):
        table.evaluate(from_nb201_string("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"))
    with pytest.raises(NasError, match="unknown NAS-Bench-201 data set 'svhn'"):
        NB201TableEvaluator(root, dataset="svhn")


def test_real_tables_cover_the_whole_space() -> None:
    root = shared_data("nas-bench-201")
    for dataset in ("cifar10", "cifar100", "imagenet16-120"):
        table = NB201TableEvaluator(root, dataset=dataset)
        assert len(table.table) == 15625
        # every key is the canonical arch string of its cell, so lookups by genotype hit
        assert all(to_nb201_string(from_nb201_string(arch)) == arch for arch in list(table.table)[::97])
        assert all(0 < r.val_acc < 1 and 0 < r.test_acc < 1 for r in table.table.values())
    # the README's published optima
    assert round(NB201TableEvaluator(root, "cifar10").optimum()["best_test_acc"], 4) == 0.9437
    assert round(NB201TableEvaluator(root, "cifar100").optimum()["best_test_acc"], 4) == 0.7351
    assert round(NB201TableEvaluator(root, "imagenet16-120").optimum()["best_test_acc"], 4) == 0.4731


def test_real_table_params_match_the_built_network() -> None:
    from nas.builders import build_classifier
    from nas.measure import count_parameters

    table = NB201TableEvaluator(shared_data("nas-bench-201"))
    genotype = get_reference("NB201_RESNET")
    assert table.evaluate(genotype)["params"] == count_parameters(build_classifier(genotype))


# -- training ---------------------------------------------------------------------------------------
TINY = dict(epochs=2, init_channels=4, layers=3, batch_size=16, train_subset=32, val_subset=32, image_size=16,
            device="cpu")


def test_training_evaluator_reports_every_epoch_and_measures_the_network(tmp_path: Path) -> None:
    evaluator = TrainingEvaluator("digits", space="darts", **TINY)
    reports = []
    metrics = evaluator.evaluate(get_reference("DARTS_V2"), report=lambda e, m: reports.append((e, m["val_acc"])),
                                 workdir=tmp_path / "trial")
    assert [e for e, _ in reports] == [1, 2]
    assert metrics["val_acc"] == reports[-1][1] and 0 <= metrics["val_acc"] <= 1
    assert metrics["params"] > 0 and metrics["macs"] > 0 and metrics["run"] == str(tmp_path / "trial")
    # selection on images held out of the training set; the test split is scored once, for reporting
    assert evaluator.train_config.val_fraction == 0.2 and "test_acc" in evaluator.provides
    assert 0 <= metrics["test_acc"] <= 1
    assert (tmp_path / "trial" / "genotype.json").exists()
    assert evaluator_from_config(evaluator.config()).config() == evaluator.config()
    older = {k: v for k, v in evaluator.config().items() if k != "val_fraction"}  # a config from before val_fraction
    assert evaluator_from_config(older).train_config.val_fraction == 0.0


def test_an_interrupted_training_trial_continues_from_its_last_epoch_in_its_folder(tmp_path: Path) -> None:
    evaluator = TrainingEvaluator("digits", **{**TINY, "epochs": 3})
    genotype, folder = get_reference("NB201_RESNET"), tmp_path / "trials" / "0007"
    assert not evaluator.can_continue(folder)

    def killed_after_epoch_1(epoch, metrics):  # called after the epoch's checkpoint, as a kill would find it
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        evaluator.evaluate(genotype, report=killed_after_epoch_1, workdir=folder)
    assert evaluator.can_continue(folder)
    reports = []
    metrics = evaluator.evaluate(genotype, report=lambda e, m: reports.append(e), workdir=folder)
    assert reports == [2, 3]  # epoch 1 is not trained again
    assert [r["epoch"] for r in map(json.loads, (folder / "metrics.jsonl").read_text().splitlines())] == [1, 2, 3]
    assert metrics["run"] == str(folder) and 0 <= metrics["val_acc"] <= 1


def test_training_evaluator_lets_a_pruning_report_stop_it_and_fails_on_nan(monkeypatch) -> None:
    import optuna

    evaluator = TrainingEvaluator("digits", **TINY)

    def prune(epoch, metrics):
        raise optuna.TrialPruned("stop")

    with pytest.raises(optuna.TrialPruned):
        evaluator.evaluate(get_reference("NB201_RESNET"), report=prune)

    import nas.train

    def diverging_train(genotype, dataset, *, report=None, **kwargs):
        report(1, {"train_loss": math.nan, "val_acc": 0.1})

    monkeypatch.setattr(nas.train, "train", diverging_train)
    with pytest.raises(RuntimeError, match="training loss became nan in epoch 1"):
        evaluator.evaluate(get_reference("NB201_RESNET"))


def test_training_evaluator_checks_its_settings() -> None:
    with pytest.raises(NasError, match="unknown training setting"):
        TrainingEvaluator("digits", learning_rate=0.1)
    with pytest.raises(NasError, match="epochs must be at least 1"):
        TrainingEvaluator("digits", epochs=0)
    with pytest.raises(NasError, match="--dataset mnist: unknown data set"):
        TrainingEvaluator("mnist")


def test_one_registration_adds_an_evaluator() -> None:
    from nas.evaluators import (
        EVALUATORS,
        Evaluator,
        create_evaluator,
        register_evaluator,
    )

    @register_evaluator("toy-depth")
    class DepthEvaluator(Evaluator):
        objective = "depth"

        def __init__(self, scale: float = 1.0) -> None:
            self.scale = scale

        def evaluate(self, genotype, *, report=None, workdir=None):
            return {"depth": self.scale * len(genotype.to_dict())}

        def config(self):
            return {"name": "toy-depth", "scale": self.scale}

    try:
        evaluator = create_evaluator("toy-depth", scale=2.0)
        again = evaluator_from_config(evaluator.config())
        assert isinstance(again, DepthEvaluator) and again.scale == 2.0
        assert again.evaluate(get_reference("DARTS_V2"))["depth"] == evaluator.evaluate(get_reference("DARTS_V2"))["depth"]
    finally:
        del EVALUATORS["toy-depth"]
    with pytest.raises(NasError, match="unknown evaluator 'toy-depth'"):
        evaluator_from_config({"name": "toy-depth"})
    # the built-in names, detection and segmentation being the training evaluator of another task
    assert {"train", "nb201", "detection", "segmentation"} <= set(EVALUATORS)
    assert EVALUATORS["segmentation"] == (TrainingEvaluator, {"task": "segmentation"})


def test_an_evaluator_config_with_an_unknown_setting_is_a_user_error():
    with pytest.raises(NasError, match="evaluator 'nb201': .*unexpected keyword argument 'bogus'.*may be damaged"):
        evaluator_from_config({"name": "nb201", "bogus": 1})
