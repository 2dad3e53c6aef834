"""One one-shot search on several processes: data parallel over ``torch.distributed``.

Each process (rank) holds the whole supernet and trains it on its own shard of every batch:

* weights: :class:`~torch.nn.parallel.DistributedDataParallel` averages their gradients
  during the backward pass of the weight step;
* architecture parameters: their gradients (and, for second-order steps, the weight gradients
  of the unrolled step and the vector of the Hessian-vector product) are averaged by one
  all-reduce each (:meth:`Ranks.average_`), so Adam steps the same on every rank and the
  parameters stay bit-identical;
* BatchNorm: statistics over the whole global batch, as ``torch.nn.SyncBatchNorm`` computes
  them (the DDP documentation's recommendation), but on every device, the CPU (gloo) included,
  and for the supernet's functional BatchNorms too (:func:`batch_norm`). With these three, a
  search on ``W`` processes at per-rank batch ``B`` computes what one process computes at batch
  ``W * B`` on the same images (tests/test_distributed.py checks it in float64).

The processes come from ``torchrun`` (which sets ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK`` and
the rendezvous) or from Ray Train (:mod:`nas.strategies.oneshot.ray_train`), which sets up the
process group itself. Rank 0 alone writes the run folder; errors found by rank 0 are sent to
every rank, so that all of them stop with the same one-line message.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from nas.errors import EchoedError, NasError
from nas.run import resolve_device

T = TypeVar("T")


@dataclass(frozen=True)
class Ranks:
    """This process's place in the search: ``rank`` of ``world`` processes; one process when
    ``world`` is 1 (every collective is then a no-op)."""

    rank: int = 0
    world: int = 1
    started_here: bool = False  # this module created the process group (and ends it)

    @property
    def lead(self) -> bool:
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        return self.world > 1

    def average_(self, tensors: Sequence[torch.Tensor]) -> None:
        """Replace every tensor by its mean over the ranks, in one all-reduce."""
        if not self.parallel:
            return
        for dtype in dict.fromkeys(t.dtype for t in tensors):  # the same order on every rank
            group = [t for t in tensors if t.dtype == dtype]
            flat = torch.cat([t.detach().reshape(-1) for t in group])
            dist.all_reduce(flat)
            flat /= self.world
            offset = 0
            for t in group:
                t.detach().copy_(flat[offset:offset + t.numel()].view_as(t))
                offset += t.numel()

    def sum(self, values: Sequence[float]) -> list[float]:
        """``values`` summed over the ranks (float64)."""
        if not self.parallel:
            return list(values)
        buffer = torch.tensor(list(values), dtype=torch.float64, device=_collective_device())
        dist.all_reduce(buffer)
        return buffer.tolist()

    def from_lead(self, fn: Callable[[], T]) -> T:
        """``fn()`` run on rank 0 only, its result (picklable) sent to every rank; a
        :class:`NasError` there is raised on every rank."""
        if not self.parallel:
            return fn()
        message: list[Any] = [None]
        if self.lead:
            try:
                message = [("ok", fn())]
            except NasError as exc:
                message = [("error", str(exc))]
                dist.broadcast_object_list(message, src=0, device=_collective_device())
                raise
        dist.broadcast_object_list(message, src=0, device=_collective_device())
        status, value = message[0]
        if status == "error":
            raise EchoedError(value)
        return value

    def agree(self, fn: Callable[[], T]) -> T:
        """``fn()`` on every rank; when it raises :class:`NasError` on any rank, every rank
        raises (the lowest failing rank's message), instead of the others waiting for it."""
        if not self.parallel:
            return fn()
        value, error = None, None
        try:
            value = fn()
        except NasError as exc:
            error = str(exc)
        errors: list[Any] = [None] * self.world
        dist.all_gather_object(errors, error)
        failed = [(rank, e) for rank, e in enumerate(errors) if e is not None]
        if failed:
            rank, message = failed[0]
            if rank == self.rank:
                raise NasError(message)
            raise EchoedError(message)
        return value  # type: ignore[return-value]


def _collective_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def launched_world() -> int:
    """The number of processes ``torchrun`` (or another launcher setting ``WORLD_SIZE``) started."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise NasError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not a number of processes; unset it, "
                       "or launch with torchrun") from None


def setup(device: str = "auto") -> tuple[Ranks, torch.device]:
    """This process's :class:`Ranks` and device. Under ``torchrun`` the process group is
    created here (NCCL with one GPU per local rank, else gloo); under Ray Train it exists
    already; otherwise the search runs alone."""
    dev = resolve_device(device)
    if dist.is_available() and dist.is_initialized():
        started = False
    elif launched_world() > 1:
        if not dist.is_available():
            raise NasError("this PyTorch has no torch.distributed; run the search in one process")
        if dev.type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", timeout=timedelta(minutes=30))
        started = True
    else:
        return Ranks(), dev
    ranks = Ranks(rank=dist.get_rank(), world=dist.get_world_size(), started_here=started)
    if dev.type == "cuda":
        if dist.get_backend() != "nccl":
            raise NasError("the process group is not NCCL, so its ranks cannot average CUDA tensors; "
                           "use --device cpu or launch with a GPU backend")
        dev = torch.device("cuda", torch.cuda.current_device())
    elif dist.get_backend() == "nccl":
        raise NasError(f"--device {device}: the process group is NCCL (GPUs); use --device cuda or auto")
    return ranks, dev


def teardown(ranks: Ranks) -> None:
    if ranks.started_here and dist.is_initialized():
        dist.destroy_process_group()


# -- BatchNorm over the global batch -----------------------------------------------------------
_SYNC: list[Ranks] = []  # set while a parallel search runs (synchronised_batch_norm)


class synchronised_batch_norm:
    """Within: :func:`batch_norm` and the modules :func:`convert` touched take their statistics
    over the batches of all ranks."""

    def __init__(self, ranks: Ranks):
        self.ranks = ranks

    def __enter__(self) -> None:
        if self.ranks.parallel:
            _SYNC.append(self.ranks)

    def __exit__(self, *exc: object) -> None:
        if self.ranks.parallel:
            _SYNC.pop()


def batch_norm(x: torch.Tensor, running_mean: torch.Tensor | None, running_var: torch.Tensor | None,
               weight: torch.Tensor | None, bias: torch.Tensor | None, *, training: bool, momentum: float,
               eps: float) -> torch.Tensor:
    """``F.batch_norm``; in training mode within :class:`synchronised_batch_norm`, on the mean
    and variance of the global batch (differentiable: the gradient of every rank's loss
    reaches the inputs of every rank, as with ``nn.SyncBatchNorm``)."""
    if not (_SYNC and training):
        return F.batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps)
    ranks = _SYNC[-1]
    dims = [0, *range(2, x.dim())]
    xf = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
    var, mean = torch.var_mean(xf, dim=dims, correction=0)
    channels = mean.numel()
    count = xf.new_full((1,), x.numel() / channels)
    local = torch.cat([mean, var, count])
    # each rank's (mean, variance, count) in its own row, summed: every rank gets every row,
    # and the backward pass sends each row's gradient back to its rank
    rows = torch.zeros(ranks.world, local.numel(), dtype=local.dtype, device=local.device)
    rows = rows.index_copy(0, torch.tensor([ranks.rank], device=local.device), local[None])
    rows = _SumOverRanks.apply(rows)
    means, variances, counts = rows[:, :channels], rows[:, channels:2 * channels], rows[:, -1:].detach()
    total = counts.sum()
    share = counts / total
    g_mean = (share * means).sum(0)
    g_var = (share * (variances + (means - g_mean) ** 2)).sum(0)  # Chan et al.: no cancellation
    shape = [1, channels] + [1] * (x.dim() - 2)
    y = (xf - g_mean.view(shape)) * torch.rsqrt(g_var + eps).view(shape)
    if weight is not None:
        y = y * weight.view(shape)
    if bias is not None:
        y = y + bias.view(shape)
    if running_mean is not None and running_var is not None:
        with torch.no_grad():
            unbiased = g_var * (total / (total - 1).clamp_min(1))
            running_mean.lerp_(g_mean.to(running_mean.dtype), momentum)
            running_var.lerp_(unbiased.to(running_var.dtype), momentum)
    return y.to(x.dtype)


class _SumOverRanks(torch.autograd.Function):
    """The sum of a tensor over the ranks; its gradient is the sum of the ranks' gradients."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        total = x.detach().clone()
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        total = grad.detach().clone()
        dist.all_reduce(total)
        return total


class _GlobalBatchNorm(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` whose training-mode statistics come from :func:`batch_norm`; same
    parameters, buffers and state-dict keys (:func:`convert` gives a module this class)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (_SYNC and self.training):
            return super().forward(x)
        momentum = self.momentum
        if self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            if momentum is None:
                momentum = 1.0 / float(self.num_batches_tracked)
        track = self.track_running_stats
        return batch_norm(x, self.running_mean if track else None, self.running_var if track else None,
                          self.weight, self.bias, training=True, momentum=momentum or 0.0, eps=self.eps)


def convert(model: nn.Module) -> nn.Module:
    """Let every ``nn.BatchNorm2d`` of ``model`` take global-batch statistics within
    :class:`synchronised_batch_norm`. The modules stay the same objects (references to them
    elsewhere stay valid), only their class changes to a subclass."""
    for m in model.modules():
        if type(m) is nn.BatchNorm2d:
            m.__class__ = _GlobalBatchNorm
    return model
