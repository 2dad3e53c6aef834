"""The ``nas`` command. Each ``nas/cli/cmd_*.py`` module adds subcommands through
``register(subparsers)``; user mistakes (:class:`NasError`) end in one line and exit code 2.

Building the parser imports every ``cmd_*`` module, so ``nas --help`` costs what those modules
import at module level and in ``register``: argparse, :mod:`nas.config`, :mod:`nas.cli.options`
and light settings modules only. Everything else (torch, the strategies, Optuna, Ray) is
imported by the function that runs the command.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from nas.errors import NasError


def build_parser() -> argparse.ArgumentParser:
    return _assemble()[0]


def command_names() -> list[str]:
    """The subcommands of ``nas`` (``ops``, ``spaces``, ``train``, ...), in help order."""
    return list(_assemble()[1].choices)


def _assemble() -> tuple[argparse.ArgumentParser, argparse.Action]:
    parser = argparse.ArgumentParser(
        prog="nas", description="Neural architecture search for PyTorch: search cell and chain spaces with DARTS "
        "or black-box strategies (Optuna samplers, optionally as Ray Tune trials), then train the architectures "
        "found as classifiers or as backbones of detectors and segmenters, measure them and export them. "
        "`nas COMMAND --help` describes each command.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    modules = [importlib.import_module(f"{__name__}.{m.name}") for m in pkgutil.iter_modules(__path__)
               if m.name.startswith("cmd_")]
    for module in sorted(modules, key=lambda m: getattr(m, "ORDER", 100)):
        module.register(sub)
    return parser, sub


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
