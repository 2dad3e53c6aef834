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

from nas.builders import ModelSpec
from nas.cli import main
from nas.errors import NasError
from nas.export import TOLERANCE, export, import_source
from nas.genotype import CellGenotype, Genotype, get_reference
from nas.ops import list_ops
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
