"""The DARTS search loop: bilevel optimisation of a supernet, one run folder per search.

GDAS runs the same loop with a :class:`~nas.strategies.oneshot.settings.GdasConfig`: each
forward pass then samples one op per edge (:meth:`Supernet.sample_weights`) at the epoch's
temperature, from a generator seeded by the search's seed and saved in the checkpoint.

Each step takes an architecture step on a batch of the validation half (first or second
order, :mod:`nas.strategies.oneshot.architect`) and a weight step on a batch of the training
half (SGD, momentum 0.9, cosine learning rate, gradient clipping), as in the DARTS paper.
After every epoch the discrete genotype is derived and written to the run folder with the
architecture weights, and a checkpoint allows ``resume``.

Run folder::

    config.json, versions.json        settings (space, data, DartsConfig, seed)
    metrics.jsonl, tensorboard/       one record per epoch: training loss/accuracy from the
                                      weight steps, validation loss/accuracy from the
                                      architecture steps' forward passes (batch statistics:
                                      early in a search the running BatchNorm statistics lag
                                      far behind the quickly changing weights); TensorBoard
                                      also gets per epoch histograms of the raw alphas (and
                                      betas), the genotype as text and, with plots, a heatmap
                                      of softmax(alpha) per cell type
    genotypes.jsonl                   the genotype derived after each epoch
    alphas/epoch_NNN.json             raw and softmaxed architecture weights per epoch
    checkpoints/last.pt               weights, alphas, optimisers, scheduler, RNG states (and
                                      GDAS' temperature and sampling generator)
    genotype.json, genotype.png       the result and its cell diagram
    alphas.png, alpha_history.png     weight heatmaps and their course over epochs
    result.json                       summary
"""
from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm.auto import tqdm

from nas.checkpoint import read_weights_only, rng_state, save_checkpoint, set_rng_state
from nas.config import check, from_dict, to_dict
from nas.data import DatasetInfo, get_dataset, search_split
from nas.errors import NasError
from nas.faults import kill_point
from nas.genotype import Genotype
from nas.run import Run, seed_everything
from nas.space import SearchSpace, load_space, space_from_dict
from nas.strategies.oneshot import distributed
from nas.strategies.oneshot.architect import Architect, frozen
from nas.strategies.oneshot.derive import (
    count_ops,
    decisiveness,
    derive_genotype,
    short_genotype,
)
from nas.strategies.oneshot.plots import alpha_figure, plot_alpha_history, plot_alphas
from nas.strategies.oneshot.settings import DartsConfig, GdasConfig
from nas.strategies.oneshot.supernet import Supernet
from nas.viz import plot_genotype

# Data sets searched below their default size when DartsConfig.image_size is unset.
SEARCH_IMAGE_SIZE = {"digits": 16}
# the strategies this loop runs: their settings, and their names in messages
SETTINGS = {"darts": DartsConfig, "gdas": GdasConfig}
LABELS = {"darts": "DARTS", "gdas": "GDAS"}
Report = Callable[[int, dict[str, Any]], None]
# DDP leaves the buffers alone in the forward pass: the global-batch BatchNorm keeps them equal
_NO_BUFFER_SYNC = ({"forward_sync_buffers": False}
                   if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
                   else {"broadcast_buffers": False})


@dataclass(frozen=True)
class DartsResult:
    """What a search found: the run folder, the final genotype and architecture weights."""

    path: Path
    genotype: Genotype
    alphas: dict[str, torch.Tensor]  # softmaxed, [num_edges, num_ops] per cell type
    edge_weights: dict[str, torch.Tensor] | None = None
    epochs: int = 0
    stopped_early: bool = False
    metrics: list[dict[str, Any]] = field(default_factory=list)
    rank: int = 0  # in a search on several processes, the rank that returned this (0 wrote the run folder)


