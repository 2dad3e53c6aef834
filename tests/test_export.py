"""Export: every format reproduces the model, the source needs only torch, every op exports."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from nas.builders import ModelSpec, register_head
from nas.checkpoint import save_checkpoint
from nas.cli import main
from nas.errors import NasError
from nas.export import TOLERANCE, export, formats_for, import_source
from nas.genotype import CellGenotype, Genotype, get_reference
from nas.ops import list_ops, register
from nas.space import space_from_dict

REPO = Path(__file__).resolve().parents[1]

# A chain space small enough to export in seconds, with every block feature (kernel, expansion,
# SE, residual and stride-2 blocks).
TINY_CHAIN = space_from_dict({
    "name": "tinychain", "kind": "chain",
    "blocks": {"kernel": [3, 5], "expansion": [1, 3], "se": [False, True]},
    "stages": [{"channels": 8, "stride": 1, "depth": [1]}, {"channels": 12, "stride": 2, "depth": [2]},
               {"channels": 16, "stride": 2, "depth": [2]}],
    "network": {"stem_channels": 8, "stem_stride": 1, "head_channels": 32}})
TINY_CHAIN_GENOTYPE = Genotype("tinychain", stages=(
    ("inverted_residual_k3_e1",), ("inverted_residual_k5_e3_se", "inverted_residual_k3_e3"),
    ("inverted_residual_k5_e1_se", "inverted_residual_k3_e3_se")))


class GatedConv(nn.Module):
    """An op defined outside the package: a 3x3 conv whose output a learned sigmoid gate scales."""

    def __init__(self, C_in: int, C_out: int, stride: int, affine: bool = True, gate: float = 0.0):
        super().__init__()
        self.conv = nn.Conv2d(C_in, C_out, 3, stride, 1, bias=False)
        self.bn = nn.BatchNorm2d(C_out, affine=affine)
        self.gate = nn.Parameter(torch.full((1, C_out, 1, 1), gate))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(torch.relu(x))) * torch.sigmoid(self.gate)


register("gated_conv_3x3", "3x3 conv with a learned sigmoid gate (registered by the export tests)", gate=0.5)(GatedConv)


class MeanSegmenter(nn.Module):
    """A head defined outside the package: 1x1 conv logits on the stride-8 map, upsampled."""

    def __init__(self, backbone: nn.Module, num_classes: int):
        super().__init__()
        self.backbone = backbone
        self.feature = backbone.feature_info[1]["module"]
        self.classify = nn.Conv2d(backbone.feature_info[1]["num_chs"], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.classify(self.backbone(x)[self.feature])
        return nn.functional.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


@register_head("segmentation", "mean_toy")
def mean_toy(backbone: nn.Module, num_classes: int, **options) -> nn.Module:
    return MeanSegmenter(backbone, num_classes)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny networks run fastest (and least disturbed by other processes) on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def trained_like(spec: ModelSpec, seed: int = 0) -> nn.Module:
    """A model with random weights AND random batch-norm statistics, so a swapped or skipped
    layer in an export changes the output (fresh BN statistics are an identity map)."""
    torch.manual_seed(seed)
    model = spec.build()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            if m.affine:
                m.weight.data.uniform_(0.5, 1.5)
                m.bias.data.uniform_(-0.2, 0.2)
    return model.eval()


def _load_torchscript(path: Path) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # jit is deprecated, still a supported format here
        return torch.jit.load(str(path))


def check_artifacts(out: Path, model: nn.Module, channels: int, size: int) -> None:
    """Load every artifact independently and compare on a new input of another batch size."""
    x = torch.randn(3, channels, size, size, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        want = model(x)
        module = import_source(out / "model.py")
        got = {"source": module.load(out / "model.safetensors")(x),
               "source (.pt weights)": module.load(out / "model_state_dict.pt")(x),
               "pt2": torch.export.load(out / "model.pt2").module()(x),
               "torchscript": _load_torchscript(out / "model.torchscript.pt")(x)}
    import onnxruntime

    session = onnxruntime.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    got["onnx"] = torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])
    for fmt, output in got.items():
        assert output.shape == want.shape, fmt
        assert (output - want).abs().max().item() <= TOLERANCE, fmt
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["formats"]) == {"source", "pt2", "torchscript", "onnx"}
    for fmt, entry in manifest["formats"].items():
        assert entry["max_abs_diff"] is not None and entry["max_abs_diff"] <= TOLERANCE, fmt
        assert (out / entry["file"]).is_file()


@pytest.mark.parametrize("kind", ["cell", "chain"])
def test_every_format_matches_the_model(tmp_path, kind):
    if kind == "cell":
        spec = ModelSpec.create(get_reference("DARTS_V2"), init_channels=4, layers=3, auxiliary=True)
    else:
        spec = ModelSpec.create(TINY_CHAIN_GENOTYPE, TINY_CHAIN)
    model = trained_like(spec)
    example = torch.randn(2, 3, 16, 16)
    paths = export(model, "all", tmp_path, example_input=example, spec=spec)
    assert set(paths) == {"source", "pt2", "torchscript", "onnx"}
    check_artifacts(tmp_path, model, 3, 16)
    # the auxiliary head is a training-only branch: not part of any artifact
    weights = torch.load(tmp_path / "model_state_dict.pt", weights_only=True)
    assert not any(k.startswith("auxiliary") for k in weights)


def test_cli_exports_an_nb201_genotype_in_every_format(tmp_path, capsys):
    arch = "|nor_conv_3x3~0|+|none~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_1x1~1|none~2|"
    out = tmp_path / "nb201"
    rc = main(["export", arch, "--format", "all", "--init-channels", "4", "--layers", "5", "--input-size", "16",
               "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "onnx" in printed and "manifest" in printed
    module = import_source(out / "model.py")
    assert module.ARCH["head"] == "bn_relu" and module.ARCH["reduction"] == "residual"
    # the CLI's fresh weights are seeded (--seed 0): rebuild them to compare
    from nas.genotype import from_nb201_string
    from nas.run import seed_everything

    spec = ModelSpec.create(from_nb201_string(arch), init_channels=4, layers=5)
    seed_everything(0)
    check_artifacts(out, spec.build().eval(), 3, 16)


def test_source_runs_with_only_torch(tmp_path):
    spec = ModelSpec.create(get_reference("PC_DARTS"), init_channels=4, layers=3)
    model = trained_like(spec, seed=3)
    export(model, "source", tmp_path / "export", example_input=torch.randn(2, 3, 16, 16), spec=spec)
    source = (tmp_path / "export" / "model.py").read_text()
    lines = [line.strip() for line in source.splitlines()]
    assert not any(line.startswith(("import nas", "from nas")) for line in lines)
    assert not any(line.startswith(("import torchvision", "from torchvision")) for line in lines
                   if "DeformConv2d" not in line)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.save({"x": x, "y": model(x)}, tmp_path / "io.pt")
    # A fresh interpreter outside the repository (site-packages kept: the virtualenv may live
    # inside the checkout): nas, torchvision and safetensors made unimportable, so the file
    # must run on torch alone (weights from the .pt state dict).
    script = textwrap.dedent(f"""
        import sys
        for name in ("nas", "torchvision", "safetensors"):
            sys.modules[name] = None
        sys.path = [p for p in sys.path if p and ("-packages" in p or not p.startswith({str(REPO)!r}))]
        import importlib.util, torch
        spec = importlib.util.spec_from_file_location("model", {str(tmp_path / 'export' / 'model.py')!r})
        model = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(model)
        net = model.load()
        data = torch.load({str(tmp_path / 'io.pt')!r}, weights_only=True)
        diff = (net(data["x"]) - data["y"]).abs().max().item()
        assert not net.training
        print("DIFF", diff)
        print("NAS", [m for m, v in sys.modules.items() if v is not None and m.split(".")[0] == "nas"])
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    diff = float(done.stdout.split("DIFF")[1].split()[0])
    assert diff <= TOLERANCE
    assert "NAS []" in done.stdout


