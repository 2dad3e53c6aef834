"""Every extension is one registration: a toy op, evaluator, head and strategy defined in this file
run end to end through the public API and through the ``nas`` command, with no other edit."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from nas.builders import register_head
from nas.cli import main
from nas.config import setting, to_dict
from nas.evaluators import Evaluator, register_evaluator
from nas.export import export
from nas.genotype import Genotype, random_genotype, resolve_genotype
from nas.ops import register
from nas.run import Run
from nas.space import load_space
from nas.strategies import Strategy, get_strategy, register_strategy
from nas.strategies.blackbox.settings import BlackboxSettings
from nas.train import recipe, train

TINY = ["--epochs", "1", "--max-train-batches", "1"]


def manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


# -- an op -----------------------------------------------------------------------------------------
class ScaledConv(nn.Module):
    """A 3x3 conv whose output a fixed factor scales: an op from outside the package."""

    def __init__(self, C_in: int, C_out: int, stride: int, affine: bool = True, scale: float = 1.0):
        super().__init__()
        self.scale = scale
        self.conv = nn.Conv2d(C_in, C_out, 3, stride, 1, bias=False)
        self.bn = nn.BatchNorm2d(C_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * self.bn(self.conv(torch.relu(x)))


register("toy_scaled_conv_3x3", "3x3 conv scaled by a constant (registered by the registry tests)", scale=0.5)(ScaledConv)

TOY_SPACE = """\
name: toyops
kind: cell
ops: [skip_connect, toy_scaled_conv_3x3]
cell: {inputs: 2, nodes: 2, edges_per_node: 2, output: concat, types: [normal, reduction]}
network: {init_channels: 4, layers: 3}
"""


def test_a_registered_op_searches_trains_and_exports(tmp_path):
    space_file = tmp_path / "toyops.yaml"
    space_file.write_text(TOY_SPACE)
    genotype = random_genotype(load_space(space_file), seed=0)
    assert "toy_scaled_conv_3x3" in json.dumps(genotype.to_dict())

    # public API: train, then export; the source export must hold the op's own class
    result = train(genotype, "digits", config=dataclasses.replace(recipe("digits"), epochs=1, max_train_batches=1,
                                                                  export_formats=()),
                   out=tmp_path / "api", progress=False)
    paths = export(result.run, "source", tmp_path / "api-export")
    assert "class ScaledConv(nn.Module):" in paths["source"].read_text()
    assert manifest(tmp_path / "api-export")["formats"]["source"]["max_abs_diff"] <= 1e-4

    # the nas command: a black-box search of the space, then train and export what it found
    search = tmp_path / "search"
    assert main(["search", "--strategy", "random", "--space", str(space_file), "--trials", "2",
                 "--epochs-per-trial", "1", "--trial-setting", "max_train_batches=1", "--out", str(search)]) == 0
    found = resolve_genotype(str(search))
    assert found.space == "toyops"
    space_file.unlink()  # the run folder carries the space's definition
    assert main(["train", "--genotype", str(search), *TINY, "--out", str(tmp_path / "trained"), "--no-progress"]) == 0
    assert main(["export", str(tmp_path / "trained"), "--out", str(tmp_path / "cli-export")]) == 0
    assert manifest(tmp_path / "cli-export")["formats"]["source"]["max_abs_diff"] <= 1e-4


# -- an evaluator ----------------------------------------------------------------------------------
@register_evaluator("toy-convs")
class ConvCountEvaluator(Evaluator):
    """Scores a cell by the number of 3x3 convolutions in it; no training."""

    objective = "convs"

    def evaluate(self, genotype: Genotype, *, report=None, workdir=None) -> dict:
        return {"convs": float(json.dumps(genotype.to_dict()).count("conv_3x3"))}

    def config(self) -> dict:
        return {"name": "toy-convs"}


def best_possible(trials: list[dict]) -> float:
    return max(t["convs"] for t in trials)


def test_a_registered_evaluator_scores_a_search(tmp_path):
    result = get_strategy("random").search("nb201", BlackboxSettings(trials=6), evaluator=ConvCountEvaluator(),
                                           out=tmp_path / "api", progress=False)
    scores = [ConvCountEvaluator().evaluate(g)["convs"] for g in _trial_genotypes(tmp_path / "api")]
    assert len(scores) == 6
    assert ConvCountEvaluator().evaluate(result.genotype)["convs"] == max(scores)

    out = tmp_path / "cli"
    assert main(["search", "--strategy", "tpe", "--space", "nb201", "--evaluator", "toy-convs", "--trials", "5",
                 "--out", str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["evaluator"]["name"] == "toy-convs"
    scores = [ConvCountEvaluator().evaluate(g)["convs"] for g in _trial_genotypes(out)]
    assert len(scores) == 5
    assert ConvCountEvaluator().evaluate(resolve_genotype(str(out)))["convs"] == max(scores)
    # resuming rebuilds the evaluator from the run's config by its registered name
    assert main(["search", "--resume", str(out), "--trials", "7"]) == 0
    assert len(_trial_genotypes(out)) == 7


def _trial_genotypes(run: Path) -> list[Genotype]:
    import csv

    with open(run / "trials.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["status"] == "complete"]
    return [resolve_genotype(r["genotype"]) for r in rows]


# -- a segmentation head ---------------------------------------------------------------------------
class LinearSegmenter(nn.Module):
    """1x1 conv logits on the stride-4 map, upsampled: a head from outside the package."""

    def __init__(self, backbone: nn.Module, num_classes: int):
        super().__init__()
        self.backbone = backbone
        self.feature = backbone.feature_info[0]["module"]
        self.classify = nn.Conv2d(backbone.feature_info[0]["num_chs"], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.classify(self.backbone(x)[self.feature])
        return nn.functional.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


@register_head("segmentation", "toy_linear")
def toy_linear(backbone: nn.Module, num_classes: int, **options) -> nn.Module:
    return LinearSegmenter(backbone, num_classes)


TASK_TINY = ["--image-size", "64", "--train-images", "8", "--val-images", "4", "--batch-size", "4",
             "--init-channels", "4"]


def test_a_registered_head_trains_and_exports(tmp_path):
    config = dataclasses.replace(recipe("shapes", task="segmentation"), epochs=1, max_train_batches=1, image_size=64,
                                 train_images=8, val_images=4, batch_size=4, init_channels=4, export_formats=("source",))
    result = train("DARTS_V2", task="segmentation", head="toy_linear", config=config, out=tmp_path / "api",
                   progress=False)
    assert isinstance(result.model, LinearSegmenter) and 0 <= result.metrics["miou"] <= 1
    assert "class LinearSegmenter(nn.Module):" in (tmp_path / "api" / "export" / "model.py").read_text()

    run = tmp_path / "cli"
    assert main(["segment", "--genotype", "DARTS_V2", "--head", "toy_linear", *TINY, *TASK_TINY, "--out", str(run),
                 "--no-progress"]) == 0
    assert json.loads((run / "config.json").read_text())["model"]["head"] == "toy_linear"
    assert main(["export", str(run), "--out", str(tmp_path / "cli-export")]) == 0
    assert manifest(tmp_path / "cli-export")["formats"]["source"]["max_abs_diff"] <= 1e-4


# -- a strategy ------------------------------------------------------------------------------------
@dataclass(frozen=True)
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


def test_a_registered_strategy_runs_through_the_api_and_nas_search(tmp_path, capsys):
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

    assert main(["search", "--help"]) == 0
    assert "--toy-samples TOY_SAMPLES" in capsys.readouterr().out
    assert main(["search", "--strategy", "toy", "--toy-samples", "0"]) == 2
    assert capsys.readouterr().err.strip() == "nas search: error: --toy-samples: must be at least 1, got 0"
