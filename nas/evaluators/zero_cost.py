"""Zero-cost proxies: score an untrained network from one mini-batch, in about a second.

A proxy is a function ``fn(model, images, labels) -> float`` (higher is better) in
:data:`PROXIES`. Each one follows the reference code of its paper; what it does with the
network's mode and its layers is said in its docstring:

* ``naswot``: Mellor et al., "Neural Architecture Search without Training" (ICML 2021);
* ``synflow``: Tanaka et al. 2020, as used for NAS by Abdelfattah et al., "Zero-Cost Proxies
  for Lightweight NAS" (ICLR 2021);
* ``snip``, ``grad_norm``: as defined in Abdelfattah et al.;
* ``jacov``: Mellor et al., arXiv 2006.04647 v1 (the Jacobian covariance score);
* ``params``: the trainable parameter count.

"Layers" below means every ``nn.Conv2d`` and ``nn.Linear`` module, and only their weights
(not biases, not BatchNorm), as the reference code collects them.

:class:`ZeroCostEvaluator` (registered as ``zc``) builds each genotype's classifier with a
seeded initialisation and scores it on a mini-batch drawn once, with the seed, from an image
set (the training split of a class-folder tree or zip; CIFAR-10 JPEG by default), so a score
is reproducible on the CPU. :meth:`ZeroCostEvaluator.score` and the module function
:func:`score` rank many cells without reading the images again.

>>> from nas.genotype import get_reference
>>> zc = ZeroCostEvaluator(["naswot", "synflow"], data="../shared/data/cifar10-jpeg")  # doctest: +SKIP
>>> sorted(zc.evaluate(get_reference("NB201_RESNET")))  # doctest: +SKIP
['naswot', 'naswot_seconds', 'params', 'proxy_seconds', 'synflow', 'synflow_seconds']
>>> score(get_reference("NB201_RESNET"), "snip", batch_size=16)  # doctest: +SKIP
"""
from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nas.data.base import Normalise, channel_stats
from nas.data.cifar import SPECS
from nas.data.files import CLASS_LAYOUT, FileTree, decode_all, find_splits, scan_classes
from nas.errors import NasError
from nas.evaluators.base import Evaluator, Report, register_evaluator
from nas.genotype import Genotype
from nas.measure import count_parameters
from nas.space import SearchSpace, load_space, space_from_dict

Proxy = Callable[[nn.Module, torch.Tensor, torch.Tensor], float]

PROXIES: dict[str, Proxy] = {}

# 64 images: the batch of Abdelfattah et al.'s NAS-Bench-201 runs, whose definitions of synflow,
# snip, grad_norm and jacov these follow; a cell then takes about a second per proxy on two CPU
# cores. NASWOT's paper used 128; NAS-Bench-Suite-Zero's published scores used 32.
DEFAULT_BATCH_SIZE = 64
DEFAULT_IMAGE_SIZE = 32
JACOV_K = 1e-5  # jacov's eigenvalue offset (Mellor et al. 2020, v1)
STATS_SAMPLE = 1024  # images (a fixed sample) whose channel statistics normalise a set other than CIFAR
DATASETS = ("cifar10", "cifar100", "imagefolder")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def register_proxy(name: str) -> Callable[[Proxy], Proxy]:
    def register(fn: Proxy) -> Proxy:
        PROXIES[name] = fn
        return fn

    return register


def check_proxies(names: str | Sequence[str]) -> tuple[str, ...]:
    """``"naswot,synflow"`` or ``["naswot", "synflow"]`` -> the names, checked (first one first)."""
    items = names.split(",") if isinstance(names, str) else list(names)
    chosen = tuple(str(n).strip() for n in items if str(n).strip())
    if not chosen:
        raise NasError(f"no zero-cost proxy named; choose from {', '.join(PROXIES)}")
    for name in chosen:
        if name not in PROXIES:
            raise NasError(f"unknown zero-cost proxy {name!r}; choose from {', '.join(PROXIES)}")
    if len(set(chosen)) != len(chosen):
        raise NasError(f"a zero-cost proxy is named twice in {','.join(chosen)}; name each once")
    return chosen


