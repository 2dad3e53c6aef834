"""Settings of a DARTS search, declared once: they validate (:func:`nas.config.check`) and give
``nas search --strategy darts`` its options. Imports nothing heavy, so ``nas search --help`` stays fast."""
from __future__ import annotations

from dataclasses import dataclass

from nas.config import setting
from nas.errors import NasError

COLLAPSE_REMEDIES = ("aux-skip", "early-stop", "none")
BACKENDS = ("local", "ray")


@dataclass
class DartsConfig:
    """Settings of a DARTS search. The defaults are a small search that finishes in about two
    minutes on one CPU core and converges (the ``digits`` demo: 10 epochs of 22 steps at batch
    32, the first 3 for the weights only, then architecture steps at Adam learning rate 0.2);
    the paper's CIFAR-10 search is ``DartsConfig(epochs=50, batch_size=64, init_channels=16,
    layers=8, arch_lr=3e-4, warmup_epochs=0)`` (``scripts/search_darts_cifar10.sh``).

    collapse_remedy: against DARTS' drift towards parameter-free skip connections.
        ``"aux-skip"`` (DARTS-; Chu et al., ICLR 2021): every edge gets an extra skip
        connection scaled by ``beta``, decayed linearly from 1 to 0 over the search, so the
        ``skip_connect`` candidates no longer win merely by easing gradient flow.
        ``"early-stop"`` (DARTS+; Liang et al. 2019): stop once the normal cell derived after
        an epoch holds ``max_skips`` or more skip connections. ``"none"`` (default): plain
        DARTS. On the digits demo aux-skip leaves a normal cell of skip connections once its
        auxiliary skips have decayed; on NAS-Bench-201 plain DARTS collapses instead.
    partial_channels: ``K > 1`` sends ``1/K`` of the channels through each mixed op (PC-DARTS),
        which cuts memory and time about ``K``-fold; edge normalisation comes with it unless
        ``edge_normalisation`` is ``False``.
    image_size: ``None`` takes the data set's own, except for ``digits`` (8x8 scans that the
        data set upsamples to 32): searched at 16 px, which keeps every pixel of information at
        a quarter of the cost.
    channels_last: channels-last (NHWC) tensors, on the CPU too: oneDNN's depthwise
        convolutions and pooling run several times faster on them there
        (results/darts_benchmark.md).
    recompute: keep no activation inside a mixed op for the backward pass, recomputing each
        edge's forward instead (``torch.utils.checkpoint``): about a fifth of the memory for a
        third more time. Default: on for a full supernet from a quarter of the paper's size up
        (:meth:`uses_recompute`); off with partial channels, whose activations are already
        ``K`` times smaller, and for small supernets such as the digits demo's.
    backend: ``"local"`` (or ``None``) runs the search in this process, or data parallel in every process
        that ``torchrun`` starts (:mod:`nas.strategies.oneshot.distributed`); ``"ray"`` starts
        ``workers`` such processes as a Ray Train job (:mod:`nas.strategies.oneshot.ray_train`).
        ``batch_size`` is the batch of each process.
    sync_batch_norm: with several processes, every BatchNorm takes the statistics of the
        global batch (the search computes what one process computes at the global batch);
        that is two all-reduces per BatchNorm and pass, hundreds per step, which a slow
        interconnect pays for (``results/scaling_benchmark.md``). Off: each process's own
        batch, as plain DistributedDataParallel does.
    threads: one by default: the supernet's thousands of small ops gain little from more, and
        when other processes keep the cores busy, threads waiting for each other make a step ten
        times slower or worse. A result is reproducible for a given thread count.
    """

    epochs: int = setting(10, "search epochs", min=1)
    batch_size: int = setting(32, "batch size of both weight and architecture steps", min=1)
    init_channels: int = setting(8, "supernet channels of the first cells", min=1)
    layers: int = setting(5, "supernet cells, two of them reductions (at 1/3 and 2/3 of the depth)", min=3)
    order: int = setting(1, "1: first-order architecture steps; 2: second order (unrolled weights, "
                         "finite-difference Hessian-vector product; about 2x slower)", choices=(1, 2))
    partial_channels: int = setting(1, "PC-DARTS: 1/K of the channels through each mixed op, with edge "
                                    "normalisation (1: off; the paper uses 4)", min=1, metavar="K")
    edge_normalisation: bool | None = setting(None, "PC-DARTS' edge-normalisation weights (default: on when "
                                              "--partial-channels is above 1, else off)")
    w_lr: float = setting(0.025, "SGD learning rate of the weights, cosine-annealed", min=0, min_open=True)
    w_lr_min: float = setting(0.001, "weight learning rate at the end of the cosine schedule", min=0)
    w_momentum: float = setting(0.9, "SGD momentum of the weights", min=0, max=1, option=False)
    w_weight_decay: float = setting(3e-4, "weight decay of the weights", min=0)
    grad_clip: float = setting(5.0, "maximum gradient norm of a weight step", min=0, option=False)
    arch_lr: float = setting(0.2, "Adam learning rate of the architecture weights (the paper's 3e-4 is "
                             "for its 20,000 steps; the demo takes 150)", min=0, min_open=True)
    arch_betas: tuple[float, float] = setting((0.5, 0.999), "Adam betas of the architecture step", option=False)
    arch_weight_decay: float = setting(1e-3, "weight decay of the architecture weights (Adam)", min=0)
    warmup_epochs: int | None = setting(None, "epochs of weight training before architecture steps start "
                                        "(default: 3/10 of the epochs, rounded down; PC-DARTS uses 15 of 50)",
                                        min=0)
    collapse_remedy: str = setting("none", "against the collapse into skip connections: aux-skip (DARTS-: "
                                   "decaying auxiliary skip on every edge), early-stop (DARTS+: stop at "
                                   "--max-skips skips in the normal cell), none", choices=COLLAPSE_REMEDIES)
    max_skips: int = setting(2, "early-stop limit of skip connections in the normal cell", min=1)
    train_portion: float = setting(0.5, "share of the training set for the weights; the rest trains the "
                                   "architecture", min=0, max=1, min_open=True, max_open=True)
    max_steps: int | None = setting(None, "end every epoch after this many steps (smoke tests only)", min=1)
    image_size: int | None = setting(None, "square input side in pixels (default: the data set's own; 16 "
                                     "for digits, whose 8x8 scans gain nothing from 32)", min=1)
    cutout: int = setting(0, "side in pixels of the Cutout square on training images, 0 for none", min=0)
    num_workers: int | None = setting(None, "data loader processes of each search process (default 0 on the CPU, "
                                      "4 on a GPU)", min=0)
    amp: bool = setting(True, "bfloat16 mixed precision on a GPU (the CPU always runs fp32)")
    channels_last: bool = setting(True, "channels-last (NHWC) tensors (faster on the CPU and on GPUs)")
    recompute: bool | None = setting(None, "recompute every mixed op in the backward pass instead of keeping its "
                                     "activations (default: on for a full supernet of at least a quarter of the "
                                     "paper's batch x pixels x channels, off with partial channels)")
    threads: int = setting(1, "CPU threads (more rarely pay off for the supernet's many small ops and cost "
                           "a lot when other processes share the cores)", min=1)
    sync_batch_norm: bool = setting(True, "several processes: BatchNorm statistics of the global batch, so the "
                                    "search does not depend on the process count (two small all-reduces per "
                                    "BatchNorm and pass); off: each process's own batch, as plain DDP (far fewer "
                                    "messages; the result then depends on the process count)")
    # several processes: torchrun needs no option (every process it starts runs one rank);
    # these start them as Ray Train workers
    backend: str | None = setting(None, "where the search runs. One-shot: local (default: this process, or each "
                                  "process torchrun starts) or ray (Ray Train workers: --workers, --use-gpu, "
                                  "--ray-address). Black-box: optuna (default: trials in this process) or ray (Ray "
                                  "Tune trials)", choices=BACKENDS, metavar="NAME")
    workers: int = setting(2, "backend ray: Ray Train workers, one search process each; --batch-size is per worker",
                           min=1)
    use_gpu: bool = setting(False, "backend ray: one GPU per worker")
    ray_address: str | None = setting(None, "backend ray: Ray cluster to attach to (auto, host:6379 or "
                                      "ray://host:10001; default $RAY_ADDRESS; none: start a local Ray)")
    max_failures: int = setting(2, "backend ray: restarts of all workers from the last epoch's checkpoint when one "
                                "fails", min=0)

    def check_together(self) -> None:
        """The checks that involve several fields (:func:`nas.config.check` calls it)."""
        if self.init_channels % self.partial_channels:
            divisors = [k for k in range(1, self.init_channels + 1) if self.init_channels % k == 0]
            raise NasError(f"partial channels K={self.partial_channels} must divide init channels "
                           f"{self.init_channels}; choose K from {divisors}")
        if self.warmup >= self.epochs:
            raise NasError(f"DARTS warmup epochs ({self.warmup}) must be below the epochs "
                           f"({self.epochs}), or the architecture never trains")

    @property
    def warmup(self) -> int:
        """Epochs before the first architecture step: ``warmup_epochs``, by default 3/10 of the epochs."""
        return self.warmup_epochs if self.warmup_epochs is not None else 3 * self.epochs // 10

    def uses_recompute(self, image_size: int) -> bool:
        """Whether edges are recomputed: ``recompute`` when set, else for a full supernet (no
        partial channels) at least a quarter the size of the paper's (batch x image side^2 x
        channels >= 64 x 32^2 x 16 / 4), whose kept activations would pass ~2 GB."""
        if self.recompute is not None:
            return bool(self.recompute)
        return self.partial_channels == 1 and self.batch_size * image_size ** 2 * self.init_channels >= 2 ** 18

    @property
    def uses_edge_normalisation(self) -> bool:
        return self.partial_channels > 1 if self.edge_normalisation is None else bool(self.edge_normalisation)


