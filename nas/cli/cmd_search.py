"""``nas search``: one command for every strategy.

Common options live here; each strategy module adds its own option group through
``add_arguments(parser)`` and runs through ``run_from_args(args)``.
"""
from __future__ import annotations

import argparse
import importlib

from nas.errors import NasError

ORDER = 20

# strategy name -> module that implements it (imported only when used, so a missing optional
# backend does not break the other strategies)
STRATEGIES = {
    "darts": "nas.strategies.oneshot.darts",
    "random": "nas.strategies.blackbox.cli",
    "tpe": "nas.strategies.blackbox.cli",
    "evolution": "nas.strategies.blackbox.cli",
    "nsga2": "nas.strategies.blackbox.cli",
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("search", help="search a space for an architecture",
                       description="Search a space with DARTS (gradient, one-shot) or a black-box strategy "
                       "(Optuna samplers, optionally as Ray Tune trials). The run folder receives the "
                       "config, metrics, the found genotype.json and plots.")
    p.add_argument("--strategy", choices=sorted(STRATEGIES),
                   help="search strategy (default darts; with --resume, the run's own)")
    p.add_argument("--space", help="space name or .yaml file (default darts; nb201 with --evaluator nb201)")
    p.add_argument("--dataset", default="digits", help="data set: digits (embedded, default), cifar10, cifar100, "
                   "imagefolder; with --evaluator detection / segmentation: shapes (embedded, default), coco, voc")
    p.add_argument("--data-root", help="folder (or zip) of the data set; not needed for digits")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--out", help="run folder to create (default runs/<strategy>-<space>-<time>)")
    p.add_argument("--resume", metavar="RUN", help="continue the run in this folder")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto: cuda when present)")
    seen = set()
    for module_name in STRATEGIES.values():
        if module_name in seen:
            continue
        seen.add(module_name)
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if not exc.name or not exc.name.startswith("nas."):
                raise
            continue  # strategy not present in this build
        module.add_arguments(p)
    p.set_defaults(func=cmd_search)


def cmd_search(args: argparse.Namespace) -> int:
    if args.resume:
        # a resumed search keeps the strategy and backend it was started with
        from nas.run import Run

        saved = Run.open(args.resume).config
        if args.strategy is None:
            if saved.get("strategy") not in STRATEGIES:
                raise NasError(f"{args.resume} was not made by nas search (no known strategy in its config.json); "
                               "pass --strategy")
            args.strategy = saved["strategy"]
        if "backend" in saved and hasattr(args, "backend"):
            args.backend = saved["backend"]
    args.strategy = args.strategy or "darts"
    if args.space is None:
        args.space = "nb201" if getattr(args, "evaluator", None) == "nb201" else "darts"
    module = importlib.import_module(STRATEGIES[args.strategy])
    return int(module.run_from_args(args) or 0)
