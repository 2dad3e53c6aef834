"""``nas export``: a trained run (or an untrained genotype) to source, pt2, TorchScript, ONNX."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from nas.cli.options import add_overwrite, input_size, number, seed, setting_type
from nas.errors import NasError
from nas.export.formats import FORMATS, parse_formats
from nas.train.config import TrainConfig

ORDER = 40
TRAINED_KINDS = ("train", "detect", "segment")  # run folders holding a trained model's checkpoints


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a trained run (or a genotype) to source, pt2, TorchScript, ONNX",
                       description="Export a `nas train`, `nas detect` or `nas segment` run folder, a checkpoint, "
                       "or a genotype (a name, genotype.json or a search run folder) with fresh weights; any other folder is "
                       "refused. Every "
                       "artifact is loaded back and compared with the model (max abs difference <= 1e-4, CPU, "
                       "eval mode); the differences go into manifest.json.")
    p.add_argument("target", metavar="RUN_OR_GENOTYPE",
                   help="a train / detect / segment run folder, a checkpoint .pt, a search run folder (its genotype, "
                   "untrained), or a genotype (name, genotype.json, NAS-Bench-201 string) to export with fresh weights")
    p.add_argument("--format", default="source", help=f"{', '.join(FORMATS)} or all (every format the model's "
                   "task has); several comma-separated (default source). Detectors have source and torchscript "
                   "only")
    p.add_argument("--out", help="output folder, new or empty (default: RUN/export, or export-<name> for a genotype; when that "
                   "holds an earlier export, the first free -2, -3, ... beside it)")
    add_overwrite(p)
    p.add_argument("--input-size", type=input_size, help="example input side in pixels for classifiers and "
                   "segmenters (default: the run's, else 32)")
    p.add_argument("--checkpoint", choices=("last", "best"), default="last",
                   help="which checkpoint of a run to export (default last; best goes to RUN/export-best)")
    untrained = p.add_argument_group("network of a genotype target (ignored for trained runs)")
    untrained.add_argument("--space", help="space name or .yaml file (default: the genotype's own space)")
    untrained.add_argument("--num-classes", type=number(int, min=1), default=10, help="classifier outputs (default 10)")
    untrained.add_argument("--in-channels", type=number(int, min=1), default=3, help="image channels (default 3)")
    untrained.add_argument("--init-channels", type=setting_type(TrainConfig, "init_channels"),
                           help="initial channels (default: the space's)")
    untrained.add_argument("--layers", type=setting_type(TrainConfig, "layers"), help="cells (default: the space's)")
    untrained.add_argument("--seed", type=seed, default=0, help="seed of the fresh weights (default 0)")
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from nas.space import path_kind

    parse_formats(args.format, None)  # an unknown name fails before anything is read; the task's formats later
    target = Path(args.target)
    # path_kind: an inline genotype may be no path at all (longer than a file name)
    kind = _run_kind(target) if path_kind(target) == "dir" else None
    if kind in TRAINED_KINDS or target.suffix in (".pt", ".pth"):
        paths = _export_trained(args, target, kind)
    else:
        if kind is not None:
            print(f"note: {target} is a {kind!r} search run: exporting its genotype with fresh, untrained weights "
                  "(train it with `nas train` to export a trained model)")
        paths = _export_genotype(args)
    manifest = Path(next(iter(paths.values()))).parent / "manifest.json"
    diffs = json.loads(manifest.read_text())["formats"]
    for fmt, path in paths.items():
        diff = diffs[fmt]["max_abs_diff"]
        print(f"{fmt:12s} {path}  (max abs diff {'unchecked' if diff is None else f'{diff:.1e}'})")
    print(f"manifest     {manifest}")
    return 0


def _export_trained(args: argparse.Namespace, target: Path, kind: str | None) -> dict:
    from nas.checkpoint import load_checkpoint
    from nas.export import export
    from nas.run import fresh_folder, read_config

    run_dir = target if kind is not None else None
    source = run_dir / "checkpoints" / f"{args.checkpoint}.pt" if run_dir is not None else target
    if run_dir is not None and not source.is_file():
        raise NasError(f"{run_dir} has no checkpoints/{args.checkpoint}.pt; pass a run folder that finished an epoch")
    out = args.out if args.out is not None else \
        fresh_folder(run_dir / ("export" if args.checkpoint == "last" else "export-best")) if run_dir else None
    if out is None:
        raise NasError("pass --out for a checkpoint file: the folder to write the exported files to")
    example = None
    if args.input_size is not None:
        spec = load_checkpoint(source)["spec"]
        if spec.get("task", "classification") == "detection":
            raise NasError("--input-size: detectors are compared on shapes scenes of their own image size")
        channels = int(spec.get("in_channels", 3))
        example = _example(channels, args.input_size, rand=spec.get("task") == "segmentation")
    label = read_config(run_dir / "config.json").get("label") if run_dir else None
    return export(source, args.format, out, example_input=example, name=label or target.stem,
                  overwrite=args.overwrite)


def _export_genotype(args: argparse.Namespace) -> dict:
    from nas.builders import ModelSpec
    from nas.export import export
    from nas.genotype import resolve_genotype
    from nas.run import fresh_folder, seed_everything
    from nas.train.engine import genotype_label

    genotype = resolve_genotype(args.target)
    spec = ModelSpec.create(genotype, args.space, num_classes=args.num_classes, in_channels=args.in_channels,
                            init_channels=args.init_channels, layers=args.layers)
    seed_everything(args.seed)
    name = genotype_label(args.target)
    out = Path(args.out) if args.out is not None else fresh_folder(f"export-{name}")
    example = _example(args.in_channels, 32 if args.input_size is None else args.input_size)
    return export(spec.build(), args.format, out, example_input=example, spec=spec, name=name,
                  overwrite=args.overwrite)


def _run_kind(path: Path) -> str:
    """The kind of a run folder: a trained one (its checkpoints are exported) or a search run
    with a genotype.json. A folder that is no run, whose config.json is damaged or names a kind
    nas does not know, or that is a search run without a result, is an error."""
    from nas.export.exporter import run_kind
    from nas.strategies import registered_strategies

    kind = run_kind(path)
    if kind in TRAINED_KINDS:
        return kind
    searches = {k for name in registered_strategies() for k in (name, f"ray-{name}")}
    if kind not in searches:
        raise NasError(f"{path / 'config.json'} names the run kind {kind!r}, which nas does not know: the run "
                       f"folder is damaged; export a checkpoint file instead ({path / 'checkpoints' / 'last.pt'})")
    if (path / "model.json").is_file():  # what a trained run leaves, never a search
        raise NasError(f"{path} holds a trained model (model.json) but its config.json names the search kind "
                       f"{kind!r}: the run folder is damaged; export a checkpoint file instead "
                       f"({path / 'checkpoints' / 'last.pt'})")
    if not (path / "genotype.json").is_file():
        raise NasError(f"{path} is a {kind!r} run without a genotype.json; there is nothing to export yet")
    return kind


def _example(channels: int, size: int, *, rand: bool = False):
    import torch

    generator = torch.Generator().manual_seed(0)
    if rand:  # images in [0, 1], as segmenters see them
        return torch.rand(2, channels, size, size, generator=generator)
    return torch.randn(2, channels, size, size, generator=generator)