def _loader(dataset: Dataset, ranks: distributed.Ranks, *, batch_size: int, seed: int, workers: int,
            pin: bool) -> DataLoader:
    """This rank's batches of a shuffled ``dataset``. The order depends only on ``seed`` (one per
    loader and epoch), so a resumed run draws the same batches as an uninterrupted one; with
    ``W`` ranks, rank ``r`` takes every ``W``-th image from ``r`` of one permutation, so that
    batch ``k`` of all ranks together is batch ``k`` of one process at ``W`` times the batch."""
    sampler = DistributedSampler(dataset, num_replicas=ranks.world, rank=ranks.rank, shuffle=True, seed=seed,
                                 drop_last=True)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=len(sampler) > batch_size,
                      num_workers=workers, pin_memory=pin, generator=torch.Generator().manual_seed(seed),
                      persistent_workers=False)


# -- run folder helpers ------------------------------------------------------------------------
def _detached(weights: dict[str, torch.Tensor] | None) -> dict[str, torch.Tensor] | None:
    return None if weights is None else {k: v.detach().cpu() for k, v in weights.items()}


def _as_numpy(weights: dict[str, torch.Tensor] | None) -> dict[str, np.ndarray] | None:
    return None if weights is None else {k: v.detach().float().cpu().numpy() for k, v in weights.items()}


def _cell_space(space: SearchSpace | str) -> SearchSpace:
    space = load_space(space)
    if space.kind != "cell":
        raise NasError(f"DARTS searches cell spaces (darts, lecture, nb201 or a cell .yaml); {space.name!r} is a "
                       f"{space.kind} space: search it with --strategy evolution, tpe, random or nsga2")
    return space


def search_darts(space: SearchSpace | str = "darts", dataset: str | DatasetInfo = "digits", *,
                 config: DartsConfig | None = None, out: str | Path | None = None, resume: str | Path | None = None,
                 seed: int = 0, data_root: str | Path | None = None, device: str = "auto", progress: bool = True,
                 plots: bool = True, report: Report | None = None, strategy: str | None = None) -> DartsResult:
    """Search ``space`` on ``dataset`` with DARTS (GDAS when ``config`` is a :class:`GdasConfig`);
    returns the run folder, genotype and weights.

    resume: a run folder to continue from its last checkpoint; space, data set, seed and
        config then come from that folder (``dataset`` is only used when it is a loaded
        :class:`~nas.data.DatasetInfo`).
    progress: a progress bar per epoch and a summary line after it.
    plots: PNG heatmaps of the architecture weights and the cell diagram at the end.
    report: called as ``report(epoch, metrics)`` after each epoch (epochs count from 1); it
        may raise to stop the search, which leaves a resumable run folder.
    strategy: with ``resume``, the strategy (``"darts"`` or ``"gdas"``) the run must have been
        made by; a run of the other is a :class:`NasError`.

    Started by ``torchrun`` (or within Ray Train's process group), every process runs this
    with the same arguments and the search runs data parallel (:mod:`~nas.strategies.oneshot.distributed`):
    ``config.batch_size`` is then the batch of each process, and rank 0 writes the run folder.

    >>> result = search_darts("nb201", "digits", config=DartsConfig(epochs=1, max_steps=2,   # doctest: +SKIP
    ...                       init_channels=4, layers=3, image_size=16), progress=False)
    >>> result.genotype.validate("nb201")  # doctest: +SKIP
    """
    ranks, dev = distributed.setup(device)
    try:
        setup = prepare(ranks, space, dataset, config=config, resume=resume, seed=seed, data_root=data_root,
                        strategy=strategy)
        model = setup.supernet()
        path = ranks.from_lead(lambda: Path(resume) if resume is not None else setup.create_run(
            out, world=ranks.world, device=dev, supernet_params=sum(p.numel() for p in model.weight_parameters())))
        run = Run(path) if ranks.lead else None
        threads = torch.get_num_threads()
        if dev.type == "cpu":
            torch.set_num_threads(setup.config.threads)
        try:
            with distributed.synchronised_batch_norm(ranks if setup.config.sync_batch_norm else distributed.Ranks()):
                return _search(run, path, ranks, model, setup.space, setup.info, setup.config, seed=setup.seed,
                               dev=dev, progress=progress and ranks.lead, plots=plots, report=report)
        finally:
            torch.set_num_threads(threads)
            if run is not None:
                run.close()
    finally:
        distributed.teardown(ranks)