def every_op_space():
    """A cell space holding every registered op, one node per two ops, so one genotype uses
    each op once in the normal cell (stride 1) and once in the reduction cell (stride 2)."""
    ops = list_ops()
    nodes = math.ceil(len(ops) / 2)
    space = space_from_dict({"name": "everyop", "kind": "cell", "ops": ops,
                             "cell": {"inputs": 2, "nodes": nodes, "edges_per_node": 2},
                             "network": {"init_channels": 4, "layers": 3}})
    padded = ops + ["skip_connect"] * (2 * nodes - len(ops))
    # normal cell: node i reads nodes i and i+1 (stride 1); reduction cell: every node reads the
    # two cell inputs, so every op is also built with stride 2
    normal = CellGenotype(tuple(((padded[2 * i], i), (padded[2 * i + 1], i + 1)) for i in range(nodes)),
                          space.default_concat())
    reduction = CellGenotype(tuple(((padded[2 * i + 1], 0), (padded[2 * i], 1)) for i in range(nodes)),
                             space.default_concat())
    return space, Genotype.from_cells("everyop", normal=normal, reduction=reduction)


def test_every_registered_op_exports_as_source(tmp_path):
    space, genotype = every_op_space()
    spec = ModelSpec.create(genotype, space, init_channels=4, layers=3)
    used = {op for _, c in genotype.cells for node in c.nodes for op, _ in node}
    assert used == set(list_ops())
    model = trained_like(spec, seed=1)
    with pytest.warns(UserWarning, match="torchvision"):
        export(model, "source", tmp_path, example_input=torch.randn(2, 3, 16, 16), spec=spec)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["formats"]["source"]["max_abs_diff"] <= TOLERANCE
    assert manifest["requires"] == ["torch", "torchvision"]
    assert "torchvision" in (tmp_path / "model.py").read_text().split('"""')[1]  # said in the docstring
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        diff = (import_source(tmp_path / "model.py").load()(x) - model(x)).abs().max().item()
    assert diff <= TOLERANCE


