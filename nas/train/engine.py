"""The one training engine: classifiers, detectors and segmenters, into run folders.

:func:`train` plans a run (every setting, the data and the model checked before anything is
written), then a :class:`Trainer` runs one loop, epochs x steps, and calls its hooks (in the
spirit of detectron2's ``SimpleTrainer``): the learning-rate schedule, evaluation, the writers
(``metrics.jsonl``, TensorBoard, ``curves.png``), the checkpoint of every epoch (plus a copy of
the best), the progress bar and per-epoch line, and the ``report(epoch, metrics)`` callback of
pruners. What differs per task is a small adapter (:mod:`nas.train.tasks`).

Mixed precision (bf16 autocast, or fp16 with a grad scaler) and channels-last apply on CUDA to
every task; the CPU trains in float32, contiguous. Every checkpoint restores the model,
optimizer, scheduler, grad scaler and every random generator, so ``resume`` continues a
killed run and, on the CPU, ends with the same weights and metrics as an uninterrupted run.

A run folder holds ``config.json``, ``versions.json``, ``genotype.json``, ``model.json``
(size), ``metrics.jsonl`` + ``tensorboard/``, ``checkpoints/last.pt`` and ``best.pt``,
``curves.png``, ``result.json`` and the export under ``export/``.
"""
from __future__ import annotations

