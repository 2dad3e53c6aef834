"""``nas ops``, ``nas spaces`` and ``nas build``: look at ops, spaces and genotypes."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from nas.cli.options import add_overwrite, input_size, number, setting_type
from nas.train.config import TrainConfig

ORDER = 10
OPS_MAX_VALUES = 2**24  # nas ops: channels x size x size of the measured input


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ops", help="list the registered ops with parameters and MACs",
                       description="List every registered op with its parameter count and multiply-adds "
                       "at a stated input size (C_in = C_out = --channels, --size x --size, stride 1).")
    p.add_argument("--channels", type=number(int, min=1), default=16, help="input and output channels (default 16)")
    p.add_argument("--size", type=number(int, min=1), default=32, help="input height and width (default 32)")
    p.set_defaults(func=cmd_ops)

    p = sub.add_parser("spaces", help="list the search spaces",
                       description="List the search spaces shipped with nas (nas/searchspaces/) with their ops.")
    p.set_defaults(func=cmd_spaces)

    p = sub.add_parser("build", help="build a genotype's network, measure it and draw its cells",
                       description="Build the classifier of a genotype, print parameters, MACs, activation "
                       "memory and latency, and write the cell diagram as PNG.")
    p.add_argument("--genotype", required=False,
                   help="a reference name (DARTS_V2, PC_DARTS, ...), a genotype.json, a run folder or a "
                   "NAS-Bench-201 arch string; needed unless --list-genotypes")
    p.add_argument("--space", help="space name or .yaml file (default: the genotype's own space)")
    p.add_argument("--list-genotypes", action="store_true", help="list the reference genotypes and exit")
    p.add_argument("--init-channels", type=setting_type(TrainConfig, "init_channels"),
                   help="initial channels (default: from the space)")
    p.add_argument("--layers", type=setting_type(TrainConfig, "layers"),
                   help="number of cells (default: from the space)")
    p.add_argument("--num-classes", type=number(int, min=1), default=10, help="classifier outputs (default 10)")
    p.add_argument("--input-size", type=input_size, default=32, help="input height and width (default 32)")
    p.add_argument("--device", default="cpu", help="where latency is measured: cpu or cuda (default cpu)")
    p.add_argument("--plot", default="cell.png", help="where to write the cell diagram, a .png file (default cell.png)")
    add_overwrite(p, "--plot")
    p.add_argument("--json", action="store_true", help="print the measurements as JSON")
    p.set_defaults(func=cmd_build)


def cmd_ops(args: argparse.Namespace) -> int:
    import torch

    from nas.errors import NasError
    from nas.measure import MACS_CONVENTION, count_macs, count_parameters
    from nas.ops import create_op, get_op, list_ops

    if args.channels * args.size**2 > OPS_MAX_VALUES:  # a larger input only exhausts memory
        raise NasError(f"--channels {args.channels} x --size {args.size}^2 is {args.channels * args.size**2:,} values "
                       f"per input; at most {OPS_MAX_VALUES:,} (such as --channels 256 --size 256)")
    print(f"{len(list_ops())} ops; C_in = C_out = {args.channels}, input {args.size}x{args.size}, stride 1")
    print(f"{'op':32s} {'params':>9s} {'MACs':>12s}  description")
    for name in list_ops():
        op = create_op(name, args.channels, args.channels, 1)
        with torch.no_grad():
            macs = count_macs(op, (args.channels, args.size, args.size)) if list(op.parameters()) else 0
        print(f"{name:32s} {count_parameters(op):9,d} {macs:12,d}  {get_op(name).description}")
    print(f"\n{MACS_CONVENTION}.")
    return 0


def cmd_spaces(args: argparse.Namespace) -> int:
    from nas.space import available_spaces, load_space

    for name in available_spaces():
        s = load_space(name)
        print(f"{name:10s} {s.description}")
        print(f"{'':10s} ops: {', '.join(s.ops) if s.kind == 'cell' else f'{len(s.ops)} inverted-residual variants'}")
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from nas.builders import build_classifier
    from nas.errors import NasError
    from nas.genotype import REFERENCES, resolve_genotype
    from nas.measure import MACS_CONVENTION, measure
    from nas.run import resolve_device
    from nas.space import load_space
    from nas.viz import check_plot, plot_genotype

    if args.list_genotypes:
        for name, g in REFERENCES.items():
            print(f"{name:14s} space {g.space}")
        return 0
    if not args.genotype:
        raise NasError("pass --genotype NAME|FILE (see --list-genotypes)")
    plot = check_plot(Path(args.plot), overwrite=args.overwrite)
    device = resolve_device(args.device)
    genotype = resolve_genotype(args.genotype)
    space = load_space(args.space or genotype)
    genotype.validate(space)
    model = build_classifier(genotype, space, num_classes=args.num_classes, init_channels=args.init_channels,
                             layers=args.layers).to(device)
    stats = measure(model, (3, args.input_size, args.input_size))
    plot = plot_genotype(genotype, plot, space)
    if args.json:
        print(json.dumps({**stats, "plot": str(plot)}, indent=2))
        return 0
    print(f"genotype   {genotype}")
    print(f"space      {space.name}")
    print(f"params     {stats['params'] / 1e6:.3f} M (without auxiliary head)")
    print(f"MACs       {stats['macs'] / 1e6:.1f} M at {args.input_size}x{args.input_size}")
    print(f"act. mem   {stats['activation_mib']:.2f} MiB per image (forward activations)")
    print(f"latency    {stats['latency_ms']:.2f} ms (median, batch 1, {stats['device']})")
    print(f"diagram    {plot}")
    print(f"({MACS_CONVENTION}.)")
    return 0
