"""A one-shot search as a Ray Train job (``nas search --strategy darts --backend ray``).

Ray Train's ``TorchTrainer`` starts ``workers`` processes on a local Ray or on a cluster
(``--ray-address``) and sets up their process group (gloo, or NCCL with ``--use-gpu``); each
worker then runs :func:`~nas.strategies.oneshot.search.search_darts` as one rank, exactly as
under ``torchrun``. The run folder is made here, by the driver, before the workers start;
rank 0 writes into it (on a cluster it must be on storage that every node sees at the same
path, as Ray Train's own ``storage_path``, which is its ``ray/`` subfolder).

After every epoch the checkpoint is reported to Ray Train (``ray.train.report``); when a
worker dies, Ray Train restarts all of them (up to ``max_failures`` times,
``FailureConfig``) and rank 0 puts the last reported checkpoint back into the run folder, from
which the search continues after that epoch.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from nas.checkpoint import copy_checkpoint, read_weights_only
from nas.data import DatasetInfo
from nas.errors import NasError
from nas.faults import kill_point
from nas.genotype import Genotype
from nas.run import Run
from nas.strategies.oneshot import distributed
from nas.strategies.oneshot.search import DartsResult, prepare, search_darts
from nas.strategies.oneshot.settings import DartsConfig, ray_train_workers

CHECKPOINT = "last.pt"


def search_ray_train(space: Any, dataset: str | DatasetInfo = "digits", *, config: DartsConfig | None = None,
                     out: str | Path | None = None, resume: str | Path | None = None, seed: int = 0,
                     data_root: str | Path | None = None, device: str = "auto", progress: bool = True,
                     strategy: str | None = None) -> DartsResult:
    """Run :func:`~nas.strategies.oneshot.search.search_darts` on ``config.workers`` Ray Train
    workers (with ``resume``: the run's own settings); returns what rank 0 found."""
    if isinstance(dataset, DatasetInfo):
        raise NasError("a Ray Train search loads its data set in every worker: pass its name, not a loaded data set")
    if distributed.launched_world() > 1:
        raise NasError("--backend ray starts its own worker processes; run it without torchrun")
    if resume is not None:
        world = ray_train_workers(Run.open(resume).config)
        if world is None:
            raise NasError(f"{resume} is not a Ray Train search; resume it with `nas search --resume {resume}` "
                           "(under torchrun when it was searched on several processes)")
    else:
        world = (config or DartsConfig()).workers
    setup = prepare(distributed.Ranks(), space, dataset, config=config, resume=resume, seed=seed,
                    data_root=data_root, strategy=strategy, world=world)
    config = setup.config
    if config.use_gpu and device == "cpu":
        raise NasError("--use-gpu gives every worker a GPU; drop --device cpu (or drop --use-gpu)")
    try:
        import ray
        from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
        from ray.train.torch import TorchTrainer
    except ImportError as exc:
        raise NasError(f"Ray Train is not available ({exc}); install ray[train], or use torchrun") from None
    from nas.strategies.blackbox.ray_cluster import connect_ray

    connection = connect_ray(config.ray_address)
    try:
        _check_resources(ray.cluster_resources(), world, config)
        if resume is not None:
            path = Path(resume)
        else:
            params = sum(p.numel() for p in setup.supernet().weight_parameters())
            path = setup.create_run(out, world=world, device="cuda" if config.use_gpu else "cpu",
                                    supernet_params=params)
        if progress:
            print(connection.instructions(), flush=True)
            print(f"Ray Train: {world} workers{' with a GPU each' if config.use_gpu else ''}, batch "
                  f"{config.batch_size} each; run folder {path}", flush=True)
        trainer = TorchTrainer(
            _worker,
            train_loop_config={"path": str(path.resolve()), "dataset": dataset,
                               "data_root": setup.data_root, "device": "auto" if config.use_gpu else "cpu",
                               "strategy": setup.strategy, "progress": progress},
            scaling_config=ScalingConfig(num_workers=world, use_gpu=config.use_gpu,
                                         resources_per_worker={"CPU": config.threads,
                                                               **({"GPU": 1} if config.use_gpu else {})}),
            run_config=RunConfig(name=path.name, storage_path=str((path / "ray").resolve()),
                                 failure_config=FailureConfig(max_failures=config.max_failures),
                                 checkpoint_config=CheckpointConfig(num_to_keep=1)))
        try:
            result = trainer.fit()
        except Exception as exc:  # noqa: BLE001 - Ray Train's TrainingFailedError once max_failures restarts are spent
            first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
            raise NasError(f"the Ray Train workers failed ({first.strip()[:300]}); `nas search --resume {path}` "
                           "continues after the last epoch") from None
        outcome = getattr(result, "return_value", None) or {}
        if outcome.get("error"):
            raise NasError(outcome["error"])
    finally:
        if connection.started_here:
            ray.shutdown()
    return _result(path)


def _check_resources(resources: dict[str, float], world: int, config: DartsConfig) -> None:
    """A one-line error for workers the cluster cannot hold at once (Ray Train would wait for
    them for ever)."""
    cpus, gpus = resources.get("CPU", 0), resources.get("GPU", 0)
    if world * config.threads > cpus:
        raise NasError(f"{world} workers of {config.threads} CPU thread(s) need {world * config.threads} CPUs; the Ray "
                       f"cluster has {cpus:g}: lower --workers (or --threads), or add nodes")
    if config.use_gpu and world > gpus:
        raise NasError(f"--use-gpu gives each of {world} workers a GPU; the Ray cluster has {gpus:g}: lower "
                       "--workers, or drop --use-gpu")


def _worker(cfg: dict[str, Any]) -> dict[str, Any]:
    """One Ray Train worker: one rank of the search. Returns ``{"error": message}`` for a
    mistake in the input (Ray Train would retry an exception), else ``{}``."""
    import ray.train

    context = ray.train.get_context()
    lead = context.get_world_rank() == 0
    path = Path(cfg["path"])
    if torch.cuda.is_available() and cfg["device"] != "cpu":
        from ray.train.torch import get_device

        torch.cuda.set_device(get_device())
    restored = ray.train.get_checkpoint()
    if restored is not None and lead:  # a restart
        with restored.as_directory() as folder:
            _take_newer(Path(folder) / CHECKPOINT, path / "checkpoints" / CHECKPOINT)

    def report(epoch: int, metrics: dict[str, Any]) -> None:
        numbers = {k: v for k, v in metrics.items() if isinstance(v, (int, float, str)) and not isinstance(v, bool)}
        if lead:
            with tempfile.TemporaryDirectory() as folder:
                shutil.copyfile(path / "checkpoints" / CHECKPOINT, Path(folder) / CHECKPOINT)
                ray.train.report(numbers, checkpoint=ray.train.Checkpoint.from_directory(folder),
                                 checkpoint_dir_name=f"epoch_{epoch:03d}")
        else:
            ray.train.report(numbers)
        kill_point("ray_train.after_report")

    try:
        search_darts(None, cfg["dataset"], resume=path, data_root=cfg["data_root"], device=cfg["device"],
                     progress=cfg["progress"] and lead, report=report, strategy=cfg["strategy"])
    except NasError as exc:
        return {"error": str(exc)}
    return {}


def _epoch(checkpoint: Path) -> int:
    if not checkpoint.is_file():
        return -1
    return int(read_weights_only(checkpoint, remedy="start a new search")["epoch"])


def _take_newer(reported: Path, own: Path) -> None:
    """Put the checkpoint last reported to Ray Train in the run folder, unless the folder's own
    is of a later epoch (written just before a worker died, before Ray Train registered it)."""
    if _epoch(reported) > _epoch(own):
        own.parent.mkdir(parents=True, exist_ok=True)
        copy_checkpoint(reported, own)


def _result(path: Path) -> DartsResult:
    """The search's result, from the run folder rank 0 wrote."""
    done = json.loads((path / "result.json").read_text())
    genotype = Genotype.load(path / "genotype.json")
    last = sorted((path / "alphas").glob("epoch_*.json"))
    weights = json.loads(last[-1].read_text()) if last else {}
    as_tensors = (lambda d: None if d is None else {k: torch.tensor(v) for k, v in d.items()})
    return DartsResult(path=path, genotype=genotype, alphas=as_tensors(weights.get("weights")) or {},
                       edge_weights=as_tensors(weights.get("edge_weights")), epochs=int(done["epochs"]),
                       stopped_early=bool(done["stopped_early"]), metrics=Run(path).metrics())
