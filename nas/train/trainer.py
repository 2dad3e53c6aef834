"""Train one genotype from scratch into a run folder, with checkpoints, curves and an export.

The loop follows the DARTS evaluation recipe (SGD + cosine schedule, Cutout, auxiliary head,
linearly growing drop-path, gradient clipping); mixed precision and channels-last apply on a
GPU only. Every epoch ends with a checkpoint that restores the model, optimizer, scheduler,
grad scaler and every random generator, so ``resume`` continues a killed run and, on the CPU,
ends with the same weights and metrics as a run that was never interrupted.
"""
from __future__ import annotations

import contextlib
import resource
import sys
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from nas.builders.spec import ModelSpec
from nas.checkpoint import (
    copy_checkpoint,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from nas.data import get_dataset
from nas.data.base import TensorImageDataset, stratified_split
from nas.errors import NasError
from nas.genotype import Genotype, resolve_genotype
from nas.measure import measure
from nas.run import Run, resolve_device, seed_everything
from nas.space import SearchSpace, load_space
from nas.train.config import TrainConfig, dataset_key, recipe
from nas.train.curves import plot_curves

Report = Callable[[int, dict[str, Any]], None]
SUBSET_SEED = 0  # data subsets are a property of the benchmark, not of the run: every seed sees the same images


@dataclass
class TrainResult:
    """What :func:`train` returns: the run folder, the last epoch's metrics (plus the best
    validation accuracy), the trained model (eval mode, on the training device) and its exports."""

    run: Path
    metrics: dict[str, Any]
    model: nn.Module
    spec: ModelSpec
    exports: dict[str, Path] = field(default_factory=dict)


@dataclass
class _Plan:
    """Everything checked before the run folder is created or touched."""

    spec: ModelSpec
    config: TrainConfig
    dataset: str
    data_root: str | None
    train_set: Dataset
    val_set: Dataset
    image_size: int
    label: str
    test_set: Dataset | None = None  # scored once at the end when validation is held out of the training set


def train(genotype: Genotype | str | None, dataset: str | None = None, *, config: TrainConfig | None = None,
          space: SearchSpace | str | None = None, out: str | Path | None = None, resume: str | Path | None = None,
          report: Report | None = None, progress: bool = True, data_root: str | Path | None = None) -> TrainResult:
    """Train ``genotype`` on ``dataset`` in a new run folder, or continue the run ``resume``.

    genotype: a :class:`Genotype`, a reference name, a genotype.json, a run folder or a
        NAS-Bench-201 string; may be ``None`` with ``resume`` (the run knows it).
    config: settings; default :func:`recipe` of ``dataset``. A resumed run keeps its own.
    out: run folder to create (must not exist or be empty); default ``runs/train-<name>-<time>``.
    report: called as ``report(epoch, metrics)`` after each epoch's checkpoint; raising in it
        stops training (an Optuna pruner, a Ray Tune scheduler) and the exception propagates.
    progress: a progress bar and one summary line per epoch.

    >>> result = train("DARTS_V2", "digits", config=TrainConfig(epochs=1, init_channels=4, layers=3))  # doctest: +SKIP
    >>> result.metrics["val_acc"], result.run  # doctest: +SKIP
    """
    if resume is not None:
        run, plan, state = _plan_resume(Path(resume), genotype, dataset, config, space, data_root)
    else:
        plan = _plan_new(genotype, dataset, config, space, data_root)
        run, state = None, None
    cfg = plan.config
    device = resolve_device(cfg.device)
    amp_dtype = _amp_dtype(cfg.precision, device)
    channels_last = device.type == "cuda" if cfg.channels_last is None else cfg.channels_last
    memory_format = torch.channels_last if channels_last else torch.contiguous_format

    seed_everything(cfg.seed)
    model = plan.spec.build()
    if run is None:
        run = _create_run(plan, model, out)
    model = model.to(device, memory_format=memory_format)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs, eta_min=cfg.lr_min)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    loader_generator = torch.Generator().manual_seed(cfg.seed)
    start_epoch, best = 0, {"val_acc": -1.0, "epoch": 0}
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if state["scaler"]:
            scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"], loader_generator)
        start_epoch, best = int(state["epoch"]), dict(state["best"])
    run.truncate_metrics(start_epoch)  # drop epochs logged after the checkpoint of a killed run

    cuda = device.type == "cuda"
    train_loader = DataLoader(plan.train_set, batch_size=cfg.batch_size, shuffle=True, drop_last=True,
                              generator=loader_generator, num_workers=cfg.num_workers, pin_memory=cuda)
    val_loader = DataLoader(plan.val_set, batch_size=cfg.batch_size, shuffle=False,
                            num_workers=cfg.num_workers, pin_memory=cuda)
    steps = len(train_loader) if cfg.max_train_batches is None else min(len(train_loader), cfg.max_train_batches)
    autocast: Callable[[], AbstractContextManager] = (
        (lambda: torch.autocast(device_type="cuda", dtype=amp_dtype)) if amp_dtype is not None
        else contextlib.nullcontext)
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    if progress:
        what = f"resuming {run.path} after epoch {start_epoch}" if start_epoch else f"training into {run.path}"
        tqdm.write(f"{what}: {plan.label} ({plan.spec.describe()}) on {plan.dataset}, {len(plan.train_set)} train / "
                   f"{len(plan.val_set)} val images, {cfg.epochs} epochs x {steps} steps, device {device}"
                   + (f", {str(amp_dtype).removeprefix('torch.')} autocast" if amp_dtype else "")
                   + (", channels-last" if channels_last else ""))

    records = run.metrics()
    try:
        for epoch in range(start_epoch + 1, cfg.epochs + 1):
            started = time.perf_counter()
            drop_prob = cfg.drop_path * (epoch - 1) / cfg.epochs
            model.set_drop_path(drop_prob)
            lr = scheduler.get_last_lr()[0]
            train_loss, train_acc, seen = _train_epoch(
                model, train_loader, optimizer, scaler, autocast, device, memory_format, cfg, steps,
                desc=f"epoch {epoch}/{cfg.epochs}", progress=progress)
            train_time = time.perf_counter() - started
            scheduler.step()
            val_loss, val_acc = _evaluate(model, val_loader, autocast, device, memory_format)
            record = {"epoch": epoch, "train_loss": train_loss, "train_acc": train_acc, "val_loss": val_loss,
                      "val_acc": val_acc, "lr": lr, "drop_path": drop_prob,
                      "epoch_time_s": time.perf_counter() - started, "train_images": seen,
                      "images_per_s": seen / train_time,
                      "peak_mem_mib": peak_memory_mib(device)}
            run.log(record, step=epoch)
            records.append(record)
            improved = val_acc > best["val_acc"]
            if improved:
                best = {"val_acc": val_acc, "epoch": epoch}
            last = save_checkpoint(run.path / "checkpoints" / "last.pt", {
                "epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict() if scaler.is_enabled() else {},
                "rng": rng_state(loader_generator, cuda=cuda), "spec": plan.spec.to_dict(), "train": cfg.to_dict(),
                "dataset": plan.dataset, "best": best})
            if improved:
                copy_checkpoint(last, run.path / "checkpoints" / "best.pt")
            plot_curves(records, run.path / "curves.png", title=f"{plan.label} on {plan.dataset}")
            if progress:
                tqdm.write(f"epoch {epoch}/{cfg.epochs}  train loss {train_loss:.3f} acc {train_acc:.1%}  "
                           f"val loss {val_loss:.3f} acc {val_acc:.1%}  lr {lr:.4g}  "
                           f"{record['epoch_time_s']:.1f}s  {record['images_per_s']:.0f} img/s")
            if report is not None:
                report(epoch, record)
        final: dict[str, Any] = {}
        if plan.test_set is not None:  # validation was held out of the training set: score the test split once
            test_loader = DataLoader(plan.test_set, batch_size=cfg.batch_size, shuffle=False,
                                     num_workers=cfg.num_workers, pin_memory=cuda)
            final["test_loss"], final["test_acc"] = _evaluate(model, test_loader, autocast, device, memory_format)
        return _finish(run, plan, model, records, best, progress, final)
    finally:
        run.close()


