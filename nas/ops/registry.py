"""The one registry of candidate operations.

Every op is built as ``factory(C_in, C_out, stride, affine)`` and maps a
``(N, C_in, H, W)`` tensor to ``(N, C_out, ceil(H / stride), ceil(W / stride))``.
Adding an op is one class plus one :func:`register` line.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn

from nas.errors import NasError

OpFactory = Callable[[int, int, int, bool], nn.Module]


@dataclass(frozen=True)
class OpSpec:
    name: str
    factory: OpFactory
    description: str
    parametric: bool = True  # False for ops without weights at equal channels (pool, skip, none)


_REGISTRY: dict[str, OpSpec] = {}


def register(name: str, description: str, *, parametric: bool = True):
    """Decorator/func registering ``factory(C_in, C_out, stride, affine) -> nn.Module``."""

    def wrap(factory: OpFactory) -> OpFactory:
        if name in _REGISTRY:
            raise RuntimeError(f"op {name!r} registered twice")
        _REGISTRY[name] = OpSpec(name, factory, description, parametric)
        return factory

    return wrap


def get_op(name: str) -> OpSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise NasError(f"unknown op {name!r}; run `nas ops` to list the {len(_REGISTRY)} known ops") from None


def create_op(name: str, C_in: int, C_out: int, stride: int = 1, affine: bool = True) -> nn.Module:
    """Build the op ``name``; see :func:`list_ops` for the names."""
    if stride not in (1, 2):
        raise NasError(f"op {name!r}: stride must be 1 or 2, got {stride}")
    return get_op(name).factory(C_in, C_out, stride, affine)


def list_ops() -> list[str]:
    return sorted(_REGISTRY)


def has_op(name: str) -> bool:
    return name in _REGISTRY
