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
import re
import sys
from typing import NoReturn

from nas.errors import NasError


class Parser(argparse.ArgumentParser):
    """argparse with short usage errors: one line ``nas <command>: error: <option>: <what>``,
    exit code 2, without the usage block (which for ``nas search`` runs to dozens of lines);
    an unknown choice names the valid ones. Every subcommand's parser is one of these."""

    def _check_value(self, action: argparse.Action, value: object) -> None:
        if action.choices is not None and value not in action.choices:
            choices = ", ".join(map(str, action.choices))
            if isinstance(action, argparse._SubParsersAction):
                raise argparse.ArgumentError(None, f"unknown command {value!r}; choose from {choices}")
            raise argparse.ArgumentError(action, f"unknown value {value!r}; choose from {choices}")

    def error(self, message: str) -> NoReturn:
        # argparse says "argument --x/-y: ..."; the option alone is shorter and just as clear
        message = re.sub(r"^argument ([^ :/]+)(?:/[^ :]+)*: ", r"\1: ", message)
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())}\n")


def build_parser() -> argparse.ArgumentParser:
    return _assemble()[0]


def command_names() -> list[str]:
    """The subcommands of ``nas`` (``ops``, ``spaces``, ``train``, ...), in help order."""
    return list(_assemble()[1].choices)


def _assemble() -> tuple[argparse.ArgumentParser, argparse.Action]:
    parser = Parser(
        prog="nas", description="Neural architecture search for PyTorch: search cell and chain spaces with DARTS "
        "or black-box strategies (Optuna samplers, optionally as Ray Tune trials), then train the architectures "
        "found as classifiers or as backbones of detectors and segmenters, measure them and export them. "
        "`nas COMMAND --help` describes each command.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=Parser)
    modules = [importlib.import_module(f"{__name__}.{m.name}") for m in pkgutil.iter_modules(__path__)
               if m.name.startswith("cmd_")]
    for module in sorted(modules, key=lambda m: getattr(m, "ORDER", 100)):
        module.register(sub)
    return parser, sub


def _refuse_blank_values(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """An option given an empty or blank value (``--space ""``, ``--out " "``) is a mistake, not
    a way to ask for the default: refused by name, before the command runs."""
    for action in parser._actions:
        value = getattr(args, action.dest, None)
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str) and not item.strip() and item != action.default:
                if not action.option_strings:
                    parser.error(f"{action.metavar or action.dest}: empty value {item!r}; give a value")
                name = max(action.option_strings, key=len)
                parser.error(f"{name}: empty value {item!r}; give a value, or drop {name} for its default")


def main(argv: list[str] | None = None) -> int:
    """Run ``nas`` with ``argv`` (default ``sys.argv[1:]``); returns the exit code: 0, 2 for a
    usage error or a user mistake (one line on stderr), 130 when interrupted."""
    parser, sub = _assemble()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:  # named by the command they were given to, not by `nas`
            sub.choices[args.command].error(f"unrecognized arguments: {' '.join(extra)} "
                                            f"(see nas {args.command} --help)")
        _refuse_blank_values(sub.choices[args.command], args)
    except SystemExit as exc:  # a usage error (printed already), or --help
        return exc.code if isinstance(exc.code, int) else 2
    try:
        return int(args.func(args) or 0)
    except NasError as exc:
        if not getattr(exc, "quiet", False):  # quiet: another process of the same search printed it
            print(f"nas {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"nas {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the output was piped into a reader that stopped (`nas ops | head`)
        _silence_stdout()
        return 141


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's final flush does not fail again."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no real stdout (captured in tests)
        pass
