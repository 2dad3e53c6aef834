"""Command-line options generated from settings dataclasses (:mod:`nas.config`).

Every field declared with :func:`nas.config.setting` becomes ``--field-name`` with the field's
help and choices; :func:`given` parses and checks the values by the field's type (a mistake is a
one-line :class:`NasError`). An option the user did not give is ``None`` and leaves the
settings object's own value (a recipe's, a run's) untouched.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from nas.config import check, field_type, parse_number, parse_value
from nas.errors import NasError
from nas.train.config import TrainConfig


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
                value = parse_value(cls, f.name, value, label="")
            except NasError as exc:
                raise NasError(f"{flag(prefix + f.name)}: {exc}") from None
        values[f.name] = value
    return values


def apply(base: Any, args: argparse.Namespace, *, prefix: str = "", exclude: Iterable[str] = ()) -> Any:
    """``base`` with every option the user set applied on top, checked."""
    return check(dataclasses.replace(base, **given(args, type(base), prefix=prefix, exclude=exclude)))


def number(kind: type, **bounds: Any) -> Callable[[str], Any]:
    """The argparse ``type=`` of a numeric option that no settings field declares: the text is
    parsed and checked by :func:`nas.config.parse_number` with ``bounds`` (``min``, ``max``,
    ``min_open``, ``max_open``, as in :func:`nas.config.setting`), so ``--size 0``,
    ``--size 1.5`` or ``--size nan`` end in one line before the command starts."""

    def parse(text: str) -> Any:
        try:
            return parse_number(text, kind, **bounds)
        except NasError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = kind.__name__
    return parse


def setting_type(cls: type, name: str) -> Callable[[str], Any]:
    """The argparse ``type=`` of an option that sets field ``name`` of the settings dataclass
    ``cls`` under a name of its own (``--epochs-per-trial`` sets a trial's ``epochs``): parsed
    and checked by the field's declaration (:func:`nas.config.parse_value`)."""

    def parse(text: str) -> Any:
        try:
            return parse_value(cls, name, text, label="")
        except NasError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = name
    return parse


def add_overwrite(p: argparse._ActionsContainer, what: str = "--out") -> None:
    """The ``--overwrite`` flag of a command that writes into ``what``."""
    p.add_argument("--overwrite", action="store_true",
                   help=f"write into {what} even though it exists and holds files, replacing the files of the same "
                   "names (an earlier run's or export's); no other file is touched. Without it an existing, "
                   "non-empty destination is refused")


@contextlib.contextmanager
def destination(out: str | None, overwrite: bool) -> Iterator[None]:
    """Check the ``--out`` folder a new run writes into before anything else is done (a file, a
    path below a file, a non-empty folder without ``--overwrite`` is a one-line error), then let
    the run take it (:func:`nas.run.allow_overwrite`) where ``--overwrite`` says so."""
    from nas.run import allow_overwrite, check_destination

    if out is not None:
        check_destination(out, overwrite=overwrite, hint=" (or --resume to continue it)")
    with allow_overwrite(out if overwrite else None):
        yield


# argparse ``type=`` of a ``--seed``: checked as a training's seed is declared (numpy's range)
seed = setting_type(TrainConfig, "seed")
# the side of an example or measured input in pixels: every shipped network takes 8 x 8; a
# DARTS network measured at 512 x 512 already holds about 20 GiB of activations
input_size = number(int, min=8, max=512)
