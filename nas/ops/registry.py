"""The one registry of candidate operations.

Every op is built as ``factory(C_in, C_out, stride, affine, **params)`` and maps a
``(N, C_in, H, W)`` tensor to ``(N, C_out, ceil(H / stride), ceil(W / stride))``.
Adding an op is one class plus one :func:`register` line. The factory is a class or a
``def`` (not a lambda) and its ``params`` plain data, so that the source export can write the
op's own code into a standalone file (:mod:`nas.export.source`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from torch import nn

from nas.errors import NasError

OpFactory = Callable[..., nn.Module]


@dataclass(frozen=True)
class OpSpec:
    name: str
    factory: OpFactory
    description: str
    parametric: bool = True  # False for ops without weights at equal channels (pool, skip, none)
    params: dict[str, Any] = field(default_factory=dict)  # keyword arguments of the factory


_REGISTRY: dict[str, OpSpec] = {}


def register(name: str, description: str, *, parametric: bool = True, **params: Any):
    """Decorator/func registering ``factory(C_in, C_out, stride, affine, **params) -> nn.Module``.

    >>> register("sep_conv_9x9", "depthwise-separable 9x9, applied twice", kernel=9)(SepConv)  # doctest: +SKIP
    """

    def wrap(factory: OpFactory) -> OpFactory:
        if name in _REGISTRY:
            raise RuntimeError(f"op {name!r} registered twice")
        _REGISTRY[name] = OpSpec(name, factory, description, parametric, dict(params))
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
    spec = get_op(name)
    return spec.factory(C_in, C_out, stride, affine, **spec.params)


def list_ops() -> list[str]:
    return sorted(_REGISTRY)


def has_op(name: str) -> bool:
    return name in _REGISTRY
