"""``nas export``: a trained run (or an untrained genotype) to source, pt2, TorchScript, ONNX."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

ORDER = 40


def register(sub: argparse._SubParsersAction) -> None:
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
        from nas.builders import ModelSpec
        from nas.genotype import resolve_genotype
        from nas.run import seed_everything
        from nas.train.engine import genotype_label

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
