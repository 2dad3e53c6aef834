"""Command-line options generated from settings dataclasses (:mod:`nas.config`).

Every field declared with :func:`nas.config.setting` becomes ``--field-name`` with the field's
help and choices; :func:`given` parses and checks the values by the field's type (a mistake is a
one-line :class:`NasError`). An option the user did not give is ``None`` and leaves the
settings object's own value (a recipe's, a run's) untouched.
"""
from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Iterable
from typing import Any

from nas.config import SEED_MAX, check, field_type, parse_value
from nas.errors import NasError


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_settings(group: argparse._ActionsContainer, cls: type, *, exclude: Iterable[str] = (),
                 prefix: str = "", defaults: Any = None) -> list[str]:
    """Add one option per field of ``cls`` (except ``exclude`` and ``option=False`` fields) to
    ``group``; returns the field names added. ``prefix`` goes before each flag name
    (``trial_`` gives ``--trial-batch-size``); the help shows the values of ``defaults`` (an
    instance of ``cls``, such as a recipe) where given, else the fields' defaults."""
    skip = set(exclude)
    added = []
    for f in dataclasses.fields(cls):
        if f.name in skip or not f.metadata.get("option", True) or "help" not in f.metadata:
            continue
        base, _ = field_type(cls, f.name)
        meta = f.metadata
        default = getattr(defaults, f.name) if defaults is not None else \
            f.default if f.default is not dataclasses.MISSING else None
        shown = ",".join(default) if isinstance(default, tuple) else default
        if isinstance(default, bool):  # a --x / --no-x pair: say which one is in force
            shown = "on" if default else "off"
        help_text = meta["help"] + (f" (default {shown})" if shown not in (None, "") else "")
        dest = prefix + f.name
        kwargs: dict[str, Any] = {"dest": dest, "default": None, "help": help_text.replace("%", "%%")}
        if meta.get("metavar"):
            kwargs["metavar"] = meta["metavar"]
        if base is bool:
            group.add_argument(flag(dest), action=argparse.BooleanOptionalAction, **kwargs)
        else:
            # the text is parsed and checked by the settings layer in given(): a bad value is one
            # line (``nas <command>: error: --x: ...``, exit 2), not argparse's usage block
            if meta.get("choices") and base is not tuple:
                kwargs.setdefault("metavar", "{" + ",".join(map(str, meta["choices"])) + "}")
            else:
                kwargs.setdefault("metavar", f.name.upper())
            group.add_argument(flag(dest), **kwargs)
        added.append(f.name)
    return added


def given(args: argparse.Namespace, cls: type, *, prefix: str = "", exclude: Iterable[str] = ()) -> dict[str, Any]:
    """The fields of ``cls`` that the user set on the command line (``prefix`` as in :func:`add_settings`)."""
    skip = set(exclude)
    values = {}
    for f in dataclasses.fields(cls):
        value = getattr(args, prefix + f.name, None)
        if f.name in skip or value is None:
            continue
        if isinstance(value, str):
            try:
                value = parse_value(cls, f.name, value)
            except NasError as exc:
                raise NasError(f"{flag(prefix + f.name)}: {exc}") from None
        values[f.name] = value
    return values


def apply(base: Any, args: argparse.Namespace, *, prefix: str = "", exclude: Iterable[str] = ()) -> Any:
    """``base`` with every option the user set applied on top, checked."""
    return check(dataclasses.replace(base, **given(args, type(base), prefix=prefix, exclude=exclude)))


def seed(text: str) -> int:
    """argparse ``type=`` of a ``--seed``: an integer in [0, 2**32 - 1] (numpy's range)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a seed is an integer, got {text!r}") from None
    if not 0 <= value <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"a seed is between 0 and {SEED_MAX}, got {value}")
    return value
