"""``nas train``: train a genotype from scratch into a run folder."""
from __future__ import annotations

import argparse

from nas.cli.options import add_overwrite, add_settings, apply, destination, given
from nas.errors import NasError
from nas.train.config import CLASSIFICATION_DATASETS, TASK_ONLY, TrainConfig, recipe

ORDER = 30


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a genotype from scratch",
                       description="Train a genotype from scratch (DARTS evaluation recipe for CIFAR, a small "
                       "fast one for digits) into a new run folder: config, metrics.jsonl, TensorBoard, "
                       "checkpoints, learning curves and the exported model. --resume continues a killed run.")
    p.add_argument("--genotype", help="a reference name (DARTS_V2, ...), a genotype.json, a run folder or a "
                   "NAS-Bench-201 arch string; not needed with --resume")
    p.add_argument("--space", help="space name or .yaml file (default: the genotype's own space)")
    p.add_argument("--dataset", help=f"{', '.join(CLASSIFICATION_DATASETS)} (default digits, embedded; with --resume: the run's own)")
    p.add_argument("--data-root", help="folder (or zip) of the data set; not needed for digits")
    p.add_argument("--out", help="run folder to create; must not exist or be empty (default runs/train-<name>-<time>)")
    add_overwrite(p)
    p.add_argument("--resume", metavar="RUN", help="continue the run in this folder from its last checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar or per-epoch lines")
    group = p.add_argument_group("training settings (unset ones come from the data set's recipe; the defaults "
                                 "shown are digits'; cifar10, cifar100, imagefolder: the DARTS recipe, 600 epochs)")
    add_settings(group, TrainConfig, exclude=TASK_ONLY, defaults=recipe("digits"))
    p.set_defaults(func=cmd_train)


def train_config_from_args(args: argparse.Namespace, dataset: str) -> TrainConfig:
    """The dataset's recipe with every option the user set applied on top, checked."""
    return apply(recipe(dataset), args, exclude=TASK_ONLY)


def refuse_resume_conflicts(args: argparse.Namespace, names: tuple[str, ...], exclude: tuple[str, ...]) -> None:
    """Raise :class:`NasError` naming the flags given with ``--resume`` that a resumed run cannot
    take (it keeps its own settings): the settings of ``TrainConfig`` and the options ``names``."""
    settings = list(given(args, TrainConfig, exclude=exclude))
    flags = [f"--{n.replace('_', '-')}" for n in (*settings, *names) if n in settings or getattr(args, n, None)]
    if flags:
        raise NasError(f"--resume continues with the run's own settings; drop {' '.join(flags)}")


def cmd_train(args: argparse.Namespace) -> int:
    from nas.train import train

    if args.resume:
        refuse_resume_conflicts(args, ("out", "overwrite"), TASK_ONLY)
        train(args.genotype, args.dataset, space=args.space, resume=args.resume, data_root=args.data_root,
              progress=not args.no_progress)
        return 0
    if not args.genotype:
        raise NasError("pass --genotype NAME|FILE|RUN (see `nas build --list-genotypes`), or --resume RUN")
    dataset = args.dataset or "digits"
    config = train_config_from_args(args, dataset)
    with destination(args.out, args.overwrite):
        train(args.genotype, dataset, config=config, space=args.space, out=args.out, data_root=args.data_root,
              progress=not args.no_progress)
    return 0