def test_bad_export_inputs(tmp_path, capsys):
    spec = ModelSpec.create(get_reference("NB201_RESNET"), init_channels=4, layers=5)
    model = spec.build()
    with pytest.raises(NasError, match="unknown export format 'tflite'"):
        export(model, "source,tflite", tmp_path / "a", spec=spec)
    with pytest.raises(NasError, match="needs the architecture"):
        export(model, "source", tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    with pytest.raises(NasError, match="pass out_dir"):
        export(model, "pt2")
    damaged = tmp_path / "broken.pt"
    damaged.write_bytes(b"not a checkpoint")
    with pytest.raises(NasError, match="not a readable checkpoint"):
        export(damaged, "source", tmp_path / "c")
    bad_genotype = tmp_path / "genotype.json"
    bad_genotype.write_text("{not json")
    assert main(["export", str(bad_genotype), "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "not valid JSON" in err
    assert main(["export", "DARTS_V2", "--format", "keras", "--out", str(tmp_path / "e")]) == 2
    assert "unknown export format 'keras'" in capsys.readouterr().err
    assert not (tmp_path / "d").exists() and not (tmp_path / "e").exists()


def test_a_format_whose_library_is_missing_fails_before_anything_is_written(tmp_path, monkeypatch):
    import nas.export.exporter

    monkeypatch.setitem(nas.export.exporter._OPTIONAL, "onnx", ("nas_no_such_module",))
    spec = ModelSpec.create(get_reference("NB201_RESNET"), init_channels=4, layers=5)
    with pytest.raises(NasError, match=r"the onnx export needs nas_no_such_module, which is not installed: pip"):
        export(spec.build(), "source,onnx", tmp_path / "out", spec=spec)
    assert not (tmp_path / "out").exists()


def test_an_export_folder_is_written_again_only_with_overwrite(tmp_path):
    first = ModelSpec.create(get_reference("NB201_RESNET"), init_channels=4, layers=5)
    export(first.build(), "source", tmp_path / "out", spec=first)
    before = {f.name: f.read_bytes() for f in (tmp_path / "out").iterdir()}
    with pytest.raises(NasError, match="already exists and is not empty; choose a new --out, or pass --overwrite"):
        export(first.build(), "torchscript", tmp_path / "out", spec=first)
    assert {f.name: f.read_bytes() for f in (tmp_path / "out").iterdir()} == before
    # with overwrite, the same model's earlier export keeps its other formats
    export(first.build(), "torchscript", tmp_path / "out", spec=first, overwrite=True)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert set(manifest["formats"]) == {"source", "torchscript"} and manifest["model"] == first.to_dict()
    # another model's export is replaced, not added to: the manifest vouches for the new files only
    other = ModelSpec.create(get_reference("NB201_RESNET"), init_channels=8, layers=5)
    export(other.build(), "source", tmp_path / "out", spec=other, overwrite=True)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert set(manifest["formats"]) == {"source"} and manifest["model"] == other.to_dict()
    assert (tmp_path / "out" / "model.torchscript.pt").is_file()  # never deleted


def test_exported_files_share_one_file_mode(tmp_path):
    spec = ModelSpec.create(get_reference("NB201_RESNET"), init_channels=4, layers=5)
    export(spec.build(), "source", tmp_path / "out", spec=spec)
    modes = {f.name: f.stat().st_mode for f in (tmp_path / "out").iterdir()}
    assert len(set(modes.values())) == 1, modes  # safetensors alone would write its file 0600


def test_an_op_and_a_head_registered_here_export_as_source(tmp_path):
    space = space_from_dict({"name": "gated", "kind": "cell", "ops": ["gated_conv_3x3", "skip_connect"],
                             "cell": {"inputs": 2, "nodes": 2, "edges_per_node": 2},
                             "network": {"init_channels": 4, "layers": 3}})
    cell = CellGenotype(((("gated_conv_3x3", 0), ("skip_connect", 1)), (("gated_conv_3x3", 2), ("gated_conv_3x3", 1))),
                        space.default_concat())
    genotype = Genotype.from_cells("gated", normal=cell, reduction=cell)
    spec = ModelSpec.create(genotype, space, init_channels=4, layers=3)
    model = trained_like(spec, seed=2)
    export(model, "source", tmp_path / "cls", example_input=torch.randn(2, 3, 16, 16), spec=spec)
    text = (tmp_path / "cls" / "model.py").read_text()
    assert "class GatedConv(nn.Module):" in text and "'gated_conv_3x3': (GatedConv, {'gate': 0.5})" in text
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        assert (import_source(tmp_path / "cls" / "model.py").load()(x) - model(x)).abs().max().item() <= TOLERANCE

    seg = ModelSpec.create(genotype, space, task="segmentation", head="mean_toy", num_classes=3, init_channels=4,
                           image_size=32)
    model = trained_like(seg, seed=4)
    with torch.no_grad():
        assert model(torch.rand(2, 3, 32, 32)).shape == (2, 3, 32, 32)
    paths = export(model, "source,pt2", tmp_path / "seg", spec=seg)
    assert set(paths) == {"source", "pt2"}
    manifest = json.loads((tmp_path / "seg" / "manifest.json").read_text())
    assert all(entry["max_abs_diff"] <= TOLERANCE for entry in manifest["formats"].values())
    assert manifest["requires"] == ["torch"] and manifest["task"] == "segmentation"
    text = (tmp_path / "seg" / "model.py").read_text()
    assert "class MeanSegmenter(nn.Module):" in text and "'mean_toy': mean_toy" in text
    assert "@register_head" not in text and "register(" not in text


def _fake_run(path: Path, kind: str, spec: ModelSpec) -> Path:
    """A run folder as `nas detect` / `nas segment` / `nas train` leave it, with fresh weights."""
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"kind": kind, "label": "fake"}))
    torch.manual_seed(0)
    save_checkpoint(path / "checkpoints" / "last.pt", {"model": spec.build().state_dict(), "spec": spec.to_dict()})
    return path