class _Plan(NamedTuple):
    """What every rank needs to know before it loads the data (picklable: rank 0 sends it to
    the others when it comes from a run folder)."""

    space: dict[str, Any]
    strategy: str
    config: DartsConfig
    seed: int
    data_root: str | None
    dataset: Any


@dataclass(frozen=True)
class Setup:
    """A search's space, settings and data, checked; from :func:`prepare`."""

    strategy: str
    space: SearchSpace
    config: DartsConfig
    seed: int
    data_root: str | None
    info: DatasetInfo

    def supernet(self) -> Supernet:
        """The supernet, initialised from the seed (the same on every rank)."""
        seed_everything(self.seed)
        config, info = self.config, self.info
        return Supernet(self.space, C=config.init_channels, layers=config.layers, num_classes=info.num_classes,
                        in_channels=info.in_channels, partial_channels=config.partial_channels,
                        edge_normalisation=config.uses_edge_normalisation,
                        aux_skip=config.collapse_remedy == "aux-skip",
                        recompute=config.uses_recompute(info.image_size))

    def create_run(self, out: str | Path | None, *, world: int, device: torch.device | str,
                   supernet_params: int) -> Path:
        """A new run folder with this search's config (``world`` processes of batch ``config.batch_size``)."""
        space, config, info = self.space, self.config, self.info
        return Run.create(self.strategy, {
            "strategy": self.strategy, "space": space.to_dict(), "space_name": space.name, "dataset": info.name,
            "data_root": self.data_root, "seed": self.seed, "device": str(device),
            "num_classes": info.num_classes, "image_size": info.image_size, self.strategy: to_dict(config),
            "world_size": world, "batch_per_rank": config.batch_size, "global_batch": config.batch_size * world,
            "supernet_params": supernet_params}, out=out, name=space.name).path


def prepare(ranks: distributed.Ranks, space: SearchSpace | str, dataset: str | DatasetInfo, *,
            config: DartsConfig | None, resume: str | Path | None, seed: int, data_root: str | Path | None,
            strategy: str | None, world: int | None = None) -> Setup:
    """Check a search's arguments (or read them from the run folder ``resume``, on rank 0) and
    load its data; a mistake on any rank is a :class:`NasError` on every rank. ``world``: the
    number of processes the search runs on (default ``ranks.world``)."""
    world = ranks.world if world is None else world
    if resume is not None:
        plan = ranks.from_lead(lambda: _resumed_plan(resume, strategy, world))
    else:
        plan = ranks.agree(lambda: _Plan(_cell_space(space).to_dict(), "gdas" if isinstance(config, GdasConfig)
                                         else "darts", check(config or DartsConfig()), seed,
                                         None if data_root is None else str(data_root), dataset))
    space, config = space_from_dict(plan.space, source="the search's space"), plan.config
    data_root = str(data_root) if data_root is not None else plan.data_root
    if not isinstance(dataset, DatasetInfo):
        dataset = plan.dataset
    info = dataset if isinstance(dataset, DatasetInfo) else ranks.agree(lambda: get_dataset(
        dataset, data_root, image_size=config.image_size or SEARCH_IMAGE_SIZE.get(str(dataset).lower()),
        cutout=config.cutout))
    return Setup(plan.strategy, space, config, plan.seed, data_root, info)


