"""``nas train``: train a genotype from scratch into a run folder."""
from __future__ import annotations

import argparse

ORDER = 30

# TrainConfig field -> (type, help); every field is an option, and an unset option (None) keeps
# the data set's recipe value
TRAIN_OPTIONS: dict[str, tuple[type, str]] = {
    "epochs": (int, "training epochs (recipe: 600 for CIFAR, 10 for digits)"),
    "batch_size": (int, "images per step (recipe: 96 for CIFAR, 64 for digits)"),
    "lr": (float, "initial SGD learning rate (recipe: 0.025 for CIFAR, 0.05 for digits)"),
    "lr_min": (float, "learning rate the cosine schedule ends at (recipe: 0)"),
    "momentum": (float, "SGD momentum (recipe: 0.9)"),
    "weight_decay": (float, "weight decay (recipe: 3e-4)"),
    "grad_clip": (float, "maximum gradient norm, 0 for none (recipe: 5)"),
    "auxiliary_weight": (float, "auxiliary head loss weight, 0 for no head (recipe: 0.4 for CIFAR, 0 for digits)"),
    "drop_path": (float, "final drop-path probability, grown linearly (recipe: 0.2 for CIFAR, 0 for digits)"),
    "cutout": (int, "Cutout side in pixels, 0 for none (recipe: 16 for CIFAR, 0 for digits)"),
    "augment": (bool, "random crop / flip on training images (recipe: on)"),
    "image_size": (int, "input side in pixels (default: the data set's, 32)"),
    "init_channels": (int, "initial channels of a cell network (default: the space's; 8 for digits)"),
    "layers": (int, "cells of a cell network, incl. 2 reductions (default: the space's; 5 for digits)"),
    "precision": (str, "auto, fp32, bf16 or fp16; mixed precision applies on a GPU only (default auto)"),
    "channels_last": (bool, "NHWC memory layout (default: on a GPU only)"),
    "num_workers": (int, "DataLoader worker processes (default 0)"),
    "train_subset": (int, "train on this many images, a fixed sample (benchmarks, smoke tests)"),
    "val_subset": (int, "evaluate on this many images, a fixed sample (benchmarks, smoke tests)"),
    "val_fraction": (float, "validate on this share of the training images (held out, stratified, the same for "
                     "every seed) and score the test split once at the end; 0: validate on the test split (default)"),
    "max_train_batches": (int, "end every epoch after this many batches (smoke tests only)"),
    "export_formats": (str, "formats exported into the run folder at the end, comma-separated (default source)"),
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a genotype from scratch",
                       description="Train a genotype from scratch (DARTS evaluation recipe for CIFAR, a small "
                       "fast one for digits) into a new run folder: config, metrics.jsonl, TensorBoard, "
                       "checkpoints, learning curves and the exported model. --resume continues a killed run.")
    p.add_argument("--genotype", help="a reference name (DARTS_V2, ...), a genotype.json, a run folder or a "
                   "NAS-Bench-201 arch string; not needed with --resume")
    p.add_argument("--space", help="space name or .yaml file (default: the genotype's own space)")
    p.add_argument("--dataset", help="digits (embedded, the default), cifar10, cifar100 or imagefolder")
    p.add_argument("--data-root", help="folder (or zip) of the data set; not needed for digits")
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument("--out", help="run folder to create; must not exist or be empty (default runs/train-<name>-<time>)")
    p.add_argument("--resume", metavar="RUN", help="continue the run in this folder from its last checkpoint")
    p.add_argument("--device", help="auto, cpu or cuda (default auto: cuda when present)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar or per-epoch lines")
    group = p.add_argument_group("training settings (unset ones come from the data set's recipe)")
    for name, (kind, help_text) in TRAIN_OPTIONS.items():
        flag = "--" + name.replace("_", "-")
        if kind is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            group.add_argument(flag, type=kind, default=None, help=help_text)
    p.set_defaults(func=cmd_train)


def train_config_from_args(args: argparse.Namespace, dataset: str):
    """The dataset's recipe with every option the user set (not None) applied on top."""
    import dataclasses

    from nas.export import parse_formats
    from nas.train import recipe

    overrides = {name: getattr(args, name) for name in TRAIN_OPTIONS if getattr(args, name) is not None}
    for name in ("seed", "device"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    if "export_formats" in overrides:
        overrides["export_formats"] = parse_formats(overrides["export_formats"])
    return dataclasses.replace(recipe(dataset), **overrides)


def cmd_train(args: argparse.Namespace) -> int:
    from nas.errors import NasError
    from nas.train import train

    if args.resume:
        given = [f"--{n.replace('_', '-')}" for n in (*TRAIN_OPTIONS, "seed", "device", "out")
                 if getattr(args, n) is not None]
        if given:
            raise NasError(f"--resume continues with the run's own settings; drop {' '.join(given)}")
        train(args.genotype, args.dataset, space=args.space, resume=args.resume, data_root=args.data_root,
              progress=not args.no_progress)
        return 0
    if not args.genotype:
        raise NasError("pass --genotype NAME|FILE|RUN (see `nas build --list-genotypes`), or --resume RUN")
    dataset = args.dataset or "digits"
    config = train_config_from_args(args, dataset)
    train(args.genotype, dataset, config=config, space=args.space, out=args.out, data_root=args.data_root,
          progress=not args.no_progress)
    return 0
