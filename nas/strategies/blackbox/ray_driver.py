"""The Ray job of a Ray Tune search: ``python -m nas.strategies.blackbox.ray_driver RUN`` runs the
search of the run folder ``RUN`` (made by :func:`~nas.strategies.blackbox.ray_tune.search_ray`,
which submits this command; see :mod:`nas.strategies.blackbox.ray_job`).

A user mistake ends in one line on stderr and exit code 2, which the submitting process reads
from the job's status.
"""
from __future__ import annotations

import sys

from nas.errors import NasError


def main(argv: list[str] | None = None) -> int:
    from nas.strategies.blackbox.ray_tune import drive_job

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m nas.strategies.blackbox.ray_driver RUN (the run folder nas search made)",
              file=sys.stderr)
        return 2
    try:
        drive_job(args[0])
    except NasError as exc:
        print(f"nas search: error: {exc}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
