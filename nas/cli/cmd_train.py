"""``nas train`` (train a genotype from scratch into a run folder) and ``nas export``."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

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

    p = sub.add_parser("export", help="export a trained run (or a genotype) to source, pt2, TorchScript, ONNX",
                       description="Export a `nas train` run folder, a checkpoint, or an untrained genotype. "
                       "Every artifact is loaded back and compared with the model (max abs difference <= 1e-4, "
                       "CPU, eval mode); the differences go into manifest.json.")
    p.add_argument("target", metavar="RUN_OR_GENOTYPE",
                   help="a `nas train` run folder, a checkpoint .pt, or a genotype (name, genotype.json, "
                   "NAS-Bench-201 string) to export with fresh weights")
    p.add_argument("--format", default="source", help="source, pt2, torchscript, onnx or all; several "
                   "comma-separated (default source)")
    p.add_argument("--out", help="output folder (default: RUN/export, or export-<name> for a genotype)")
    p.add_argument("--input-size", type=int, help="example input side in pixels (default: the run's, else 32)")
    p.add_argument("--checkpoint", choices=("last", "best"), default="last",
                   help="which checkpoint of a run to export (default last; best goes to RUN/export-best)")
    untrained = p.add_argument_group("network of a genotype target (ignored for runs)")
    untrained.add_argument("--space", help="space name or .yaml file (default: the genotype's own space)")
    untrained.add_argument("--num-classes", type=int, default=10)
    untrained.add_argument("--in-channels", type=int, default=3)
    untrained.add_argument("--init-channels", type=int, help="initial channels (default: the space's)")
    untrained.add_argument("--layers", type=int, help="cells (default: the space's)")
    untrained.add_argument("--seed", type=int, default=0, help="seed of the fresh weights (default 0)")
    p.set_defaults(func=cmd_export)


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


def cmd_export(args: argparse.Namespace) -> int:
    from nas.errors import NasError
    from nas.export import export, parse_formats

    formats = parse_formats(args.format)  # a bad format fails before anything is read or written
    if args.input_size is not None and args.input_size < 8:
        raise NasError(f"--input-size must be at least 8 pixels, got {args.input_size}")
    target = Path(args.target)
    run_dir = target if _is_train_run(target) else None
    example = None
    if run_dir is not None or target.suffix in (".pt", ".pth"):
        source = run_dir / "checkpoints" / f"{args.checkpoint}.pt" if run_dir is not None else target
        out = args.out or (run_dir / ("export" if args.checkpoint == "last" else "export-best") if run_dir else None)
        if out is None:
            raise NasError("pass --out for a checkpoint file: the folder to write the exported files to")
        if args.input_size is not None:
            from nas.train import load_checkpoint

            channels = int(load_checkpoint(source)["spec"].get("in_channels", 3))
            example = _example(channels, args.input_size)
        label = json.loads((run_dir / "config.json").read_text()).get("label") if run_dir else None
        paths = export(source, formats, out, example_input=example, name=label or target.stem)
    else:
        from nas.genotype import resolve_genotype
        from nas.run import seed_everything
        from nas.builders import ModelSpec
        from nas.train.trainer import genotype_label

        genotype = resolve_genotype(args.target)
        spec = ModelSpec.create(genotype, args.space, num_classes=args.num_classes, in_channels=args.in_channels,
                                init_channels=args.init_channels, layers=args.layers)
        seed_everything(args.seed)
        name = genotype_label(args.target)
        out = Path(args.out or f"export-{name}")
        example = _example(args.in_channels, args.input_size or 32)
        paths = export(spec.build(), formats, out, example_input=example, spec=spec, name=name)
    manifest = Path(next(iter(paths.values()))).parent / "manifest.json"
    diffs = json.loads(manifest.read_text())["formats"]
    for fmt, path in paths.items():
        diff = diffs[fmt]["max_abs_diff"]
        print(f"{fmt:12s} {path}  (max abs diff {'unchecked' if diff is None else f'{diff:.1e}'})")
    print(f"manifest     {manifest}")
    return 0


def _is_train_run(path: Path) -> bool:
    """A `nas train` run folder (a search run folder exports as its genotype, untrained)."""
    try:
        return json.loads((path / "config.json").read_text()).get("kind") == "train"
    except (OSError, ValueError, AttributeError):
        return False


def _example(channels: int, size: int):
    import torch

    return torch.randn(2, channels, size, size, generator=torch.Generator().manual_seed(0))
