"""Launch a Ray Tune architecture search from Python: an example to copy for your own runs.

It searches the NAS-Bench-201 cell space, scoring each cell by table lookup (seconds per
trial), so the whole Ray machinery (trials in parallel, the dashboard, resume) can be watched
without training anything; it then reports the 200-epoch test accuracy of the cell found
next to the best one the table holds.

    PYTHONPATH=. python scripts/ray_search.py                          # TPE, 64 trials, local Ray
    PYTHONPATH=. python scripts/ray_search.py --strategy evolution --trials 200 --max-concurrent 4
    PYTHONPATH=. python scripts/ray_search.py --resume runs/ray-tpe-nb201-...   # after Ctrl-C or a kill

On a cluster (``ray start --head`` on the head node; every node needs ``nas`` importable and the
run folder on shared storage):

    RAY_AUTH_MODE=token PYTHONPATH=. python scripts/ray_search.py --address auto

To train every cell instead, use the command: ``nas search --backend ray --evaluator train ...``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from nas.errors import NasError  # noqa: E402
from nas.evaluators import evaluator_from_config  # noqa: E402
from nas.strategies import get_strategy, registered_strategies  # noqa: E402
from nas.strategies.blackbox.settings import BlackboxSettings  # noqa: E402

STRATEGIES = sorted(name for name, cls in registered_strategies().items() if cls.kind == "blackbox")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--strategy", choices=STRATEGIES, default="tpe")
    parser.add_argument("--trials", type=int, default=64)
    parser.add_argument("--dataset", default="cifar10", help="cifar10, cifar100 or imagenet16-120")
    parser.add_argument("--nb201-root",
                        help="folder of the NAS-Bench-201 tables (default ../shared/data/nas-bench-201)")
    parser.add_argument("--address", help="Ray cluster to attach to (default $RAY_ADDRESS, else a local Ray)")
    parser.add_argument("--max-concurrent", type=int, help="trials at once (default: one per CPU)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="run folder (default runs/ray-<strategy>-nb201-<time>)")
    parser.add_argument("--resume", metavar="RUN", help="continue a stopped search")
    args = parser.parse_args(argv)
    try:
        table = evaluator_from_config({"name": "nb201", "root": args.nb201_root, "dataset": args.dataset})
        settings = BlackboxSettings(trials=None if args.resume else args.trials, backend="ray",
                                    ray_address=args.address, max_concurrent=args.max_concurrent)
        result = get_strategy(args.strategy).search("nb201", settings, evaluator=table, out=args.out,
                                                    resume=args.resume, seed=args.seed)
    except NasError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if result.genotype is None:
        return 1
    found = table.record(result.genotype)
    optimum = table.optimum()
    print(f"found {found.arch}: 200-epoch test accuracy {found.test_acc:.2%} "
          f"(table best {optimum['best_test_acc']:.2%}, median {table.median():.2%}, "
          f"best by 12-epoch validation {optimum['test_acc_of_best_val']:.2%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