def _logits(output: Any) -> torch.Tensor:
    """A classifier's logits (the first element when it also returns auxiliary logits)."""
    return output[0] if isinstance(output, (tuple, list)) else output


def _layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def _loss_gradients(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``(weight, d loss / d weight)`` of every layer, for the cross-entropy of one batch in train
    mode; the model's ``.grad`` fields are left as they were."""
    model.train()
    weights = [m.weight for m in _layers(model)]
    loss = F.cross_entropy(_logits(model(images)), labels)
    grads = torch.autograd.grad(loss, weights, allow_unused=True)
    return [(w, torch.zeros_like(w) if g is None else g) for w, g in zip(weights, grads, strict=True)]


@register_proxy("naswot")
def naswot(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """log |K_H|: ``K[i, j]`` counts the ReLU units on which images ``i`` and ``j`` agree (both
    active or both inactive), summed over every ``nn.ReLU`` / ``nn.ReLU6`` module call of one
    forward pass in train mode (BatchNorm on batch statistics), as the reference code (which
    never switches the network to eval) does. ``slogdet`` gives the log; a singular ``K`` is
    ``-inf``.

    The reference counts only ReLUs reached by a backward pass; in NAS-Bench-201's network its
    zero op multiplies by 0 and so keeps every ReLU on that path. This builder makes no module
    for ``none`` edges, so the ReLUs of a branch that only feeds ``none`` edges are counted
    here as they are there: every ReLU that runs."""
    n = images.shape[0]
    K = torch.zeros(n, n, dtype=torch.float64, device=images.device)

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        active = (inputs[0].detach().flatten(1) > 0)
        units = active.shape[1]
        # 0/1 sums stay exact in float32 below 2**24 units
        codes = active.to(torch.float32 if units < 2**24 else torch.float64)
        both = (codes @ codes.T).double()
        count = codes.sum(dim=1).double()
        # both inactive: units - count_i - count_j + both active
        K.add_(2 * both - count[:, None] - count[None, :] + units)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.ReLU, nn.ReLU6))]
    model.train()
    try:
        with torch.no_grad():
            model(images)
    finally:
        for handle in handles:
            handle.remove()
    return float(torch.linalg.slogdet(K.cpu()).logabsdet)


