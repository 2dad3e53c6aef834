"""One interface for every search strategy, and the registry that names them.

A strategy turns a space into genotypes. One-shot strategies (``kind = "oneshot"``,
:mod:`nas.strategies.oneshot`) train a supernet on ``data``; black-box strategies
(``kind = "blackbox"``, :mod:`nas.strategies.blackbox`) score sampled genotypes with an
``evaluator``. Each declares its settings as a dataclass of :func:`nas.config.setting` fields
(``Settings``), which also gives ``nas search`` its options. One registration adds a strategy
to the public API and to ``nas search --strategy NAME``:

>>> from dataclasses import dataclass
>>> from nas.config import setting
>>> @dataclass
... class ToySettings:
...     samples: int = setting(4, "genotypes to draw", min=1)
>>> @register_strategy
... class Toy(Strategy):
...     name, kind, Settings = "toy-doc", "oneshot", ToySettings
...     def search(self, space, settings, **kw):
...         return None
>>> get_strategy("toy-doc").Settings().samples
4

The module imports nothing heavy: ``nas search --help`` lists every strategy without torch.
"""
from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

from nas.errors import NasError

KINDS = ("oneshot", "blackbox")


@dataclass(frozen=True)
class SearchData:
    """The data a one-shot strategy trains its supernet on (black-box strategies are given an
    evaluator instead): a data set name as for ``nas train``, its folder, the device."""

    dataset: str = "digits"
    data_root: str | None = None
    device: str = "auto"


class SearchResult(Protocol):
    """What every strategy's result has: the run folder and the genotype found (``None``
    when nothing was found, for example when every trial failed)."""

    path: Path | None
    genotype: Any


class Strategy(ABC):
    """A search strategy: ``name`` (as in ``nas search --strategy NAME``), ``kind``
    (``"oneshot"`` or ``"blackbox"``), ``Settings`` (a dataclass of ``setting(...)`` fields whose
    defaults are the strategy's own) and ``description`` (the help of its option group).

    ``search`` is called with ``resume=RUN`` (and ``space=None``) to continue a run folder that
    the strategy made; the strategy then reads what it needs from the folder's ``config.json``,
    which records ``"strategy": name``.
    """

    name: ClassVar[str] = ""
    kind: ClassVar[str] = ""
    Settings: ClassVar[type]
    description: ClassVar[str] = ""

    @abstractmethod
    def search(self, space: Any, settings: Any, *, evaluator: Any = None, data: SearchData | None = None,
               out: str | Path | None = None, resume: str | Path | None = None, seed: int = 0,
               progress: bool = True) -> SearchResult:
        """Search ``space`` (a name, a .yaml file or a loaded space) with ``settings`` (a
        ``Settings`` object); returns at least the run folder and the genotype found."""


_STRATEGIES: dict[str, type[Strategy]] = {}


def register_strategy(cls: type[Strategy]) -> type[Strategy]:
    """Class decorator: make ``cls`` available as ``get_strategy(cls.name)`` and as
    ``nas search --strategy NAME``; raises :class:`NasError` for an incomplete declaration."""
    if not cls.name:
        raise NasError(f"strategy class {cls.__name__} has no name")
    if cls.kind not in KINDS:
        raise NasError(f"strategy {cls.name!r}: kind must be one of {', '.join(KINDS)}, got {cls.kind!r}")
    if not dataclasses.is_dataclass(getattr(cls, "Settings", None)):
        raise NasError(f"strategy {cls.name!r}: Settings must be a dataclass of nas.config.setting fields")
    known = _STRATEGIES.get(cls.name)
    if known is not None and known.__qualname__ != cls.__qualname__:
        raise NasError(f"strategy name {cls.name!r} is taken by {known.__module__}.{known.__qualname__}")
    _STRATEGIES[cls.name] = cls
    return cls


def registered_strategies() -> dict[str, type[Strategy]]:
    """Every registered strategy class by name, in registration order."""
    return dict(_STRATEGIES)


def get_strategy(name: str) -> Strategy:
    """The strategy registered as ``name``; an unknown name raises :class:`NasError` listing the known ones."""
    if name not in _STRATEGIES:
        raise NasError(f"unknown strategy {name!r}; choose one of {', '.join(sorted(_STRATEGIES))}")
    return _STRATEGIES[name]()