def _resumed_plan(resume: str | Path, strategy: str | None, world: int) -> _Plan:
    """The plan of a run to resume, read from its folder; a folder that cannot be resumed, or
    that was searched on another number of processes, is a :class:`NasError`."""
    run = Run.open(resume)
    saved = run.config
    made_by = saved.get("strategy")
    if made_by not in SETTINGS or made_by not in saved:
        raise NasError(f"{resume} is not a DARTS search run; pass a folder made by `nas search --strategy darts` "
                       "(or gdas)")
    if strategy is not None and made_by != strategy:
        raise NasError(f"{resume} is a {made_by} search, not {strategy}; resume it with --strategy {made_by} "
                       "(or without --strategy)")
    searched_on = saved.get("world_size", 1)
    if searched_on != world:
        how = ("without torchrun" if searched_on == 1 else f"on {searched_on} processes (torchrun --nproc_per_node "
               f"{searched_on}, or nodes x processes per node making {searched_on})")
        raise NasError(f"{resume} was searched on {searched_on} process(es), this is {world}: each process's "
                       f"share of every batch depends on it; resume it {how}")
    # the result is written after the last checkpoint: with it there, a missing last.pt was
    # deleted, and starting over would replace the run's result
    last = run.path / "checkpoints" / "last.pt"
    if (run.path / "result.json").exists() and not last.exists():
        raise NasError(f"{last} is missing, though run {resume} has its result.json; it cannot be resumed, "
                       "start a new run (or restore the checkpoint)")
    space = space_from_dict(saved["space"], source=f"{resume}/config.json")  # checked here, on rank 0
    settings = dict(saved[made_by]) if isinstance(saved[made_by], dict) else saved[made_by]
    if isinstance(settings, dict) and "backend" not in settings and "workers" in settings:
        settings["num_workers"] = settings.pop("workers")  # a run from before `workers` meant Ray Train's
    return _Plan(space.to_dict(), made_by, from_dict(SETTINGS[made_by], settings, LABELS[made_by]),
                 int(saved["seed"]), saved.get("data_root"), saved["dataset"])