def _without_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose BatchNorm modules are identities."""
    net = copy.deepcopy(model)
    for module in list(net.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.modules.batchnorm._BatchNorm):
                setattr(module, name, nn.Identity())
    return net


@register_proxy("synflow")
def synflow(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """sum over layer weights of ``|theta * dR/dtheta|``, ``R`` the sum of the outputs for one
    all-ones input, on a float64 copy of the network whose parameters and buffers are replaced
    by their absolute values and whose BatchNorm is switched off (an identity, the reference
    code's ``bn=False``). The copy runs in eval mode, which with BatchNorm gone only turns off
    drop-path and auxiliary heads. Only the images' shape is used; ``model`` is unchanged.

    This is the raw sum; NAS-Bench-Suite-Zero publishes its natural logarithm (same ranking)."""
    net = _without_batchnorm(model).double().eval()
    with torch.no_grad():
        for tensor in net.state_dict().values():
            if tensor.is_floating_point():
                tensor.abs_()
    ones = torch.ones(1, *images.shape[1:], dtype=torch.float64, device=images.device)
    weights = [m.weight for m in _layers(net)]
    grads = torch.autograd.grad(_logits(net(ones)).sum(), weights, allow_unused=True)
    return float(sum((w * g).abs().sum().item() for w, g in zip(weights, grads, strict=True) if g is not None))


@register_proxy("snip")
def snip(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """sum over layer weights of ``|w * dL/dw|``, ``L`` the cross-entropy of the batch in train
    mode (SNIP's connection sensitivity: the gradient of a multiplicative mask of ones)."""
    return float(sum((w * g).abs().sum().item() for w, g in _loss_gradients(model, images, labels)))


@register_proxy("grad_norm")
def grad_norm(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """sum over layers of the L2 norm of ``dL/dw`` (the cross-entropy of the batch in train mode)."""
    return float(sum(g.norm().item() for _, g in _loss_gradients(model, images, labels)))


@register_proxy("jacov")
def jacov(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """``-sum(log(v + k) + 1 / (v + k))`` over the eigenvalues ``v`` of the correlation matrix of
    the per-image input gradients of the summed outputs (train mode, so the gradient of image
    ``i`` also holds its effect through the batch statistics, as in the reference), ``k = 1e-5``.
    At most ``-batch_size``, reached when the gradients are uncorrelated. NaN when a gradient is
    constant (a network whose output ignores its input); eigenvalues come from ``eigvalsh``, the
    matrix being symmetric."""
    model.train()
    x = images.detach().clone().requires_grad_(True)
    y = _logits(model(x))
    if not y.requires_grad:  # an output that ignores the input (every path through a cell is `none`)
        return math.nan
    (jacobian,) = torch.autograd.grad(y, x, grad_outputs=torch.ones_like(y), allow_unused=True)
    if jacobian is None:
        return math.nan
    rows = jacobian.flatten(1).double().cpu().numpy()
    with np.errstate(all="ignore"):
        corr = np.corrcoef(rows)
    if not np.isfinite(corr).all():
        return math.nan
    v = np.linalg.eigvalsh(corr)
    with np.errstate(all="ignore"):
        return float(-np.sum(np.log(v + JACOV_K) + 1.0 / (v + JACOV_K)))


@register_proxy("params")
def params(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Trainable parameters (without auxiliary heads, as papers count them)."""
    return float(count_parameters(model))


@dataclass(frozen=True)
class ImageBatch:
    """A normalised mini-batch: ``images`` float ``(N, 3, size, size)``, ``labels`` ``(N,)``."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    dataset: str
    where: str  # the image tree, for messages


def default_zero_cost_data() -> Path | None:
    """``../shared/data/cifar10-jpeg`` (next to the working folder or to this project) if it
    holds ``train.zip`` or ``train/``, else ``None``."""
    project = Path(__file__).resolve().parents[2]
    for base in (Path.cwd(), project):
        candidate = base.parent / "shared" / "data" / "cifar10-jpeg"
        if (candidate / "train.zip").is_file() or (candidate / "train").is_dir():
            return candidate
    return None


def load_batch(data: str | Path, *, batch_size: int = DEFAULT_BATCH_SIZE, seed: int = 0,
               dataset: str | None = None, image_size: int = DEFAULT_IMAGE_SIZE) -> ImageBatch:
    """``batch_size`` images drawn with ``seed`` from the training split at ``data`` (a folder or
    zip holding ``train/<class>/<image>`` or ``train.zip``, or just ``<class>/<image>``),
    resized to ``image_size`` and normalised as the training code does: CIFAR-10 / CIFAR-100
    with their usual channel statistics, any other set (``imagefolder``) with statistics
    estimated from a fixed sample of up to 1024 of its images. ``dataset`` None: ``cifar10``
    when the class folders are CIFAR-10's ten classes, else ``imagefolder``. Read once per
    process for each set of arguments."""
    if dataset is not None and dataset not in DATASETS:
        raise NasError(f"unknown data set {dataset!r} for the zero-cost batch; choose one of {', '.join(DATASETS)}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 2:
        raise NasError(f"the zero-cost batch_size must be an integer of at least 2, got {batch_size!r}")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 8:
        raise NasError(f"image_size must be an integer of at least 8 pixels, got {image_size!r}")
    path = Path(data).expanduser().resolve()
    return _load_batch(str(path), batch_size, seed, dataset, image_size)


@lru_cache(maxsize=8)
def _load_batch(path_text: str, batch_size: int, seed: int, dataset: str | None, image_size: int) -> ImageBatch:
    path = Path(path_text)
    if not path.exists():
        raise NasError(f"zero-cost image data {path} does not exist; pass a folder or zip of {CLASS_LAYOUT} class "
                       "folders, optionally inside train/ (--zc-data PATH)")
    splits = find_splits(path)
    tree = next((splits[s] for s in ("train", "val", "test") if s in splits), None) or FileTree.open(path).unwrap()
    classes, names, labels = scan_classes(tree)
    if batch_size > len(names):
        raise NasError(f"batch_size {batch_size} is more than the {len(names)} images under {tree.where()}; "
                       "pass a smaller batch size (--zc-batch-size N)")
    if dataset is None:
        dataset = "cifar10" if tuple(classes) == CIFAR10_CLASSES else "imagefolder"
    order = torch.randperm(len(names), generator=torch.Generator().manual_seed(seed))[:batch_size].tolist()
    raw = decode_all(tree, [names[i] for i in order], image_size)
    if dataset in SPECS:
        mean, std = SPECS[dataset].mean, SPECS[dataset].std
    else:  # the sample nas.data.imagefolder estimates a large set's statistics from
        sample = torch.randperm(len(names), generator=torch.Generator().manual_seed(0))[:STATS_SAMPLE].tolist()
        mean, std = channel_stats(decode_all(tree, [names[i] for i in sorted(sample)], image_size))
    images = Normalise(mean, std)(raw)
    return ImageBatch(images=images, labels=torch.tensor([labels[i] for i in order]), classes=tuple(classes),
                      mean=tuple(mean), std=tuple(std), dataset=dataset, where=tree.where())


@register_evaluator("zc")
class ZeroCostEvaluator(Evaluator):
    """Scores genotypes by zero-cost proxies of their untrained classifier (seconds per cell).

    proxy: a name of :data:`PROXIES`, or several (a list or ``"naswot,synflow"``); the first
        is the objective, and every one is returned (so a search may optimise several).
    data: image folder or zip (default :func:`default_zero_cost_data`, CIFAR-10 JPEG).
    dataset: ``cifar10``, ``cifar100`` or ``imagefolder``: which channel statistics normalise
        the images (default: from the class folders, see :func:`load_batch`).
    batch_size: images in the one mini-batch (default 64, see :data:`DEFAULT_BATCH_SIZE`).
    seed: draws the batch and initialises every network (the same weights for one genotype on
        every call).
    device: ``auto``, ``cpu``, ``cuda``, ``cuda:N``.
    num_classes: the classifier's outputs (default: the data's classes).
    image_size: side of the square images (default 32).
    space: the space the genotypes belong to (default: each genotype's own).

    :meth:`evaluate` returns each proxy, ``params``, ``proxy_seconds`` (all proxies together,
    without building the network) and ``<proxy>_seconds`` for each.
    """

    def __init__(self, proxy: str | Sequence[str] = "naswot", *, data: str | Path | None = None,
                 dataset: str | None = None, batch_size: int = DEFAULT_BATCH_SIZE, seed: int = 0,
                 device: str = "auto", num_classes: int | None = None, image_size: int = DEFAULT_IMAGE_SIZE,
                 space: SearchSpace | str | dict[str, Any] | None = None) -> None:
        from nas.run import resolve_device

        self.proxies = check_proxies(proxy)
        self.objective = self.proxies[0]
        if data is None:
            data = default_zero_cost_data()
            if data is None:
                raise NasError("no image data for the zero-cost proxies: ../shared/data/cifar10-jpeg is absent; pass a "
                               "folder or zip of <class>/<image> folders (--zc-data PATH)")
        self.data = Path(data)
        if isinstance(space, dict):  # as written by config()
            space = space_from_dict(space, source="evaluator config")
        self.search_space = load_space(space) if space is not None else None
        self.space = self.search_space.name if self.search_space is not None else ""
        self.device_name = device
        self.device = resolve_device(device)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise NasError(f"the zero-cost seed must be a non-negative integer, got {seed!r}")
        self.seed = seed
        self.batch_size = batch_size
        self.image_size = image_size
        self.batch = load_batch(self.data, batch_size=batch_size, seed=seed, dataset=dataset, image_size=image_size)
        self.dataset = self.batch.dataset
        classes = len(self.batch.classes)
        if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int)
                                        or num_classes < classes):
            raise NasError(f"num_classes must be an integer of at least the {classes} classes of "
                           f"{self.batch.where}, got {num_classes!r}")
        self.num_classes = classes if num_classes is None else num_classes
        self.images = self.batch.images.to(self.device)
        self.labels = self.batch.labels.to(self.device)

    @property
    def provides(self) -> tuple[str, ...]:
        seconds = tuple(f"{p}_seconds" for p in self.proxies)
        return (*self.proxies, *(("params",) if "params" not in self.proxies else ()), "proxy_seconds", *seconds)

    def network(self, genotype: Genotype) -> nn.Module:
        """The genotype's classifier, initialised from the evaluator's seed, on its device."""
        from nas.builders.spec import build_classifier

        if not isinstance(genotype, Genotype):
            raise NasError(f"the zero-cost evaluator scores genotypes, got {type(genotype).__name__}")
        if self.search_space is not None and genotype.space != self.search_space.name:
            raise NasError(f"this zero-cost evaluator scores cells of the {self.search_space.name!r} space, not "
                           f"{genotype.space!r}; search with --space {genotype.space} or give it that space")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            model = build_classifier(genotype, self.search_space, num_classes=self.num_classes).to(self.device)
        try:  # one image through first: a network these images cannot feed is the user's mistake, not a crash
            with torch.no_grad():
                model.eval()(self.images[:1])
        except RuntimeError as exc:
            reason = " ".join(str(exc).split())[:160]
            raise NasError(f"the {genotype.space} network of this genotype cannot take the {self.image_size}x"
                           f"{self.image_size} RGB images of {self.batch.where} ({reason}); use larger images "
                           "(image_size) or a space made for them") from None
        return model

    def scores(self, genotype: Genotype, proxies: str | Sequence[str] | None = None) -> dict[str, float]:
        """Every proxy of ``proxies`` (default the evaluator's), its seconds (``<proxy>_seconds``) and
        ``params``, on one network."""
        names = self.proxies if proxies is None else check_proxies(proxies)
        model = self.network(genotype)
        out: dict[str, float] = {}
        for name in names:
            start = time.perf_counter()
            out[name] = PROXIES[name](model, self.images, self.labels)
            out[f"{name}_seconds"] = time.perf_counter() - start
        out.setdefault("params", float(count_parameters(model)))
        return out

    def score(self, genotype: Genotype, proxy: str | None = None) -> float:
        """One proxy (default the objective) of ``genotype``, on the evaluator's batch."""
        name = self.objective if proxy is None else check_proxies(proxy)[0]
        return self.scores(genotype, (name,))[name]

    def evaluate(self, genotype: Genotype, *, report: Report | None = None,
                 workdir: Path | None = None) -> dict[str, Any]:
        values = self.scores(genotype)
        metrics = {name: values[name] for name in (*self.proxies, "params")}
        metrics["proxy_seconds"] = sum(values[f"{name}_seconds"] for name in self.proxies)
        metrics.update({f"{name}_seconds": values[f"{name}_seconds"] for name in self.proxies})
        return metrics

    def config(self) -> dict[str, Any]:
        return {"name": "zc", "proxy": list(self.proxies), "data": str(self.data), "dataset": self.dataset,
                "batch_size": self.batch_size, "seed": self.seed, "device": self.device_name,
                "num_classes": self.num_classes, "image_size": self.image_size,
                "space": self.search_space.to_dict() if self.search_space is not None else None}


_SCORERS: dict[tuple[Any, ...], ZeroCostEvaluator] = {}


def score(genotype: Genotype, proxy: str = "naswot", *, data: str | Path | None = None, dataset: str | None = None,
          batch_size: int = DEFAULT_BATCH_SIZE, seed: int = 0, device: str = "auto", num_classes: int | None = None,
          image_size: int = DEFAULT_IMAGE_SIZE) -> float:
    """One proxy of ``genotype``; the evaluator (and its batch) for a set of settings is made
    once per process, so ranking thousands of cells reads the images once."""
    key = (None if data is None else str(Path(data).expanduser().resolve()), dataset, batch_size, seed, device,
           num_classes, image_size)
    if key not in _SCORERS:
        _SCORERS[key] = ZeroCostEvaluator(proxy, data=data, dataset=dataset, batch_size=batch_size, seed=seed,
                                          device=device, num_classes=num_classes, image_size=image_size)
    return _SCORERS[key].score(genotype, proxy)


__all__ = ["DEFAULT_BATCH_SIZE", "PROXIES", "ImageBatch", "ZeroCostEvaluator", "check_proxies", "default_zero_cost_data",
           "grad_norm", "jacov", "load_batch", "naswot", "params", "register_proxy", "score", "snip", "synflow"]