@pytest.mark.slow  # about 30 s; tests/test_task_engine.py checks the detection and segmentation exports by default
def test_nas_export_of_detect_segment_and_search_runs(tmp_path, capsys):
    detect = ModelSpec.create("NB201_RESNET", task="detection", head="retinanet", num_classes=4, init_channels=4,
                              image_size=64)
    run = _fake_run(tmp_path / "detect", "detect", detect)
    assert main(["export", str(run), "--format", "all"]) == 0
    manifest = json.loads((run / "export" / "manifest.json").read_text())
    assert set(manifest["formats"]) == set(formats_for("detection")) == {"source", "torchscript"}
    assert all(entry["max_abs_diff"] <= TOLERANCE for entry in manifest["formats"].values())
    assert manifest["task"] == "detection" and manifest["model"]["head"] == "retinanet"
    exported = import_source(run / "export" / "model.py").load()
    image = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert len(exported([image])) == 1
    assert main(["export", str(run), "--format", "pt2", "--out", str(tmp_path / "pt2")]) == 2
    assert "not available for detection" in capsys.readouterr().err

    segment = ModelSpec.create("DARTS_V2", task="segmentation", head="unet", num_classes=3, init_channels=4,
                               image_size=32)
    run = _fake_run(tmp_path / "segment", "segment", segment)
    assert main(["export", str(run), "--format", "source,onnx"]) == 0
    manifest = json.loads((run / "export" / "manifest.json").read_text())
    assert set(manifest["formats"]) == {"source", "onnx"} and manifest["requires"] == ["torch"]

    search = tmp_path / "search"
    search.mkdir()
    (search / "config.json").write_text(json.dumps({"kind": "random"}))
    get_reference("NB201_RESNET").save(search / "genotype.json")
    capsys.readouterr()
    assert main(["export", str(search), "--init-channels", "4", "--layers", "5", "--out", str(tmp_path / "g")]) == 0
    assert "untrained" in capsys.readouterr().out
    assert (tmp_path / "g" / "model.py").is_file()


def test_nas_export_refuses_what_is_no_run_and_foreign_folders(tmp_path, capsys):
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "notes.txt").write_text("not a run")
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "config.json").write_text("{not json")
    for folder, message in ((plain, "not a run folder"), (damaged, "damaged")):
        assert main(["export", str(folder), "--out", str(tmp_path / "x")]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1
    spec = ModelSpec.create(get_reference("NB201_RESNET"), init_channels=4, layers=5)
    with pytest.raises(NasError, match="already exists and is not empty"):
        export(spec.build(), "source", plain, spec=spec)
    assert sorted(p.name for p in plain.iterdir()) == ["notes.txt"]
    assert not (tmp_path / "x").exists()
    # with overwrite, an earlier export is added to: its other formats stay in the manifest
    export(spec.build(), "source", tmp_path / "ok", spec=spec)
    export(spec.build(), "torchscript", tmp_path / "ok", spec=spec, overwrite=True)
    assert set(json.loads((tmp_path / "ok" / "manifest.json").read_text())["formats"]) == {"source", "torchscript"}