def _train_epoch(model: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer,
                 scaler: torch.amp.GradScaler, autocast: Callable[[], AbstractContextManager], device: torch.device,
                 memory_format: torch.memory_format, cfg: TrainConfig, steps: int, *, desc: str,
                 progress: bool) -> tuple[float, float, int]:
    """One pass over ``steps`` batches; returns mean loss (main head), accuracy and images seen."""
    model.train()
    total_loss = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    bar = tqdm(total=steps, desc=desc, leave=False, disable=not progress, dynamic_ncols=True)
    for step, (x, y) in enumerate(loader):
        if step >= steps:
            break
        x = x.to(device, non_blocking=True, memory_format=memory_format)
        y = y.to(device, non_blocking=True)
        with autocast():
            out = model(x)
        logits, aux = out if isinstance(out, tuple) else (out, None)
        loss = F.cross_entropy(logits.float(), y)
        total = loss if aux is None else loss + cfg.auxiliary_weight * F.cross_entropy(aux.float(), y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(total).backward()
        if cfg.grad_clip > 0:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        total_loss += loss.detach() * len(y)
        correct += (logits.detach().argmax(1) == y).sum()
        seen += len(y)
        if progress and (step % 10 == 0 or step == steps - 1):  # .item() syncs a GPU: not every step
            bar.set_postfix(loss=f"{total_loss.item() / seen:.3f}", acc=f"{correct.item() / seen:.1%}")
        bar.update()
    bar.close()
    return total_loss.item() / seen, correct.item() / seen, seen


@torch.no_grad()
def _evaluate(model: nn.Module, loader: DataLoader, autocast: Callable[[], AbstractContextManager],
              device: torch.device, memory_format: torch.memory_format) -> tuple[float, float]:
    model.eval()
    total_loss = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    for x, y in loader:
        x = x.to(device, non_blocking=True, memory_format=memory_format)
        y = y.to(device, non_blocking=True)
        with autocast():
            logits = model(x)
        total_loss += F.cross_entropy(logits.float(), y, reduction="sum")
        correct += (logits.argmax(1) == y).sum()
        seen += len(y)
    return total_loss.item() / seen, correct.item() / seen


def peak_memory_mib(device: torch.device) -> float:
    """Peak memory so far: allocated GPU memory on CUDA, else the process's peak resident set."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


def _amp_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    if device.type != "cuda":
        if precision in ("bf16", "fp16"):
            raise NasError(f"precision {precision} is for CUDA GPUs; use auto or fp32 on {device}")
        return None
    if precision == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def _subset(dataset: Dataset, size: int | None) -> Dataset:
    n = len(dataset)  # type: ignore[arg-type]
    if size is None or size >= n:
        return dataset
    order = torch.randperm(n, generator=torch.Generator().manual_seed(SUBSET_SEED))[:size]
    return Subset(dataset, sorted(order.tolist()))


def _load_data(dataset: str, data_root: str | None, cfg: TrainConfig
               ) -> tuple[Dataset, Dataset, Dataset | None, int, int, int]:
    """``(train, val, test, num_classes, in_channels, image_size)``; the data layer raises for bad
    paths. With ``val_fraction`` the validation images are a stratified part of the training set
    (without augmentation; the same part for every seed) and ``test`` is the data set's test
    split; otherwise validation is the test split and ``test`` is None."""
    info = get_dataset(dataset, data_root, image_size=cfg.image_size, augment=cfg.augment, cutout=cfg.cutout)
    train_set, val_set, test_set = info.train, info.test, None
    if cfg.val_fraction > 0:
        if not isinstance(train_set, TensorImageDataset):
            raise NasError(f"val_fraction needs an in-memory training set; {dataset} has none")
        keep, held_out = stratified_split(train_set.targets, cfg.val_fraction, seed=SUBSET_SEED)
        if not keep or not held_out:
            raise NasError(f"val_fraction {cfg.val_fraction} of {len(train_set)} training images leaves one side "
                           "empty; use a fraction nearer 0.2")
        test_set, val_set = val_set, Subset(train_set.without_transform(), held_out)
        train_set = Subset(train_set, keep)
    train_set, val_set = _subset(train_set, cfg.train_subset), _subset(val_set, cfg.val_subset)
    if len(train_set) < cfg.batch_size:  # type: ignore[arg-type]
        raise NasError(f"the training set has {len(train_set)} images, fewer than one batch of {cfg.batch_size}; "
                       "lower --batch-size or use more data")
    return train_set, val_set, test_set, info.num_classes, info.in_channels, info.image_size


def genotype_label(genotype: Genotype | str) -> str:
    """A short name for run folders and titles: the reference name, file stem or space."""
    if isinstance(genotype, Genotype):
        return genotype.space
    text = str(genotype)
    if text.startswith("|"):
        return "nb201"
    path = Path(text)
    return path.name if path.is_dir() else path.stem if path.suffix else text.upper()


def _plan_new(genotype: Genotype | str | None, dataset: str | None, config: TrainConfig | None,
              space: SearchSpace | str | None, data_root: str | Path | None) -> _Plan:
    if genotype is None or dataset is None:
        raise NasError("pass a genotype and a dataset to train, or resume=RUN to continue a run")
    label = genotype_label(genotype)
    if not isinstance(genotype, Genotype):
        genotype = resolve_genotype(genotype)
    space = load_space(space or genotype)
    genotype.validate(space)
    cfg = (config or recipe(dataset)).check()
    _amp_dtype(cfg.precision, resolve_device(cfg.device))
    root = None if data_root is None else str(data_root)
    train_set, val_set, test_set, num_classes, in_channels, image_size = _load_data(dataset, root, cfg)
    spec = ModelSpec.create(genotype, space, num_classes=num_classes, in_channels=in_channels,
                            init_channels=cfg.init_channels, layers=cfg.layers, auxiliary=cfg.auxiliary_weight > 0)
    return _Plan(spec, cfg, dataset_key(dataset), root, train_set, val_set, image_size, label, test_set)


def _create_run(plan: _Plan, model: nn.Module, out: str | Path | None) -> Run:
    """The new run folder with its config, genotype, diagram and the model's size."""
    from nas.viz import plot_genotype

    run = Run.create("train", {"label": plan.label, "dataset": plan.dataset, "data_root": plan.data_root,
                               "seed": plan.config.seed, "train": plan.config.to_dict(), "model": plan.spec.to_dict()},
                     out=out, name=plan.label)
    plan.spec.genotype.save(run.path / "genotype.json")
    plot_genotype(plan.spec.genotype, run.path / "genotype.png", plan.spec.space)
    size = (plan.spec.in_channels, plan.image_size, plan.image_size)
    run.write_json("model.json", {**measure(model, size, latency=False), "description": plan.spec.describe()})
    return run


def _plan_resume(path: Path, genotype: Genotype | str | None, dataset: str | None, config: TrainConfig | None,
                 space: SearchSpace | str | None, data_root: str | Path | None
                 ) -> tuple[Run, _Plan, dict[str, Any] | None]:
    """Open the run and check everything (settings, checkpoint, data) before it is touched."""
    run = Run.open(path)
    saved = run.config
    if saved.get("kind") != "train":
        raise NasError(f"{path} is a {saved.get('kind')!r} run, not a `nas train` run; pass a training run folder")
    spec = ModelSpec.from_dict(saved["model"], source=str(path / "config.json"))
    cfg = TrainConfig.from_dict(saved["train"])
    if genotype is not None:
        given = genotype if isinstance(genotype, Genotype) else resolve_genotype(genotype)
        if given.to_dict() != spec.genotype.to_dict():
            raise NasError(f"run {path} trains another genotype; drop the genotype to resume it, or start a new run")
    if space is not None and load_space(space).to_dict() != spec.space.to_dict():
        raise NasError(f"run {path} uses space {spec.space.name!r}; drop --space to resume it")
    if dataset is not None and dataset_key(dataset) != saved["dataset"]:
        raise NasError(f"run {path} trains on {saved['dataset']}, not {dataset}; drop the dataset to resume it")
    if config is not None and config.to_dict() != cfg.to_dict():
        raise NasError(f"a resumed run keeps its own settings ({path / 'config.json'}); drop the new settings "
                       "or start a new run")
    state = None
    last = run.path / "checkpoints" / "last.pt"
    if last.exists():
        state = load_checkpoint(last)
        saved_spec = ModelSpec.from_dict(state["spec"], source=str(last))
        if not saved_spec.same_architecture(spec):
            raise NasError(f"{last} holds another architecture ({saved_spec.describe()}) than run {path} "
                           f"({spec.describe()}); it cannot be resumed here, start a new run")
        if TrainConfig.from_dict(state.get("train", {})).to_dict() != cfg.to_dict():
            raise NasError(f"{last} was trained with other settings than {path / 'config.json'}; "
                           "it cannot be resumed here, start a new run")
    root = str(data_root) if data_root is not None else saved.get("data_root")
    train_set, val_set, test_set, num_classes, in_channels, image_size = _load_data(saved["dataset"], root, cfg)
    if (num_classes, in_channels) != (spec.num_classes, spec.in_channels):
        raise NasError(f"the data at {root} has {num_classes} classes and {in_channels} channels; run {path} "
                       f"was started with {spec.num_classes} and {spec.in_channels}")
    plan = _Plan(spec, cfg, saved["dataset"], root, train_set, val_set, image_size, saved.get("label", spec.space.name),
                 test_set)
    return run, plan, state


def _finish(run: Run, plan: _Plan, model: nn.Module, records: list[dict[str, Any]], best: dict[str, Any],
            progress: bool, final: dict[str, Any]) -> TrainResult:
    """Curves, the export (standalone source + weights at least) and ``result.json``; ``final``
    holds the last model's test metrics when validation was held out of the training set."""
    from nas.export import export

    model.eval()
    plot_curves(records, run.path / "curves.png", title=f"{plan.label} on {plan.dataset}")
    size = plan.image_size
    example = torch.randn(2, plan.spec.in_channels, size, size, generator=torch.Generator().manual_seed(0))
    formats = tuple(dict.fromkeys(("source", *plan.config.export_formats)))
    exports = export(model, formats, run.path / "export", example_input=example, spec=plan.spec, name=plan.label)
    metrics = {**records[-1], "best_val_acc": best["val_acc"], "best_epoch": best["epoch"], **final}
    run.write_json("result.json", {"metrics": metrics, "exports": {k: str(v) for k, v in exports.items()}})
    if progress:
        if "test_acc" in final:
            tqdm.write(f"test split: loss {final['test_loss']:.3f} acc {final['test_acc']:.1%} (last epoch's model)")
        tqdm.write(f"done: val acc {metrics['val_acc']:.1%} (best {best['val_acc']:.1%} at epoch {best['epoch']}); "
                   f"run folder {run.path}, export {run.path / 'export'}")
    return TrainResult(run.path, metrics, model, plan.spec, exports)
