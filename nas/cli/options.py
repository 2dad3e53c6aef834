"""Command-line options generated from settings dataclasses (:mod:`nas.config`).

Every field declared with :func:`nas.config.setting` becomes ``--field-name`` with the field's
type, help and choices; an option the user did not give is ``None`` and leaves the settings
object's own value (a recipe's, a run's) untouched.
"""
from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Iterable
from typing import Any

from nas.config import check, field_type, parse_value
from nas.errors import NasError


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_settings(group: argparse._ActionsContainer, cls: type, *, exclude: Iterable[str] = (),
                 prefix: str = "") -> list[str]:
    """Add one option per field of ``cls`` (except ``exclude`` and ``option=False`` fields) to
    ``group``; returns the field names added. ``prefix`` goes before each flag name
    (``trial_`` gives ``--trial-batch-size``)."""
    skip = set(exclude)
    added = []
    for f in dataclasses.fields(cls):
        if f.name in skip or not f.metadata.get("option", True) or "help" not in f.metadata:
            continue
        base, _ = field_type(cls, f.name)
        meta = f.metadata
        default = f.default if f.default is not dataclasses.MISSING else None
        shown = ",".join(default) if isinstance(default, tuple) else default
        help_text = meta["help"] + (f" (default {shown})" if shown not in (None, "") else "")
        dest = prefix + f.name
        kwargs: dict[str, Any] = {"dest": dest, "default": None, "help": help_text.replace("%", "%%")}
        if meta.get("metavar"):
            kwargs["metavar"] = meta["metavar"]
        if base is bool:
            group.add_argument(flag(dest), action=argparse.BooleanOptionalAction, **kwargs)
        else:
            # values are parsed and checked by the settings layer, so its messages are the ones users see
            kwargs["type"] = _Parser(cls, f.name)
            if meta.get("choices") and base is not tuple:
                kwargs.setdefault("metavar", "{" + ",".join(map(str, meta["choices"])) + "}")
            group.add_argument(flag(dest), **kwargs)
        added.append(f.name)
    return added


class _Parser:
    """argparse ``type=``: parse and check one field's value; a bad value is argparse's usual
    one-line ``argument --x: ...`` error with the settings layer's message."""

    def __init__(self, cls: type, name: str) -> None:
        self.cls, self.name = cls, name
        self.__name__ = name  # argparse names the type in its messages

    def __call__(self, text: str) -> Any:
        try:
            return parse_value(self.cls, self.name, text)
        except NasError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None


def given(args: argparse.Namespace, cls: type, *, prefix: str = "", exclude: Iterable[str] = ()) -> dict[str, Any]:
    """The fields of ``cls`` that the user set on the command line (``prefix`` as in :func:`add_settings`)."""
    skip = set(exclude)
    return {f.name: getattr(args, prefix + f.name) for f in dataclasses.fields(cls)
            if f.name not in skip and getattr(args, prefix + f.name, None) is not None}


def apply(base: Any, args: argparse.Namespace, *, prefix: str = "", exclude: Iterable[str] = ()) -> Any:
    """``base`` with every option the user set applied on top, checked."""
    return check(dataclasses.replace(base, **given(args, type(base), prefix=prefix, exclude=exclude)))
