"""DARTS for ``nas search --strategy darts`` and for Python callers.

Differentiable architecture search (Liu, Simonyan, Yang, ICLR 2019) over any cell space, with
second-order steps, partial channels (PC-DARTS) and a collapse remedy (DARTS-, on by default).

>>> from nas.strategies.oneshot.darts import DartsConfig, search_darts
>>> result = search_darts("darts", "digits", config=DartsConfig(epochs=4))  # doctest: +SKIP
>>> result.genotype, result.path  # doctest: +SKIP
"""
from __future__ import annotations

import argparse

from nas.strategies.oneshot.derive import short_genotype
from nas.strategies.oneshot.search import COLLAPSE_REMEDIES, DartsConfig, DartsResult, search_darts

__all__ = ["DartsConfig", "DartsResult", "add_arguments", "run_from_args", "search_darts"]

_DEFAULTS = DartsConfig()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the DARTS option group to ``nas search``."""
    g = parser.add_argument_group(
        "DARTS (--strategy darts)",
        "Supernet search; the defaults are a tiny CPU demo, the paper's CIFAR-10 search is "
        "--epochs 50 --init-channels 16 --layers 8 (scripts/search_darts_cifar10.sh). "
        "With --resume the run's saved settings apply.")
    g.add_argument("--epochs", type=int, default=_DEFAULTS.epochs, help=f"search epochs (default {_DEFAULTS.epochs})")
    g.add_argument("--batch-size", type=int, default=_DEFAULTS.batch_size,
                   help=f"batch size of both weight and architecture steps (default {_DEFAULTS.batch_size})")
    g.add_argument("--init-channels", type=int, default=_DEFAULTS.init_channels,
                   help=f"supernet channels of the first cells (default {_DEFAULTS.init_channels})")
    g.add_argument("--layers", type=int, default=_DEFAULTS.layers,
                   help=f"supernet cells, reductions at 1/3 and 2/3 (default {_DEFAULTS.layers})")
    g.add_argument("--order", type=int, choices=(1, 2), default=_DEFAULTS.order,
                   help="1: first-order architecture steps; 2: second order (unrolled weights, finite-difference "
                   "Hessian-vector product; about 2x slower)")
    g.add_argument("--partial-channels", type=int, default=_DEFAULTS.partial_channels, metavar="K",
                   help="PC-DARTS: 1/K of the channels through each mixed op, with edge normalisation "
                   "(default 1: off; the paper uses 4)")
    g.add_argument("--no-edge-normalisation", dest="edge_normalisation", action="store_false", default=None,
                   help="with --partial-channels, leave out PC-DARTS' edge-normalisation weights")
    g.add_argument("--collapse-remedy", choices=COLLAPSE_REMEDIES, default=_DEFAULTS.collapse_remedy,
                   help="against the collapse into skip connections: aux-skip (DARTS-: decaying auxiliary skip "
                   "on every edge; default), early-stop (DARTS+: stop at --max-skips skips in the normal cell), "
                   "none")
    g.add_argument("--max-skips", type=int, default=_DEFAULTS.max_skips,
                   help=f"early-stop limit of skip connections in the normal cell (default {_DEFAULTS.max_skips})")
    g.add_argument("--arch-lr", type=float, default=_DEFAULTS.arch_lr,
                   help=f"Adam learning rate of the architecture weights (default {_DEFAULTS.arch_lr})")
    g.add_argument("--arch-weight-decay", type=float, default=_DEFAULTS.arch_weight_decay,
                   help=f"architecture weight decay (default {_DEFAULTS.arch_weight_decay})")
    g.add_argument("--w-lr", type=float, default=_DEFAULTS.w_lr,
                   help=f"SGD learning rate of the weights, cosine-annealed (default {_DEFAULTS.w_lr})")
    g.add_argument("--w-lr-min", type=float, default=_DEFAULTS.w_lr_min,
                   help=f"final weight learning rate (default {_DEFAULTS.w_lr_min})")
    g.add_argument("--w-weight-decay", type=float, default=_DEFAULTS.w_weight_decay,
                   help=f"weight decay of the weights (default {_DEFAULTS.w_weight_decay})")
    g.add_argument("--warmup-epochs", type=int, default=_DEFAULTS.warmup_epochs,
                   help="epochs of weight training before architecture steps start (default 0)")
    g.add_argument("--train-portion", type=float, default=_DEFAULTS.train_portion,
                   help="share of the training set for the weights; the rest trains the architecture (default 0.5)")
    g.add_argument("--max-steps", type=int, help="at most this many steps per epoch (quick smoke runs)")
    g.add_argument("--image-size", type=int,
                   help="resize images to this side (default: the data set's; 16 for digits, whose 8x8 scans "
                   "gain nothing from 32)")
    g.add_argument("--cutout", type=int, default=_DEFAULTS.cutout, help="Cutout side on training images (default 0)")
    g.add_argument("--workers", type=int, help="data loader processes (default 0 on the CPU, 4 on a GPU)")
    g.add_argument("--threads", type=int, default=_DEFAULTS.threads,
                   help="CPU threads (default 1: more rarely pay off for the supernet's many small ops and cost "
                   "a lot when other processes share the cores)")
    g.add_argument("--no-amp", dest="amp", action="store_false",
                   help="no bfloat16 mixed precision on the GPU (it is never used on the CPU)")
    g.add_argument("--no-channels-last", dest="channels_last", action="store_false",
                   help="on the GPU, keep tensors in the default (channels-first) memory layout")


def config_from_args(args: argparse.Namespace) -> DartsConfig:
    """The :class:`DartsConfig` of parsed ``nas search`` options."""
    return DartsConfig(
        epochs=args.epochs, batch_size=args.batch_size, init_channels=args.init_channels, layers=args.layers,
        order=args.order, partial_channels=args.partial_channels, edge_normalisation=args.edge_normalisation,
        collapse_remedy=args.collapse_remedy, max_skips=args.max_skips, arch_lr=args.arch_lr,
        arch_weight_decay=args.arch_weight_decay, w_lr=args.w_lr, w_lr_min=args.w_lr_min,
        w_weight_decay=args.w_weight_decay, warmup_epochs=args.warmup_epochs, train_portion=args.train_portion,
        max_steps=args.max_steps, image_size=args.image_size, cutout=args.cutout, workers=args.workers,
        amp=args.amp, channels_last=args.channels_last, threads=args.threads).validate()


def run_from_args(args: argparse.Namespace) -> int:
    """Run ``nas search --strategy darts``; prints where the result is and what to do next."""
    config = None if args.resume else config_from_args(args)
    result = search_darts(args.space, args.dataset, config=config, out=args.out, resume=args.resume, seed=args.seed,
                          data_root=args.data_root, device=args.device, progress=True)
    print(f"genotype ({result.epochs} epochs{', stopped early' if result.stopped_early else ''}): "
          f"{short_genotype(result.genotype)}")
    print(f"run folder: {result.path}  (genotype.json, genotype.png, alphas.png, metrics.jsonl, tensorboard/)")
    print(f"next: nas train --genotype {result.path}")
    return 0
