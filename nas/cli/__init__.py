"""The ``nas`` command. Each ``nas/cli/cmd_*.py`` module adds subcommands through
``register(subparsers)``; user mistakes (:class:`NasError`) end in one line and exit code 2."""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from nas.errors import NasError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nas", description="Neural architecture search for PyTorch: search cell spaces with DARTS, Optuna "
        "or Ray Tune, then train, measure and export the architectures found.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    import nas.cli as package

    modules = [importlib.import_module(f"nas.cli.{m.name}") for m in pkgutil.iter_modules(package.__path__)
               if m.name.startswith("cmd_")]
    for module in sorted(modules, key=lambda m: getattr(m, "ORDER", 100)):
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except NasError as exc:
        print(f"nas {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"nas {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