def _search(run: Run | None, path: Path, ranks: distributed.Ranks, model: Supernet, space: SearchSpace,
            info: DatasetInfo, config: DartsConfig, *, seed: int, dev: torch.device, progress: bool, plots: bool,
            report: Report | None) -> DartsResult:
    """The search loop; ``run`` is the run folder on rank 0 and ``None`` on the other ranks,
    which write nothing."""
    cuda = dev.type == "cuda"
    gdas = isinstance(config, GdasConfig)
    label = LABELS["gdas" if gdas else "darts"]
    if gdas:  # its own generator: the samples do not depend on how many numbers anything else drew
        model.generator = torch.Generator().manual_seed(seed)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    model.to(dev, memory_format=memory_format)
    net: nn.Module = model  # what the weight step calls: DDP averages the weights' gradients
    if ranks.parallel:
        if config.sync_batch_norm:
            distributed.convert(model)
        # built with the architecture frozen: DDP reduces only what requires a gradient now;
        # unused parameters: GDAS' unsampled ops. Buffers (BatchNorm running statistics) stay
        # equal on their own with global statistics, else DDP sends rank 0's every forward pass.
        with frozen(model.arch_parameters()):
            net = DistributedDataParallel(model, device_ids=[dev.index] if cuda else None,
                                          find_unused_parameters=gdas,
                                          **(_NO_BUFFER_SYNC if config.sync_batch_norm else {}))
    amp = cuda and config.amp and torch.cuda.is_bf16_supported()
    autocast: Callable[[], AbstractContextManager] = (
        (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if amp else nullcontext)
    if cuda:
        torch.backends.cudnn.benchmark = True

    w_optimizer = torch.optim.SGD(model.weight_parameters(), lr=config.w_lr, momentum=config.w_momentum,
                                  weight_decay=config.w_weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(w_optimizer, T_max=config.epochs, eta_min=config.w_lr_min)
    architect = Architect(model, order=config.order, lr=config.arch_lr, betas=config.arch_betas,
                          weight_decay=config.arch_weight_decay, w_momentum=config.w_momentum,
                          w_weight_decay=config.w_weight_decay, autocast=autocast, average=ranks.average_)

    train_part, val_part = search_split(info.train, fraction=config.train_portion, seed=seed)
    workers = config.num_workers if config.num_workers is not None else (4 if cuda else 0)
    # each rank's shard of either half; the steps of an epoch are those of the smaller shard
    steps = min(len(train_part) // ranks.world // config.batch_size or 1,
                len(val_part) // ranks.world // config.batch_size or 1)
    if config.max_steps is not None:
        steps = min(steps, config.max_steps)
    total_steps = steps * config.epochs

    checkpoint_path = path / "checkpoints" / "last.pt"
    start_epoch, stopped_early = 0, False
    history: list[dict[str, np.ndarray]] = []
    # read by rank 0, sent to the others: on several machines only rank 0's holds the run folder
    state = ranks.from_lead(lambda: load_search_checkpoint(checkpoint_path) if checkpoint_path.exists() else None)
    if state is not None:
        start_epoch, stopped_early, history = _restore(checkpoint_path, state, model, w_optimizer,
                                                       architect.optimizer, scheduler)
        if gdas:
            if "sampler" not in state:
                raise NasError(f"{checkpoint_path} is a checkpoint of a DARTS search, not a GDAS one; start a new "
                               "search")
            model.generator.set_state(state["sampler"]["generator"])
        if progress:
            tqdm.write(f"resuming {run.path} after epoch {start_epoch}/{config.epochs}")
    elif progress:
        on = f", {ranks.world} processes x batch {config.batch_size}" if ranks.parallel else ""
        tqdm.write(f"{label} search of {space.name!r} on {info.name} ({len(train_part)} train / {len(val_part)} val "
                   f"images, {info.image_size}px): {config.epochs} epochs x {steps} steps{on}, "
                   f"{sum(p.numel() for p in model.weight_parameters()):,} supernet weights, order {config.order}, "
                   f"collapse remedy {config.collapse_remedy}, device {dev}; run folder {path}")
    if run is not None:
        # each epoch once, by its epoch field: a killed search may have logged epochs after its checkpoint
        run.trim_epochs("metrics.jsonl", start_epoch)
        run.trim_epochs("genotypes.jsonl", start_epoch)
        # every opening marks the step it starts at: on a resume, TensorBoard then hides what the
        # killed search logged after its checkpoint (the first such mark of a run purges nothing)
        run.tensorboard(purge_step=start_epoch + 1)

    genotype = None
    metrics: dict[str, Any] = {}
    epoch = start_epoch
    while epoch < config.epochs and not stopped_early:
        started = time.perf_counter()
        model.train()
        lr = scheduler.get_last_lr()[0]
        arch_steps = epoch >= config.warmup
        if gdas:
            model.tau = config.temperature(epoch)
        loader_seed = seed * 1_000_003 + 2 * epoch
        train_loader = _loader(train_part, ranks, batch_size=config.batch_size, seed=loader_seed, workers=workers,
                               pin=cuda)
        val_loader = _loader(val_part, ranks, batch_size=config.batch_size, seed=loader_seed + 1, workers=workers,
                             pin=cuda)
        bar = tqdm(total=steps, desc=f"epoch {epoch + 1}/{config.epochs}", leave=False, disable=not progress,
                   dynamic_ncols=True)
        train_meter, val_meter = _Meter(dev), _Meter(dev)
        for step, ((x, y), (x_val, y_val)) in enumerate(zip(train_loader, val_loader)):
            if step >= steps:
                break
            x = x.to(dev, non_blocking=True, memory_format=memory_format)
            y = y.to(dev, non_blocking=True)
            x_val = x_val.to(dev, non_blocking=True, memory_format=memory_format)
            y_val = y_val.to(dev, non_blocking=True)
            if config.collapse_remedy == "aux-skip":
                model.aux_skip_beta = max(0.0, 1.0 - (epoch * steps + step) / total_steps)
            out = train_step(model, architect, w_optimizer, x, y, x_val, y_val, lr=lr, grad_clip=config.grad_clip,
                             arch_step=arch_steps, autocast=autocast, net=net)
            train_meter.add(out.train_loss, out.train_logits, y)
            val_meter.add(out.val_loss, out.val_logits, y_val)
            if progress and (step % 10 == 9 or step == steps - 1):  # reading a value waits for the GPU
                bar.set_postfix(loss=f"{train_meter.loss():.3f}", acc=f"{train_meter.accuracy():.1%}")
            bar.update()
        bar.close()
        train_meter.reduce(ranks)
        val_meter.reduce(ranks)
        scheduler.step()
        epoch += 1

        weights = model.op_weights()
        edge_weights = model.edge_weights()
        genotype = derive_genotype(space, weights, edge_weights)
        history.append(_as_numpy(weights))
        skips = count_ops(genotype, "skip_connect")
        if config.collapse_remedy == "early-stop" and arch_steps and skips >= config.max_skips:
            stopped_early = True
        metrics = {"epoch": epoch, "train_loss": train_meter.loss(), "train_acc": train_meter.accuracy(),
                   "val_loss": val_meter.loss(), "val_acc": val_meter.accuracy(), "lr": lr,
                   "aux_skip_beta": model.aux_skip_beta, **({"tau": model.tau} if gdas else {}),
                   "skip_connects": skips, "epoch_time_s": time.perf_counter() - started,
                   "genotype": short_genotype(genotype)}
        if run is not None:
            _write_epoch(run, epoch, space, model, weights, edge_weights, genotype, metrics, images=plots, checkpoint={
                "epoch": epoch, "stopped_early": stopped_early, "model": model.state_dict(),
                "w_optimizer": w_optimizer.state_dict(), "arch_optimizer": architect.optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "rng": rng_state(cuda=torch.cuda.is_available()),
                "history": [{k: torch.from_numpy(v) for k, v in h.items()} for h in history],
                **({"sampler": {"tau": model.tau, "generator": model.generator.get_state()}} if gdas else {})})
        if progress:
            tqdm.write(f"epoch {epoch}/{config.epochs}  train loss {metrics['train_loss']:.3f} acc "
                       f"{metrics['train_acc']:.1%}  val loss {metrics['val_loss']:.3f} acc {metrics['val_acc']:.1%}  "
                       f"{metrics['epoch_time_s']:.0f}s  {metrics['genotype']}")
            if stopped_early:
                tqdm.write(f"early stop (DARTS+): the normal cell has {skips} skip connections "
                           f"(limit {config.max_skips}); keeping this epoch's genotype")
        if report is not None:
            report(epoch, metrics)

    return _finish(run, path, model, space, genotype, history, epoch, stopped_early, plots=plots, label=label,
                   progress=progress)


def _write_epoch(run: Run, epoch: int, space: SearchSpace, model: Supernet, weights: dict[str, torch.Tensor],
                 edge_weights: dict[str, torch.Tensor] | None, genotype: Genotype, metrics: dict[str, Any], *,
                 images: bool, checkpoint: dict[str, Any]) -> None:
    """An epoch's records, in the order a kill between two of them can be resumed from: the
    architecture weights and genotype, the metrics (and the architecture in TensorBoard, with
    heatmap ``images``), then the checkpoint."""
    run.write_json(f"alphas/epoch_{epoch:03d}.json", {
        "epoch": epoch, "ops": list(space.ops), "alphas": {k: a for k, a in model.alphas.items()},
        "weights": weights, "betas": None if model.betas is None else dict(model.betas.items()),
        "edge_weights": edge_weights})
    run.append_record("genotypes.jsonl", {"epoch": epoch, "genotype": genotype.to_dict(),
                                          "short": short_genotype(genotype)})
    kill_point("darts.after_genotype")
    run.log(metrics, step=epoch)
    _board_architecture(run, epoch, space, model, weights, edge_weights, genotype, images=images)
    kill_point("darts.after_log")
    save_checkpoint(run.path / "checkpoints" / "last.pt", checkpoint)
    kill_point("darts.after_checkpoint")


def _board_architecture(run: Run, epoch: int, space: SearchSpace, model: Supernet, weights: dict[str, torch.Tensor],
                        edge_weights: dict[str, torch.Tensor] | None, genotype: Genotype, *, images: bool) -> None:
    """The architecture after ``epoch`` in TensorBoard: histograms of the raw alphas (and betas)
    per cell type, the derived genotype as text, and with ``images`` a heatmap of softmax(alpha)
    per cell type (``alphas/normal``, ...)."""
    writer = run.tensorboard()
    for name, alpha in model.alphas.items():
        writer.add_histogram(f"alpha/{name}", alpha.detach().float().cpu(), epoch)
    for name, beta in (model.betas.items() if model.betas is not None else ()):
        writer.add_histogram(f"beta/{name}", beta.detach().float().cpu(), epoch)
    writer.add_text("genotype", short_genotype(genotype), epoch)
    if images:
        softmax, edges = _as_numpy(weights), _as_numpy(edge_weights)
        for name in softmax:
            figure = alpha_figure({name: softmax[name]}, space, edge_weights=None if edges is None else
                                  {name: edges[name]}, title=f"epoch {epoch}")
            writer.add_figure(f"alphas/{name}", figure, epoch)  # closes the figure
    writer.flush()


CHECKPOINT_KEYS = ("epoch", "stopped_early", "model", "w_optimizer", "arch_optimizer", "scheduler", "rng", "history")


def load_search_checkpoint(path: Path, dev: torch.device | str = "cpu") -> dict[str, Any]:
    """Read a DARTS search checkpoint; a damaged file or another program's is a one-line :class:`NasError`."""
    state = read_weights_only(path, map_location=dev, remedy="start a new search")
    if not isinstance(state, dict) or any(key not in state for key in CHECKPOINT_KEYS):
        what = "a `nas train` checkpoint" if isinstance(state, dict) and "spec" in state else "another kind of file"
        raise NasError(f"{path} is {what}, not a DARTS search checkpoint; resume a folder made by "
                       "`nas search --strategy darts`, or start a new search")
    return state


def _restore(path: Path, state: dict[str, Any], model: Supernet, w_optimizer: torch.optim.Optimizer,
             arch_optimizer: torch.optim.Optimizer, scheduler: Any) -> tuple[int, bool, list[dict[str, np.ndarray]]]:
    """Load ``state`` into the search's objects: ``(epoch, stopped early, weight history)``; a
    checkpoint of another supernet is a :class:`NasError`."""
    try:
        model.load_state_dict(state["model"])
        w_optimizer.load_state_dict(state["w_optimizer"])
        arch_optimizer.load_state_dict(state["arch_optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        history = [{k: v.numpy() for k, v in h.items()} for h in state["history"]]
        return int(state["epoch"]), bool(state["stopped_early"]), history
    except (RuntimeError, KeyError, ValueError, TypeError, AttributeError) as exc:
        # load_state_dict lists every mismatched tensor (thousands of characters): one line instead
        raise NasError(f"{path} is a checkpoint of another DARTS search (another space or size: "
                       f"{type(exc).__name__}); start a new search") from None


class StepResult(NamedTuple):
    """Losses (detached scalars) and logits of one search step."""

    train_loss: torch.Tensor
    train_logits: torch.Tensor
    val_loss: torch.Tensor
    val_logits: torch.Tensor


def train_step(model: Supernet, architect: Architect, w_optimizer: torch.optim.Optimizer, x: torch.Tensor,
               y: torch.Tensor, x_val: torch.Tensor, y_val: torch.Tensor, *, lr: float, grad_clip: float,
               arch_step: bool = True, autocast: Callable[[], AbstractContextManager] = nullcontext,
               net: nn.Module | None = None) -> StepResult:
    """One search step: an architecture step on ``(x_val, y_val)``, then a weight step on
    ``(x, y)``. The validation loss comes from the architecture step's own forward pass (a
    plain forward pass when ``arch_step`` is off, during warm-up). ``net``: what the weight
    step calls, ``model`` or its DistributedDataParallel wrapper."""
    if arch_step:
        val_loss, val_logits = architect.step(x, y, x_val, y_val, w_lr=lr, w_optimizer=w_optimizer)
    else:
        with torch.no_grad(), autocast():
            val_logits = model(x_val)
        val_loss = F.cross_entropy(val_logits.float(), y_val)
    w_optimizer.zero_grad(set_to_none=True)
    with frozen(model.arch_parameters()):
        with autocast():
            logits = (net or model)(x)
            loss = F.cross_entropy(logits.float(), y)
        loss.backward()  # inside: recomputed edges must see the graph of the forward pass
    torch.nn.utils.clip_grad_norm_([p for group in w_optimizer.param_groups for p in group["params"]], grad_clip)
    w_optimizer.step()
    return StepResult(loss.detach(), logits.detach(), val_loss.detach(), val_logits.detach())


class _Meter:
    """Running loss and accuracy kept on the device: no host sync per step."""

    def __init__(self, dev: torch.device):
        self.loss_sum = torch.zeros((), device=dev)
        self.correct = torch.zeros((), device=dev, dtype=torch.long)
        self.seen = 0

    def add(self, loss: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> None:
        self.loss_sum += loss * len(y)
        self.correct += (logits.argmax(1) == y).sum()
        self.seen += len(y)

    def reduce(self, ranks: distributed.Ranks) -> None:
        """Sum the counts over the ranks: the epoch's figures of the global batch."""
        loss_sum, correct, self.seen = ranks.sum([float(self.loss_sum), int(self.correct), self.seen])
        self.loss_sum.fill_(loss_sum)
        self.correct.fill_(round(correct))
        self.seen = round(self.seen)

    def loss(self) -> float:
        return float(self.loss_sum) / max(self.seen, 1)

    def accuracy(self) -> float:
        return int(self.correct) / max(self.seen, 1)


def _finish(run: Run | None, path: Path, model: Supernet, space: SearchSpace, genotype: Genotype | None,
            history: list[dict[str, np.ndarray]], epochs: int, stopped_early: bool, *, plots: bool,
            label: str = "DARTS", progress: bool = False) -> DartsResult:
    weights = model.op_weights()
    edge_weights = model.edge_weights()
    if genotype is None:  # resumed a finished run: the checkpoint's weights give the same genotype
        genotype = derive_genotype(space, weights, edge_weights)
    if run is None:  # a rank other than 0: the result without the run folder's records
        return DartsResult(path=path, genotype=genotype, alphas=_detached(weights), edge_weights=_detached(edge_weights),
                           epochs=epochs, stopped_early=stopped_early, rank=torch.distributed.get_rank())
    genotype.save(run.path / "genotype.json")
    if plots:
        plot_genotype(genotype, run.path / "genotype.png", space=space, title=f"{label} on {space.name}, {epochs} epochs")
        plot_alphas(_as_numpy(weights), space, run.path / "alphas.png", edge_weights=_as_numpy(edge_weights),
                    title=f"architecture weights after {epochs} epochs")
        if history:
            plot_alpha_history(history, space, run.path / "alpha_history.png")
    metrics = run.metrics()
    decided = decisiveness(space, weights, genotype)
    kill_point("darts.before_result")
    run.write_json("result.json", {"genotype": genotype.to_dict(), "short": short_genotype(genotype),
                                   "epochs": epochs, "stopped_early": stopped_early,
                                   "decisiveness": {**asdict(decided), "share": decided.share,
                                                    "converged": decided.converged, "verdict": decided.verdict()},
                                   "final": metrics[-1] if metrics else {}})
    if progress:
        tqdm.write(decided.verdict())
    return DartsResult(path=run.path, genotype=genotype, alphas=_detached(weights),
                       edge_weights=_detached(edge_weights), epochs=epochs, stopped_early=stopped_early, metrics=metrics)
