"""Fault injection for the crash tests: named points where a test can kill the process.

Code that writes records calls :func:`kill_point` at the moments a crash would hurt (between
writing a checkpoint and copying it, after logging an epoch and before checkpointing it, ...).
Nothing happens unless the environment variable ``NAS_KILL_AT`` names the point: ``NAS_KILL_AT=
"train.after_last"`` kills the process with SIGKILL the first time the point is reached,
``"train.after_last@3"`` the third time. Tests use it to find the moments that matter; a
normal run pays one dictionary lookup per point.
"""
from __future__ import annotations

import os
import signal

ENV = "NAS_KILL_AT"
_seen: dict[str, int] = {}


def kill_point(name: str) -> None:
    spec = os.environ.get(ENV)
    if not spec:
        return
    point, _, nth = spec.partition("@")
    if point != name:
        return
    _seen[name] = _seen.get(name, 0) + 1
    if _seen[name] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