@dataclass
class GdasConfig(DartsConfig):
    """Settings of a GDAS search (Dong & Yang, CVPR 2019): those of DARTS, whose supernet,
    schedule and run folder it shares, plus the Gumbel-softmax temperature, annealed linearly
    from ``tau_max`` in the first epoch to ``tau_min`` in the last. Architecture steps are first
    order (``order`` must stay 1)."""

    tau_max: float = setting(10.0, "GDAS: Gumbel-softmax temperature of the first epoch", min=0, min_open=True)
    tau_min: float = setting(0.1, "GDAS: temperature of the last epoch, reached linearly", min=0, min_open=True)

    def check_together(self) -> None:
        super().check_together()
        if self.order != 1:
            raise NasError(f"GDAS takes first-order architecture steps through its sampled ops; drop --order "
                           f"{self.order}")
        if self.tau_min > self.tau_max:
            raise NasError(f"GDAS' temperature anneals downwards: --tau-min ({self.tau_min}) must not exceed "
                           f"--tau-max ({self.tau_max})")

    def temperature(self, epoch: int) -> float:
        """The temperature of ``epoch`` (counted from 0): ``tau_max`` first, ``tau_min`` last."""
        if self.epochs == 1:
            return self.tau_max
        done = epoch / (self.epochs - 1)
        return self.tau_max * (1 - done) + self.tau_min * done  # exactly tau_min at the end


def ray_train_workers(saved: dict) -> int | None:
    """The Ray Train workers a one-shot run's ``config.json`` (``saved``) records; ``None`` for a
    run not made with ``--backend ray``."""
    own = saved.get(saved.get("strategy", ""))
    return own.get("workers") if isinstance(own, dict) and own.get("backend") == "ray" else None