import contextlib
import math
import resource
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from nas.builders.spec import ModelSpec, check_head
from nas.checkpoint import (
    copy_checkpoint,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from nas.config import from_dict
from nas.errors import NasError, TrialDiverged
from nas.export import export
from nas.faults import kill_point
from nas.genotype import Genotype, resolve_genotype
from nas.measure import measure
from nas.run import Run, resolve_device, seed_everything
from nas.space import SearchSpace, load_space
from nas.train.config import TrainConfig, check_config, recipe
from nas.train.curves import plot_curves
from nas.train.tasks import Data, DataSpec, TaskAdapter, data_spec, get_task
from nas.train.transfer import Transfer, classification_checkpoint, init_backbone_from
from nas.viz import plot_genotype

Report = Callable[[int, dict[str, Any]], None]


@dataclass
class TrainResult:
    """What :func:`train` returns: the run folder, the last epoch's metrics (plus the best
    objective), the trained model (eval mode, on the training device), its spec and exports."""

    run: Path
    metrics: dict[str, Any]
    model: nn.Module
    spec: ModelSpec
    exports: dict[str, Path] = field(default_factory=dict)
    transfer: Transfer | None = None


@dataclass
class _Plan:
    """Everything checked before the run folder is created or touched."""

    adapter: TaskAdapter
    spec: ModelSpec
    config: TrainConfig
    data_spec: DataSpec
    data: Data
    label: str
    init_from: str | None = None


def check_finite(metrics: dict[str, Any], epoch: int) -> None:
    """Raise :class:`~nas.errors.TrialDiverged` when the training loss is NaN or infinite."""
    loss = metrics.get("train_loss")
    if isinstance(loss, float) and not math.isfinite(loss):
        raise TrialDiverged(f"the training loss became {loss} in epoch {epoch}; lower the learning rate "
                            "(or raise the warm-up)")


def train(genotype: Genotype | str | None = None, dataset: str | None = None, *, task: str = "classification",
          head: str | None = None, backbone: str | None = None, config: TrainConfig | None = None,
          space: SearchSpace | str | None = None, out: str | Path | None = None, resume: str | Path | None = None,
          report: Report | None = None, progress: bool = True, data_root: str | Path | None = None,
          ann: str | Path | None = None, images: str | Path | None = None, masks: str | Path | None = None,
          num_classes: int | None = None, init_from: str | Path | None = None,
          hooks: Sequence[Hook] = ()) -> TrainResult:
    """Train a model of ``genotype`` on ``dataset`` in a new run folder, or continue the run ``resume``.

    genotype: a :class:`Genotype`, a reference name, a genotype.json, a run folder or a
        NAS-Bench-201 string; may be ``None`` with ``resume`` (the run knows it), with a
        torchvision ``backbone`` or with ``init_from``.
    task: ``classification`` (default), ``detection`` (``head``: ``fasterrcnn``, ``retinanet``,
        ``fcos``) or ``segmentation`` (``head``: ``fcn``, ``deeplabv3``, ``unet``).
    dataset: classification: ``digits``, ``cifar10``, ``cifar100``, ``imagefolder`` (under
        ``data_root``); detection: ``shapes`` (embedded, default) or ``coco`` (``data_root`` +
        ``ann``); segmentation: ``shapes`` or ``voc`` (``images``, ``masks``, ``num_classes``).
    backbone: a torchvision baseline backbone (``resnet18``, ``mobilenet_v3_large``) instead of
        a genotype (detection, segmentation).
    config: settings; default :func:`~nas.train.recipe` of ``dataset`` and ``task``. A resumed
        run keeps its own.
    init_from: a classification run (or checkpoint) of the same genotype whose cells initialise
        the backbone (detection, segmentation; its genotype is used when none is given).
    out: run folder to create (must not exist or be empty); default ``runs/<kind>-<name>-<time>``.
    report: called as ``report(epoch, metrics)`` after each epoch's checkpoint; raising in it
        stops training (an Optuna pruner, a Ray Tune scheduler) and the exception propagates.
    progress: a progress bar and one summary line per epoch.
    hooks: more :class:`Hook` objects, called after the built-in ones (writers, checkpoint,
        progress, report).

    >>> result = train("DARTS_V2", "digits", config=TrainConfig(epochs=1, init_channels=4, layers=3))  # doctest: +SKIP
    >>> result.metrics["val_acc"], result.run  # doctest: +SKIP
    >>> train("DARTS_V2", task="detection", head="fcos").metrics["map50"]  # doctest: +SKIP
    """
    if resume is not None:
        run, plan, state = _plan_resume(Path(resume), genotype, dataset, config, space, data_root, task=task,
                                        given={"backbone": backbone, "init_from": init_from, "out": out,
                                               "ann": ann, "images": images, "masks": masks,
                                               "num_classes": num_classes})
    else:
        data = data_spec(task, dataset, root=data_root, ann=ann, images=images, masks=masks, num_classes=num_classes)
        plan = _plan_new(task, head, genotype, backbone, config, space, data, init_from)
        run, state = None, None
    return Trainer(plan, run, state, progress=progress, report=report, out=out, hooks=hooks).run()


def train_detector(genotype: Genotype | str | None = None, *, detector: str = "fcos", **kwargs: Any) -> TrainResult:
    """:func:`train` of a detector (``task="detection"``, ``head=detector``)."""
    return train(genotype, kwargs.pop("dataset", None), task="detection", head=detector, **kwargs)


def train_segmenter(genotype: Genotype | str | None = None, *, head: str = "unet", **kwargs: Any) -> TrainResult:
    """:func:`train` of a segmenter (``task="segmentation"``)."""
    return train(genotype, kwargs.pop("dataset", None), task="segmentation", head=head, **kwargs)


def genotype_label(genotype: Genotype | str) -> str:
    """A short name for run folders and titles: the reference name, file stem or space."""
    if isinstance(genotype, Genotype):
        return genotype.space
    text = str(genotype)
    if text.startswith("|"):
        return "nb201"
    path = Path(text)
    return path.name if path.is_dir() else path.stem if path.suffix else text.upper()


# -- the loop and its hooks -----------------------------------------------------------------------
class Hook:
    """A piece of the loop; every method is called with the :class:`Trainer` and does nothing by default."""

    def before_train(self, trainer: Trainer) -> None: ...

    def before_epoch(self, trainer: Trainer) -> None: ...

    def after_step(self, trainer: Trainer) -> None: ...

    def after_epoch(self, trainer: Trainer) -> None: ...


class ScheduleHook(Hook):
    """Steps the learning-rate schedule per batch or per epoch (the adapter says which) and
    logs the epoch's starting rate."""

    def before_epoch(self, trainer: Trainer) -> None:
        trainer.record["lr"] = trainer.scheduler.get_last_lr()[0]

    def after_step(self, trainer: Trainer) -> None:
        if trainer.adapter.step_schedule:
            trainer.scheduler.step()

    def after_epoch(self, trainer: Trainer) -> None:
        if not trainer.adapter.step_schedule:
            trainer.scheduler.step()


class EvalHook(Hook):
    """The adapter's validation metrics, after every epoch."""

    def after_epoch(self, trainer: Trainer) -> None:
        trainer.record.update(trainer.evaluate(trainer.val_loader))
        trainer.record["epoch_time_s"] = time.perf_counter() - trainer.epoch_started
        trainer.record["peak_mem_mib"] = peak_memory_mib(trainer.device)


class WriterHook(Hook):
    """``metrics.jsonl`` + TensorBoard (:meth:`nas.run.Run.log`) and ``curves.png``."""

    def after_epoch(self, trainer: Trainer) -> None:
        trainer.run_folder.log(trainer.record, step=trainer.epoch)
        kill_point("train.after_log")
        trainer.records.append(trainer.record)
        trainer.plot_curves()
        kill_point("train.after_curves")


class CheckpointHook(Hook):
    """``checkpoints/last.pt`` after every epoch, copied to ``best.pt`` when the objective improved.

    ``last.pt`` names the best epoch, and it is written first: a kill before the copy leaves a
    ``best.pt`` of an earlier epoch, which resume repairs from ``last.pt`` (:func:`repair_best`).
    """

    def after_epoch(self, trainer: Trainer) -> None:
        objective = trainer.adapter.objective
        value = trainer.record[objective]
        improved = value > trainer.best[objective]
        if improved:
            trainer.best = {objective: value, "epoch": trainer.epoch}
        folder = trainer.run_folder.path / "checkpoints"
        last = save_checkpoint(folder / "last.pt", trainer.state_dict())
        kill_point("train.after_last")
        if improved:
            copy_checkpoint(last, folder / "best.pt")
            kill_point("train.after_best")


def checkpoint_epoch(path: Path) -> int | None:
    """The epoch a checkpoint holds; None when it is missing or unreadable."""
    try:
        return int(load_checkpoint(path)["epoch"])
    except (NasError, KeyError, TypeError, ValueError):
        return None


def repair_best(run: Path, state: dict[str, Any]) -> None:
    """Make ``best.pt`` hold the best epoch that ``last.pt`` (``state``) names.

    A kill between writing ``last.pt`` and copying it leaves ``best.pt`` one improvement
    behind; then the best epoch is the last one, and ``last.pt`` is copied again.
    """
    folder = run / "checkpoints"
    best_epoch, last_epoch = int(state["best"]["epoch"]), int(state["epoch"])
    if best_epoch < 1 or checkpoint_epoch(folder / "best.pt") == best_epoch:
        return
    if best_epoch != last_epoch:
        raise NasError(f"{folder / 'best.pt'} does not hold epoch {best_epoch}, the best one that "
                       f"{folder / 'last.pt'} names, and that epoch's weights are gone; start a new run")
    copy_checkpoint(folder / "last.pt", folder / "best.pt")


class ProgressHook(Hook):
    """A progress bar per epoch and one line per epoch."""

    def __init__(self) -> None:
        self.bar: tqdm | None = None

    def before_epoch(self, trainer: Trainer) -> None:
        cfg = trainer.config
        self.bar = tqdm(total=trainer.steps, desc=f"epoch {trainer.epoch}/{cfg.epochs}", leave=False,
                        dynamic_ncols=True)

    def after_step(self, trainer: Trainer) -> None:
        assert self.bar is not None
        step = self.bar.n
        if step % 10 == 0 or step == trainer.steps - 1:  # .item() syncs a GPU: not every step
            self.bar.set_postfix(loss=f"{trainer.sums['train_loss'].item() / trainer.seen:.3f}")
        self.bar.update()

    def after_epoch(self, trainer: Trainer) -> None:
        if self.bar is not None:
            self.bar.close()
        r = trainer.record
        tqdm.write(f"epoch {trainer.epoch}/{trainer.config.epochs}  {trainer.adapter.epoch_line(r)}  lr {r['lr']:.4g}  "
                   f"{r['epoch_time_s']:.1f}s  {r['images_per_s']:.1f} img/s")


class ReportHook(Hook):
    """``report(epoch, metrics)`` after the checkpoint: a pruner may stop the run by raising."""

    def __init__(self, report: Report) -> None:
        self.report = report

    def after_epoch(self, trainer: Trainer) -> None:
        self.report(trainer.epoch, trainer.record)


class Trainer:
    """One run of the loop over ``plan``: builds the model, optimizer, schedule, grad scaler and
    loaders, restores a checkpoint's ``state``, then trains epoch by epoch with its hooks."""

    def __init__(self, plan: _Plan, run: Run | None, state: dict[str, Any] | None, *, progress: bool,
                 report: Report | None, out: str | Path | None, hooks: Sequence[Hook] = ()) -> None:
        self.plan, self.adapter, self.config, self.spec = plan, plan.adapter, plan.config, plan.spec
        cfg = self.config
        self.device = resolve_device(cfg.device)
        self.amp_dtype = amp_dtype(cfg.precision, self.device)
        cuda = self.device.type == "cuda"
        self.channels_last = cuda if cfg.channels_last is None else cfg.channels_last
        self.memory_format = torch.channels_last if self.channels_last else torch.contiguous_format

        seed_everything(cfg.seed)
        model = self.spec.build()
        self.transfer = None
        if state is None and plan.init_from is not None:
            self.transfer = init_backbone_from(model, self.spec, plan.init_from)
        self.run_folder = run if run is not None else _create_run(plan, model, out, self.transfer)
        self.model = model.to(self.device, memory_format=self.memory_format)
        self.loader_generator = torch.Generator().manual_seed(cfg.seed)
        data = plan.data
        self.train_loader = DataLoader(data.train, batch_size=cfg.batch_size, shuffle=True, drop_last=True,
                                       generator=self.loader_generator, collate_fn=self.adapter.collate,
                                       num_workers=cfg.num_workers, pin_memory=cuda)
        self.val_loader = self._loader(data.val)
        n = len(self.train_loader)
        self.steps = n if cfg.max_train_batches is None else min(n, cfg.max_train_batches)
        self.optimizer = self.adapter.optimizer(self.model, cfg)
        self.scheduler = self.adapter.scheduler(self.optimizer, cfg, self.steps)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.start_epoch, self.best = 0, {self.adapter.objective: -1.0, "epoch": 0}
        if state is not None:
            self._restore(state, self.run_folder.path / "checkpoints" / "last.pt")
        elif run is not None and not (run.path / "model.json").is_file():
            _write_run_files(run, plan, model)  # killed while the folder was being set up
        # each epoch once: drop torn lines and the epochs a killed run logged after its checkpoint
        self.records = self.run_folder.trim_epochs("metrics.jsonl", self.start_epoch)
        self.progress = progress
        self.hooks: list[Hook] = [ScheduleHook(), EvalHook(), WriterHook(), CheckpointHook()]
        if progress:
            self.hooks.append(ProgressHook())
        if report is not None:
            self.hooks.append(ReportHook(report))
        self.hooks += list(hooks)
        self.epoch = self.start_epoch
        self.record: dict[str, Any] = {}
        self.sums: dict[str, torch.Tensor] = {}
        self.seen = 0
        self.epoch_started = 0.0

    def _restore(self, state: dict[str, Any], path: Path) -> None:
        """Load a resumed run's weights, optimizer, schedule and random state from ``state`` (``path``)."""
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            if state.get("scaler"):
                self.scaler.load_state_dict(state["scaler"])
            set_rng_state(state["rng"], self.loader_generator)
            self.start_epoch, self.best = int(state["epoch"]), dict(state["best"])
        except KeyError as exc:
            raise NasError(f"{path} lacks its {exc.args[0]!r} entry, so the run cannot continue from it; "
                           "start a new run") from None
        except (RuntimeError, ValueError, TypeError, IndexError):  # weights or states that do not fit
            raise NasError(f"{path} holds weights or optimizer state that do not fit this run's network; "
                           "the file is damaged or from another run; start a new run") from None

    def _loader(self, dataset: Any) -> DataLoader:
        return DataLoader(dataset, batch_size=self.config.batch_size, shuffle=False, collate_fn=self.adapter.collate,
                          num_workers=self.config.num_workers, pin_memory=self.device.type == "cuda")

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def evaluate(self, loader: DataLoader) -> dict[str, float]:
        return self.adapter.evaluate(self.model, loader, self.device, self.memory_format, self.autocast, self.spec)

    def state_dict(self) -> dict[str, Any]:
        """The checkpoint: plain data only (``weights_only`` loads it)."""
        return {"epoch": self.epoch, "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else {},
                "rng": rng_state(self.loader_generator, cuda=self.device.type == "cuda"),
                "spec": self.spec.to_dict(), "train": self.config.to_dict(), "dataset": self.plan.data_spec.name,
                "best": self.best}

    def plot_curves(self) -> None:
        a = self.adapter
        title = f"{self.plan.label} on {self.plan.data_spec.name}" if a.task == "classification" else \
            f"{self.plan.label}: {self.spec.head}"
        losses = a.curve_losses + tuple(sorted(k for k in self.records[-1] if k.startswith("train_")
                                               and k not in a.curve_losses + a.curve_metrics + ("train_images",)))
        plot_curves(self.records, self.run_folder.path / "curves.png", losses=losses, metrics=a.curve_metrics,
                    percent=a.percent, metric_label="accuracy" if a.percent else "validation", title=title)

    def _call(self, name: str) -> None:
        for hook in self.hooks:
            getattr(hook, name)(self)

    def train_epoch(self) -> None:
        """One pass over ``steps`` batches; the sums of the logged values stay on the device."""
        cfg = self.config
        self.model.train()
        self.sums, self.seen = {}, 0
        for step, batch in enumerate(self.train_loader):
            if step >= self.steps:
                break
            loss, logged, n = self.adapter.train_step(self.model, batch, self.device, self.memory_format,
                                                      self.autocast, cfg)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if cfg.grad_clip > 0:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            for key, value in logged.items():
                self.sums[key] = self.sums[key] + value if key in self.sums else value
            self.seen += n
            self._call("after_step")

    def run(self) -> TrainResult:
        plan, cfg = self.plan, self.config
        if self.progress:
            what = (f"resuming {self.run_folder.path} after epoch {self.start_epoch}" if self.start_epoch
                    else f"training into {self.run_folder.path}")
            tqdm.write(f"{what}: {plan.label} ({self.spec.describe()}) on {plan.data_spec.name}, "
                       f"{len(plan.data.train)} train / {len(plan.data.val)} val images, {cfg.epochs} epochs x "
                       f"{self.steps} steps, device {self.device}"
                       + (f", {str(self.amp_dtype).removeprefix('torch.')} autocast" if self.amp_dtype else "")
                       + (", channels-last" if self.channels_last else ""))
        try:
            self._call("before_train")
            for epoch in range(self.start_epoch + 1, cfg.epochs + 1):
                self.epoch, self.record = epoch, {"epoch": epoch}
                self.epoch_started = time.perf_counter()
                self.record.update(self.adapter.before_epoch(self.model, epoch, cfg))
                self._call("before_epoch")
                self.train_epoch()
                train_time = time.perf_counter() - self.epoch_started
                self.record.update({k: v.item() / self.seen for k, v in self.sums.items()})
                check_finite(self.record, epoch)
                self.record.update({"train_images": self.seen, "images_per_s": self.seen / train_time})
                self._call("after_epoch")
            return self.finish()
        finally:
            self.run_folder.close()

    def finish(self) -> TrainResult:
        """The held-out test split's metrics, curves, the export and ``result.json``."""
        plan, run, objective = self.plan, self.run_folder, self.adapter.objective
        final: dict[str, Any] = {}
        if plan.data.test is not None:  # validation was held out of the training set: score the test split once
            scores = self.evaluate(self._loader(plan.data.test))
            final = {k.replace("val_", "test_", 1): v for k, v in scores.items()}
        self.model.eval()
        self.plot_curves()
        exports: dict[str, Path] = {}
        formats = plan.config.export_formats
        if self.adapter.task == "classification":  # a classification run always keeps its standalone source
            formats = tuple(dict.fromkeys(("source", *formats)))
        if formats:
            # the run's own folder: a resumed run redoes an export a kill interrupted
            exports = export(self.model, formats, run.path / "export", example_input=_example_input(plan),
                             spec=self.spec, name=plan.label, overwrite=True)
        metrics = {**self.records[-1], f"best_{objective}": self.best[objective], "best_epoch": self.best["epoch"],
                   **final}
        kill_point("train.before_result")
        run.write_json("result.json", {"metrics": metrics, "exports": {k: str(v) for k, v in exports.items()}})
        if self.progress:
            if "test_acc" in final:
                tqdm.write(f"test split: loss {final['test_loss']:.3f} acc {final['test_acc']:.1%} "
                           "(last epoch's model)")
            shown = (lambda v: f"{v:.1%}") if self.adapter.percent else (lambda v: f"{v:.3f}")
            tqdm.write(f"done: {objective} {shown(metrics[objective])} (best {shown(self.best[objective])} at epoch "
                       f"{self.best['epoch']}); run folder {run.path}"
                       + (f", export {run.path / 'export'}" if exports else ""))
        return TrainResult(run.path, metrics, self.model, self.spec, exports, self.transfer)


def _example_input(plan: _Plan) -> torch.Tensor:
    size = plan.data.image_size
    return torch.randn(2, plan.spec.in_channels, size, size, generator=torch.Generator().manual_seed(0))


def peak_memory_mib(device: torch.device) -> float:
    """Peak memory so far: allocated GPU memory on CUDA, else the process's peak resident set."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


def amp_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``precision`` on ``device``; None trains in float32."""
    if device.type != "cuda":
        if precision in ("bf16", "fp16"):
            raise NasError(f"precision {precision} is for CUDA GPUs; use auto or fp32 on {device}")
        return None
    if precision == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


# -- planning --------------------------------------------------------------------------------------
def _label(genotype: Genotype | str | None, backbone: str | None, init_from: str | Path | None) -> str:
    if genotype is not None:
        return genotype_label(genotype)
    return backbone or Path(str(init_from)).name


def _plan_new(task: str, head: str | None, genotype: Genotype | str | None, backbone: str | None,
              config: TrainConfig | None, space: SearchSpace | str | None, data: DataSpec,
              init_from: str | Path | None) -> _Plan:
    adapter = get_task(task)
    if task == "classification" and genotype is None:
        raise NasError("pass a genotype and a dataset to train, or resume=RUN to continue a run")
    if task == "classification" and init_from is not None:
        raise NasError("init_from starts a detector's or segmenter's backbone from a classification run; "
                       "a classifier trains from scratch")
    if genotype is None and backbone is None and init_from is None:
        raise NasError("pass a genotype (a reference name, genotype.json or run folder), a torchvision backbone "
                       "or init_from=RUN")
    if task != "classification":
        head = adapter.default_head if head is None else head
    check_head(task, head)
    label = _label(genotype, backbone, init_from)
    cfg = check_config(config or recipe(data.name, task), task)
    amp_dtype(cfg.precision, resolve_device(cfg.device))
    init_channels = cfg.init_channels
    if init_from is not None:
        classifier = load_checkpoint(classification_checkpoint(init_from))["spec"]
        if genotype is None and backbone is None:
            genotype = Genotype.from_dict(classifier["genotype"], source=str(init_from))
        if init_channels is None:
            init_channels = classifier.get("init_channels")
    if isinstance(genotype, (str, Path)):
        genotype = resolve_genotype(str(genotype))
    if genotype is not None:
        genotype.validate(load_space(space or genotype))
    loaded = adapter.load_data(data, cfg)
    spec = adapter.create_spec(genotype, space, loaded, cfg, head=head, backbone=backbone,
                               init_channels=init_channels)
    return _Plan(adapter, spec, cfg, data, loaded, label, None if init_from is None else str(init_from))


def _create_run(plan: _Plan, model: nn.Module, out: str | Path | None, transfer: Transfer | None) -> Run:
    """The new run folder with its config, genotype, diagram and the model's size."""
    spec, adapter = plan.spec, plan.adapter
    run = Run.create(adapter.run_kind, {
        "task": spec.task, "label": plan.label, "dataset": plan.data_spec.name, "data_root": plan.data_spec.root,
        "data": plan.data_spec.to_dict(), "seed": plan.config.seed, "train": plan.config.to_dict(),
        "model": spec.to_dict(), "init_from": plan.init_from,
        "transfer": transfer.summary() if transfer else None}, out=out, name=plan.label)
    _write_run_files(run, plan, model)
    return run


def _write_run_files(run: Run, plan: _Plan, model: nn.Module) -> None:
    """The genotype, its diagram and ``model.json`` (written last: it marks a complete folder)."""
    spec = plan.spec
    if spec.genotype is not None:
        spec.genotype.save(run.path / "genotype.json")
        if spec.task == "classification":
            plot_genotype(spec.genotype, run.path / "genotype.png", spec.space)
    size = (spec.in_channels, plan.data.image_size, plan.data.image_size)
    run.write_json("model.json", {**measure(model, size, task=spec.task, latency=False),
                                  "description": spec.describe()})


def _plan_resume(path: Path, genotype: Genotype | str | None, dataset: str | None, config: TrainConfig | None,
                 space: SearchSpace | str | None, data_root: str | Path | None, *, task: str,
                 given: dict[str, Any]) -> tuple[Run, _Plan, dict[str, Any] | None]:
    """Open the run and check everything (settings, checkpoint, data) before it is touched."""
    run = Run.open(path)
    saved = run.config
    adapter = get_task(saved.get("task", "classification"))
    if saved.get("kind") != get_task(task).run_kind:
        raise NasError(f"{path} is a {saved.get('kind')!r} run, not a `nas {get_task(task).run_kind}` run; "
                       "pass one of those")
    extra = [name for name, value in given.items() if value is not None]
    if extra:
        raise NasError(f"a resumed run keeps its own settings; drop {', '.join(extra)}")
    spec = ModelSpec.from_dict(saved["model"], source=str(path / "config.json"))
    cfg = _config_from_dict(saved["train"])
    if genotype is not None:
        other = genotype if isinstance(genotype, Genotype) else resolve_genotype(str(genotype))
        if spec.genotype is None or other.to_dict() != spec.genotype.to_dict():
            raise NasError(f"run {path} trains another genotype; drop the genotype to resume it, or start a new run")
    if space is not None and (spec.space is None or load_space(space).to_dict() != spec.space.to_dict()):
        raise NasError(f"run {path} uses another space; drop --space to resume it")
    data = DataSpec(**saved["data"]) if "data" in saved else DataSpec(saved["dataset"], saved.get("data_root"))
    if dataset is not None and data_spec(adapter.task, dataset).name != data.name:
        raise NasError(f"run {path} trains on {data.name}, not {dataset}; drop the dataset to resume it")
    if config is not None and config.to_dict() != cfg.to_dict():
        raise NasError(f"a resumed run keeps its own settings ({path / 'config.json'}); drop the new settings "
                       "or start a new run")
    state = None
    last = run.path / "checkpoints" / "last.pt"
    # best.pt is copied from last.pt and result.json comes at the end: with either there, a
    # missing last.pt was deleted, and starting over would replace the run's trained weights
    done = [p.name for p in (run.path / "checkpoints" / "best.pt", run.path / "result.json") if p.exists()]
    if done and not last.exists():
        raise NasError(f"{last} is missing, though run {path} has {' and '.join(done)}; it cannot be resumed, "
                       "start a new run (or restore the checkpoint)")
    if last.exists():
        state = load_checkpoint(last)
        saved_spec = ModelSpec.from_dict(state["spec"], source=str(last))
        if not saved_spec.same_architecture(spec):
            raise NasError(f"{last} holds another architecture ({saved_spec.describe()}) than run {path} "
                           f"({spec.describe()}); it cannot be resumed here, start a new run")
        if _config_from_dict(state.get("train", {})).to_dict() != cfg.to_dict():
            raise NasError(f"{last} was trained with other settings than {path / 'config.json'}; "
                           "it cannot be resumed here, start a new run")
        if not isinstance(state.get("epoch"), int) or not isinstance(state.get("best"), dict):
            raise NasError(f"{last} is not a checkpoint of `nas train` (no epoch and best record); "
                           "it cannot be resumed here, start a new run")
    if data_root is not None:
        data = DataSpec(**{**data.to_dict(), "root": str(data_root)})
    loaded = adapter.load_data(data, cfg)
    if (loaded.num_classes, loaded.in_channels) != (spec.num_classes, spec.in_channels):
        raise NasError(f"the data of run {path} now has {loaded.num_classes} classes and {loaded.in_channels} "
                       f"channels; the run was started with {spec.num_classes} and {spec.in_channels}")
    plan = _Plan(adapter, spec, cfg, data, loaded, saved.get("label", spec.describe()), saved.get("init_from"))
    if state is not None:  # everything checked: now the records may be repaired
        repair_best(run.path, state)
    return run, plan, state


def _config_from_dict(data: dict[str, Any]) -> TrainConfig:
    return from_dict(TrainConfig, data, "training")
