"""Zero-cost proxies: each checked against a value worked out by hand on a network of two or
three layers with set weights; the evaluator on a real NAS-Bench-201 cell (images made here);
the ``nas search --evaluator zc`` command; the mistakes a user can make."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from nas.errors import NasError
from nas.evaluators import evaluator_from_config
from nas.evaluators.zero_cost import (
    PROXIES,
    ZeroCostEvaluator,
    grad_norm,
    jacov,
    load_batch,
    naswot,
    params,
    snip,
    synflow,
)
from nas.genotype import from_nb201_string, get_reference
from tests.conftest import shared_data

ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"


def linear(weight: list[list[float]], bias: list[float] | None = None) -> nn.Linear:
    layer = nn.Linear(len(weight[0]), len(weight), bias=bias is not None)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(weight))
        if bias is not None:
            layer.bias.copy_(torch.tensor(bias))
    return layer


def image_folder(root: Path, classes: tuple[str, ...] = ("ants", "bees"), per_class: int = 3, size: int = 32) -> Path:
    """``root/train/<class>/<n>.png``: noise images of a set brightness per class."""
    rng = np.random.default_rng(0)
    for c, name in enumerate(classes):
        folder = root / "train" / name
        folder.mkdir(parents=True)
        for n in range(per_class):
            pixels = rng.integers(0, 256, (size, size, 3)) // (c + 1)
            Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{n}.png")
    return root


# -- each proxy against a value worked out by hand ------------------------------------------------
def test_naswot_is_the_log_determinant_of_the_agreement_counts() -> None:
    # pre-activations of the first ReLU: x W1^T = (1, 2, 3), (-1, 1, 0), (2, -3, -1) -> codes 111, 010, 100
    # (0 is inactive); the second ReLU sees relu(.) . (1, -1, -1) = -4, -1, 2 -> codes 0, 0, 1
    model = nn.Sequential(linear([[1, 0], [0, 1], [1, 1]]), nn.ReLU(), linear([[1, -1, -1]]), nn.ReLU())
    images = torch.tensor([[1.0, 2.0], [-1.0, 1.0], [2.0, -3.0]])
    # agreements: first ReLU [[3,1,1],[1,3,1],[1,1,3]], second [[1,1,0],[1,1,0],[0,0,1]]
    K = [[4, 2, 1], [2, 4, 1], [1, 1, 4]]
    det = (K[0][0] * (K[1][1] * K[2][2] - K[1][2] * K[2][1]) - K[0][1] * (K[1][0] * K[2][2] - K[1][2] * K[2][0])
           + K[0][2] * (K[1][0] * K[2][1] - K[1][1] * K[2][0]))
    assert det == 44
    assert naswot(model, images, torch.zeros(3, dtype=torch.long)) == pytest.approx(math.log(44), abs=1e-12)
    # the hooks are gone afterwards: a second call gives the same, not twice the counts
    assert naswot(model, images, torch.zeros(3, dtype=torch.long)) == pytest.approx(math.log(44), abs=1e-12)


def test_synflow_uses_absolute_weights_an_all_ones_input_and_no_batchnorm() -> None:
    bn = nn.BatchNorm1d(2)
    with torch.no_grad():  # were BatchNorm not switched off, these would change the score
        bn.weight.fill_(3.0)
        bias = bn.bias.fill_(0.5)
    model = nn.Sequential(linear([[1, -2], [3, 0.5]]), bn, nn.ReLU(), linear([[-1, 2]]))
    # R = |W2| relu(|W1| 1) = 1 * 3 + 2 * 3.5 = 10; every weight of W1 contributes |w1_ab| |w2_a| (sum 10) and
    # every weight of W2 contributes |w2_a| (|W1| 1)_a (sum 10): score 20
    images = torch.randn(4, 2)  # only the shape counts
    assert synflow(model, images, torch.zeros(4, dtype=torch.long)) == pytest.approx(20.0, abs=1e-12)
    # the model itself is untouched: signs, dtype and BatchNorm as before
    assert model[0].weight.dtype == torch.float32 and model[0].weight[0, 1].item() == -2.0
    assert isinstance(model[1], nn.BatchNorm1d) and bias[0].item() == 0.5


def _softmax(z: list[float]) -> list[float]:
    e = [math.exp(v) for v in z]
    return [v / sum(e) for v in e]


def test_snip_and_grad_norm_from_the_cross_entropy_gradient() -> None:
    A = [[1.0, -1.0], [0.5, 2.0]]
    B, b = [[2.0, 0.0], [-1.0, 1.0]], [0.1, -0.2]
    model = nn.Sequential(linear(A), linear(B, b))
    xs, ys = [[1.0, 0.0], [0.5, -1.0]], [0, 1]
    grad_A = [[0.0, 0.0], [0.0, 0.0]]
    grad_B = [[0.0, 0.0], [0.0, 0.0]]
    for x, y in zip(xs, ys, strict=True):
        h = [A[r][0] * x[0] + A[r][1] * x[1] for r in range(2)]
        z = [B[r][0] * h[0] + B[r][1] * h[1] + b[r] for r in range(2)]
        delta = [(p - (1.0 if r == y else 0.0)) / len(xs) for r, p in enumerate(_softmax(z))]  # mean over the batch
        back = [B[0][c] * delta[0] + B[1][c] * delta[1] for c in range(2)]
        for r in range(2):
            for c in range(2):
                grad_B[r][c] += delta[r] * h[c]
                grad_A[r][c] += back[r] * x[c]
    expected_snip = sum(abs(W[r][c] * G[r][c]) for W, G in ((A, grad_A), (B, grad_B)) for r in range(2) for c in range(2))
    expected_norm = sum(math.sqrt(sum(G[r][c] ** 2 for r in range(2) for c in range(2))) for G in (grad_A, grad_B))
    images, labels = torch.tensor(xs), torch.tensor(ys)
    assert snip(model, images, labels) == pytest.approx(expected_snip, rel=1e-6)
    assert grad_norm(model, images, labels) == pytest.approx(expected_norm, rel=1e-6)
    assert all(p.grad is None for p in model.parameters())  # the model's own gradients are left alone


def test_jacov_from_the_correlation_of_two_input_gradients() -> None:
    W = [[1.0, 2.0, 0.0], [0.0, -1.0, 3.0]]
    model = nn.Sequential(linear(W), nn.ReLU())
    # image 1 activates both units, image 2 only the first: the gradients of the summed outputs
    # are W1 + W2 = (1, 1, 3) and W1 = (1, 2, 0)
    images = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, -1.0]])
    g1, g2 = [1.0, 1.0, 3.0], [1.0, 2.0, 0.0]
    m1, m2 = sum(g1) / 3, sum(g2) / 3
    cov = sum((a - m1) * (c - m2) for a, c in zip(g1, g2, strict=True))
    r = cov / math.sqrt(sum((a - m1) ** 2 for a in g1) * sum((c - m2) ** 2 for c in g2))
    k = 1e-5
    expected = -sum(math.log(v + k) + 1 / (v + k) for v in (1 + r, 1 - r))  # eigenvalues of [[1, r], [r, 1]]
    assert jacov(model, images, torch.zeros(2, dtype=torch.long)) == pytest.approx(expected, rel=1e-9)
    # an output that ignores its input (a cell whose every path is `none`) has zero gradients: no correlation
    assert math.isnan(jacov(Ignores(), images, torch.zeros(2, dtype=torch.long)))


class Ignores(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :2] * 0.0


def test_params_counts_trainable_parameters() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4, 2))
    frozen = nn.Linear(5, 5)
    frozen.requires_grad_(False)
    model.append(frozen)
    assert params(model, torch.zeros(1, 3, 3, 3), torch.zeros(1, dtype=torch.long)) == 3 * 4 * 9 + 4 + 4 * 2 + 2


# -- the evaluator -----------------------------------------------------------------------------------
def test_the_batch_is_fixed_by_the_seed_and_normalised_by_the_images_statistics(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "imgs")
    whole = load_batch(root, batch_size=6, seed=0)
    assert whole.dataset == "imagefolder" and whole.classes == ("ants", "bees") and whole.images.shape == (6, 3, 32, 32)
    # all six images: the channel statistics they were normalised with are their own
    assert whole.images.mean(dim=(0, 2, 3)).abs().max() < 1e-4
    assert (whole.images.std(dim=(0, 2, 3), unbiased=False) - 1).abs().max() < 1e-4
    a, b = load_batch(root, batch_size=3, seed=1), load_batch(root, batch_size=3, seed=2)
    assert torch.equal(a.images, load_batch(root, batch_size=3, seed=1).images)
    assert not torch.equal(a.images, b.images) or not torch.equal(a.labels, b.labels)


def test_evaluator_on_a_nas_bench_201_cell_is_reproducible(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "imgs")
    genotype = from_nb201_string(ARCH)
    zc = ZeroCostEvaluator(list(PROXIES), data=root, batch_size=4, seed=3, device="cpu", num_classes=10, space="nb201")
    assert zc.objective == "naswot" and zc.space == "nb201"
    assert set(zc.provides) >= {*PROXIES, "proxy_seconds", "naswot_seconds"}
    first = zc.evaluate(genotype)
    assert first["params"] == 802426  # the benchmark's count for this cell (CIFAR-10 network, 10 classes)
    assert all(math.isfinite(first[name]) for name in PROXIES)
    assert first["proxy_seconds"] == pytest.approx(sum(first[f"{name}_seconds"] for name in PROXIES))
    again = evaluator_from_config(json.loads(json.dumps(zc.config())))
    second = again.evaluate(genotype)
    assert {name: second[name] for name in PROXIES} == {name: first[name] for name in PROXIES}
    assert zc.score(genotype, "snip") == first["snip"]
    other = ZeroCostEvaluator("naswot", data=root, batch_size=4, seed=4, device="cpu")
    assert other.score(genotype) != first["naswot"]  # another seed: other images, other weights


def test_cifar10_jpeg_batch_uses_the_training_statistics() -> None:
    data = shared_data("cifar10-jpeg")
    zc = ZeroCostEvaluator("params", data=data, batch_size=4, device="cpu")
    assert zc.dataset == "cifar10" and zc.batch.mean == (0.4914, 0.4822, 0.4465) and zc.num_classes == 10
    assert zc.score(from_nb201_string(ARCH)) == 802426


def test_mistakes_name_what_to_do(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "imgs")
    with pytest.raises(NasError, match=f"zero-cost image data {tmp_path / 'nowhere'} does not exist; pass a folder"):
        ZeroCostEvaluator(data=tmp_path / "nowhere")
    with pytest.raises(NasError, match="unknown zero-cost proxy 'zen'; choose from naswot, synflow"):
        ZeroCostEvaluator("naswot,zen", data=root)
    with pytest.raises(NasError, match="batch_size 7 is more than the 6 images"):
        ZeroCostEvaluator(data=root, batch_size=7)
    with pytest.raises(NasError, match="num_classes must be an integer of at least the 2 classes"):
        ZeroCostEvaluator(data=root, batch_size=2, num_classes=1)
    (tmp_path / "flat").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "flat" / "a.png")
    with pytest.raises(NasError, match="has images but no class folders"):
        ZeroCostEvaluator(data=tmp_path / "flat")
    zc = ZeroCostEvaluator(data=root, batch_size=2, device="cpu", space="nb201")
    with pytest.raises(NasError, match="scores cells of the 'nb201' space, not 'darts'"):
        zc.evaluate(get_reference("DARTS_V2"))
    zc.images = zc.images[:, :, :2, :2]  # images too small for two reductions
    with pytest.raises(NasError, match="network of this genotype cannot take the 32x32 RGB images"):
        zc.evaluate(from_nb201_string(ARCH))


# -- the command -----------------------------------------------------------------------------------
def test_nas_search_with_the_zero_cost_evaluator(tmp_path: Path, capsys) -> None:
    from nas.cli import main

    root = image_folder(tmp_path / "imgs")
    out = tmp_path / "run"
    assert main(["search", "--space", "nb201", "--strategy", "random", "--trials", "2", "--evaluator", "zc",
                 "--zc-proxy", "synflow,naswot", "--zc-data", str(root), "--zc-batch-size", "2", "--device", "cpu",
                 "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())["evaluator"]
    assert config["proxy"] == ["synflow", "naswot"] and config["batch_size"] == 2 and config["data"] == str(root)
    best = json.loads((out / "best.json").read_text())["values"]
    assert set(best) == {"synflow"} and best["synflow"] > 0
    capsys.readouterr()
    for argv, message in ((["--zc-proxy", "fisher"], "--zc-proxy fisher: unknown zero-cost proxy 'fisher'"),
                          (["--zc-batch-size", "1"], "--zc-batch-size: must be in [2, 4096], got 1"),
                          (["--zc-data", str(tmp_path / "none")], "zero-cost image data"),
                          (["--trial-layers", "5"], "--trial-layers does not apply to the zc evaluator")):
        code = main(["search", "--space", "nb201", "--strategy", "random", "--evaluator", "zc",
                     "--zc-data", str(root), *argv, "--out", str(tmp_path / "refused")])
        err = capsys.readouterr().err
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert main(["search", "--space", "nb201", "--strategy", "random", "--zc-proxy", "snip",
                 "--out", str(tmp_path / "refused")]) == 2
    assert "--zc-proxy applies to --evaluator zc" in capsys.readouterr().err


# -- the correlation script's own arithmetic -------------------------------------------------------------
def test_correlation_script_ranks_ties_and_decodes_naslib_keys() -> None:
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "scripts" / "zero_cost_correlation.py"
    spec = importlib.util.spec_from_file_location("zero_cost_correlation", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    # ranks (1, 2.5, 2.5, 4) and (1, 3, 2, 4): deviations (-1.5, 0, 0, 1.5), (-1.5, .5, -.5, 1.5) -> 4.5 / sqrt(4.5 * 5)
    assert script.spearman([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(3 / math.sqrt(10), abs=1e-12)
    assert script.spearman([3, 2, 1], [-np.inf, 0.0, 5.0]) == pytest.approx(-1.0)
    # NASLib: ops 0..4 = skip, none, conv 3x3, conv 1x1, avg pool on edges 0->1, 0->2, 0->3, 1->2, 1->3, 2->3
    assert script.decode("(4, 3, 3, 3, 2, 3)") == ("|avg_pool_3x3~0|+|nor_conv_1x1~0|nor_conv_1x1~1|"
                                                   "+|nor_conv_1x1~0|nor_conv_3x3~1|nor_conv_1x1~2|")
    assert script.decode("(0, 1, 2, 1, 1, 0)") == "|skip_connect~0|+|none~0|none~1|+|nor_conv_3x3~0|none~1|skip_connect~2|"
