"""Settings as dataclasses: each field carries its default, help text and allowed values.

One declaration drives three things: :func:`check` validates a settings object, the ``nas``
command's options are generated from the fields (:func:`nas.cli.options.add_settings`), and
``--trial-setting NAME=VALUE`` parses a value with :func:`parse_value`. The module imports
nothing heavy, so ``nas --help`` stays fast.

>>> from dataclasses import dataclass
>>> @dataclass(frozen=True)
... class Example:
...     epochs: int = setting(10, "passes over the data", min=1)
...     lr: float = setting(0.1, "learning rate", min=0, min_open=True)
>>> check(Example(epochs=0))
Traceback (most recent call last):
...
nas.errors.NasError: epochs must be at least 1, got 0
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any

from nas.errors import NasError

# the tasks a model, its training settings and its export formats are declared for
SEED_MAX = 2**32 - 1  # numpy seeds are 32-bit: every run's seed lies in [0, SEED_MAX]
TASKS = ("classification", "detection", "segmentation")


def setting(default: Any, help: str, *, min: float | None = None, max: float | None = None,
            min_open: bool = False, max_open: bool = False, choices: tuple[Any, ...] | None = None,
            option: bool = True, metavar: str | None = None) -> Any:
    """A dataclass field with its help text and range.

    ``min`` / ``max`` bound numbers (``min_open``: the bound itself is not allowed); ``choices``
    lists the allowed values (of every item, for a tuple field); ``option=False`` keeps the field
    out of generated command-line options. A mutable default is wrapped in a factory.
    """
    meta = {"help": help, "min": min, "max": max, "min_open": min_open, "max_open": max_open,
            "choices": choices, "option": option, "metavar": metavar}
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def field_type(cls: type, name: str) -> tuple[type, bool]:
    """``(base type, optional)`` of field ``name``: ``int | None`` gives ``(int, True)``;
    ``tuple[str, ...]`` gives ``(tuple, False)``."""
    hint = typing.get_type_hints(cls)[name]
    optional = False
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional = len(args) < len(typing.get_args(hint))
        hint = args[0]
    origin = typing.get_origin(hint) or hint
    return origin, optional


def _number(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


def _describe_range(meta: dict[str, Any]) -> str:
    low, high = meta.get("min"), meta.get("max")
    if low is not None and high is not None:
        return (f"in {'(' if meta['min_open'] else '['}{_number(low)}, {_number(high)}{')' if meta['max_open'] else ']'}")
    if low is not None:
        if low == 0 and meta["min_open"]:
            return "positive"
        if low == 0:
            return "at least 0 (not negative)"
        return f"{'above' if meta['min_open'] else 'at least'} {_number(low)}"
    if high is not None:
        return f"{'below' if meta['max_open'] else 'at most'} {_number(high)}"
    return ""


def check_value(cls: type, name: str, value: Any) -> None:
    """Raise :class:`NasError` unless ``value`` fits field ``name`` of ``cls`` (type, finiteness,
    range, choices)."""
    f = next((f for f in dataclasses.fields(cls) if f.name == name), None)
    if f is None:
        raise NasError(f"unknown setting {name!r}; known: {', '.join(x.name for x in dataclasses.fields(cls))}")
    base, optional = field_type(cls, name)
    _check_typed(name, base, optional, f.metadata, value)


def _check_typed(name: str, base: type, optional: bool, meta: Any, value: Any) -> None:
    """The checks of :func:`check_value` for a value of type ``base`` with ``setting`` metadata
    ``meta``; ``name`` leads the message (none: the message starts with what is wrong)."""
    lead = f"{name} " if name else ""
    if value is None:
        if not optional:
            raise NasError(f"{lead}must be set, got None")
        return
    if base is bool:
        if not isinstance(value, bool):  # 1 and 0 are numbers, not switches
            raise NasError(f"{lead}must be true or false, got {value!r}")
        return
    if base in (int, float):
        # a bool is an int to Python, never a count or a rate here; an integer field takes no 2.0
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (base is int and not isinstance(value, int)):
            raise NasError(f"{lead}must be {'an integer' if base is int else 'a number'}, got {value!r}")
        if not math.isfinite(value):
            raise NasError(f"{lead}must be a finite number, got {value!r}")
        low, high = meta.get("min"), meta.get("max")
        bad = ((low is not None and (value < low or (meta.get("min_open") and value == low)))
               or (high is not None and (value > high or (meta.get("max_open") and value == high))))
        if bad:
            raise NasError(f"{lead}must be {_describe_range(dict(meta))}, got {value}")
    elif base is str:
        if not isinstance(value, str):
            raise NasError(f"{lead}must be a string, got {value!r}")
    elif base is tuple:
        if not isinstance(value, tuple):
            raise NasError(f"{lead}must be a list, got {value!r}")
    choices = meta.get("choices")
    if choices is not None:
        items = value if base is tuple else (value,)
        wrong = [v for v in items if v not in choices]
        if wrong:
            raise NasError(f"{name + ': ' if name else ''}{', '.join(map(repr, wrong))} is not one of "
                           f"{', '.join(map(str, choices))}")


def check(obj: Any) -> Any:
    """Validate every field of the settings object ``obj`` by its type and metadata, then how the
    fields go together (the object's ``check_together()``, where it has one); returns ``obj``."""
    for f in dataclasses.fields(obj):
        check_value(type(obj), f.name, getattr(obj, f.name))
    together = getattr(obj, "check_together", None)
    if together is not None:
        together()
    return obj


def to_dict(obj: Any) -> dict[str, Any]:
    """Plain JSON-able data (tuples become lists)."""
    return {f.name: (list(v) if isinstance(v := getattr(obj, f.name), tuple) else v) for f in dataclasses.fields(obj)}


def from_dict(cls: type, data: Any, what: str = "settings") -> Any:
    """``cls`` from :func:`to_dict` output, checked: unknown names raise :class:`NasError`,
    missing ones keep their defaults, lists become tuples where the field is a tuple."""
    if not isinstance(data, dict):
        raise NasError(f"{what} must be a mapping of names to values, got {type(data).__name__}")
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise NasError(f"unknown {what} setting(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
    values = {}
    for name, value in data.items():
        base, _ = field_type(cls, name)
        if base is tuple and isinstance(value, list):
            value = tuple(value)
        elif base is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        values[name] = value
    return check(cls(**values))


def parse_value(cls: type, name: str, text: str, *, label: str | None = None) -> Any:
    """The typed value of field ``name`` from command-line ``text`` (``none`` unsets an optional
    field; a tuple field takes comma-separated items, or ``all`` / ``none`` where it lists its
    choices); checked by :func:`check_value`. ``label`` leads an error message instead of the
    field's name (``""``: none, for a message that the caller prefixes with the option)."""
    f = next((f for f in dataclasses.fields(cls) if f.name == name), None)
    if f is None:
        raise NasError(f"unknown setting {name!r}; known: {', '.join(sorted(x.name for x in dataclasses.fields(cls)))}")
    base, optional = field_type(cls, name)
    label = name if label is None else label
    value = _parse_text(label, base, optional, f.metadata.get("choices"), text)
    _check_typed(label, base, optional, f.metadata, value)
    return value


def parse_number(text: str, kind: type, *, name: str = "", min: float | None = None, max: float | None = None,
                 min_open: bool = False, max_open: bool = False) -> Any:
    """``text`` as an ``int`` or ``float``, checked as a :func:`setting` field with these bounds
    would be (type, finiteness, range): the checks of a value that has no settings dataclass,
    such as a command-line option of its own.

    >>> parse_number("0", int, min=1)
    Traceback (most recent call last):
    ...
    nas.errors.NasError: must be at least 1, got 0
    """
    meta = {"min": min, "max": max, "min_open": min_open, "max_open": max_open, "choices": None}
    value = _parse_text(name, kind, False, None, text)
    _check_typed(name, kind, False, meta, value)
    return value


def _parse_text(name: str, base: type, optional: bool, choices: tuple[Any, ...] | None, text: str) -> Any:
    lead = f"{name} " if name else ""
    text = text.strip()
    if optional and text.lower() in ("none", "null", ""):
        return None
    if base is bool:
        lowered = text.lower()
        if lowered not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
            raise NasError(f"{lead}takes true or false, got {text!r}")
        return lowered in ("true", "1", "yes", "on")
    if base is int:
        try:
            return int(text)
        except ValueError:
            raise NasError(f"{lead}takes an integer, got {text!r}") from None
    if base is float:
        try:
            return float(text)
        except ValueError:
            raise NasError(f"{lead}takes a number, got {text!r}") from None
    if base is tuple:
        # every allowed item, or none of them (unless the field's own choices give the word a meaning)
        if choices is not None and text.lower() in ("all", "none") and text.lower() not in choices:
            return tuple(choices) if text.lower() == "all" else ()
        items = tuple(item.strip() for item in text.split(",") if item.strip())
        if not items:
            raise NasError(f"{lead}takes a comma-separated list, got {text!r}, which lists nothing")
        return items
    return text
