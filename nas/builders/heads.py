"""The registry of detection and segmentation heads: one :func:`register_head` per head.

A head builder is ``builder(backbone, num_classes, **options) -> nn.Module``: ``backbone``
declares its four stages in ``feature_info`` (:class:`nas.builders.networks.Backbone`), the
options are plain data (what :meth:`nas.builders.ModelSpec.arch` writes). The builder is a
``def`` so that the source export can copy it into a standalone file.

>>> @register_head("segmentation", "toy")  # doctest: +SKIP
... def toy(backbone, num_classes, **options):
...     return ToySegmenter(backbone, num_classes)
"""
from __future__ import annotations

from typing import Any, Callable

from nas.errors import NasError

HeadBuilder = Callable[..., Any]
HEADS: dict[str, dict[str, HeadBuilder]] = {"detection": {}, "segmentation": {}}
WHAT = {"detection": "detector", "segmentation": "segmentation head"}


def register_head(task: str, name: str):
    """Decorator registering ``builder(backbone, num_classes, **options)`` as head ``name`` of ``task``."""
    if task not in HEADS:
        raise NasError(f"heads are for detection or segmentation, got task {task!r}")

    def wrap(builder: HeadBuilder) -> HeadBuilder:
        if name in HEADS[task]:
            raise RuntimeError(f"{WHAT[task]} {name!r} registered twice")
        HEADS[task][name] = builder
        return builder

    return wrap


def heads(task: str) -> tuple[str, ...]:
    """The head names of ``task`` in registration order (none for classification)."""
    return tuple(HEADS.get(task, ()))


def get_head(task: str, name: str | None) -> HeadBuilder:
    if name not in HEADS[task]:
        raise NasError(f"unknown {WHAT[task]} {name!r}; choose one of {', '.join(HEADS[task])}")
    return HEADS[task][name]
