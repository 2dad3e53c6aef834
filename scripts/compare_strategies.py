"""Compare black-box strategies on the NAS-Bench-201 tables (CIFAR-10, CIFAR-100, ImageNet16-120).

Every (data set, strategy, seed) is one search of ``--trials`` evaluated cells on an in-memory
Optuna study, maximising the 12-epoch validation accuracy. A search reports the 200-epoch test
accuracy of the cell with the best validation accuracy it evaluated; the table gives mean ± std
over seeds, next to the best test accuracy in the benchmark and the test accuracy of the cell
with the best validation accuracy (what a perfect search on this signal reports).
Accuracies are fractions in the JSON and the plot (as the evaluator reports them), percent in
the Markdown table.

    python scripts/compare_strategies.py --seeds 100 --trials 100 --workers 2

Writes ``results/nb201_strategy_comparison.{md,json,png}``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from multiprocessing import Pool
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

DATASETS = ("cifar10", "cifar100", "imagenet16-120")
STRATEGIES = ("random", "tpe", "evolution")
LABELS = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "imagenet16-120": "ImageNet16-120"}


def one_search(job: tuple[str, str, str, int, int, int, int]) -> dict[str, Any]:
    """Run one search; returns the incumbent's test accuracy after every trial."""
    import optuna

    from nas.evaluators.nb201_table import NB201TableEvaluator
    from nas.space import load_space
    from nas.strategies.blackbox.optuna_search import make_objective, make_sampler

    root, dataset, strategy, seed, trials, population, sample_size = job
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    space = load_space("nb201")
    evaluator = NB201TableEvaluator(root, dataset=dataset)
    sampler = make_sampler(strategy, space, seed=seed, population=population, sample_size=sample_size)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    started = time.perf_counter()
    study.optimize(make_objective(space, evaluator, ["val_acc"]), n_trials=trials)
    seconds = time.perf_counter() - started
    best_val, incumbent_test, curve, seen = -1.0, 0.0, [], set()
    for trial in study.trials:
        metrics = trial.user_attrs["metrics"]
        seen.add(metrics["arch"])
        if metrics["val_acc"] > best_val:  # ties keep the earlier cell
            best_val, incumbent_test = metrics["val_acc"], metrics["test_acc"]
        curve.append(incumbent_test)
    return {"dataset": dataset, "strategy": strategy, "seed": seed, "test_acc": curve[-1], "best_val_acc": best_val,
            "curve": curve, "unique": len(seen), "seconds": seconds}


def summarise(runs: list[dict[str, Any]], datasets: tuple[str, ...], strategies: tuple[str, ...],
              optima: dict[str, dict[str, Any]], trials: int) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    half = trials // 2
    for dataset in datasets:
        summary[dataset] = {"optimum": optima[dataset], "strategies": {}}
        for strategy in strategies:
            rows = [r for r in runs if r["dataset"] == dataset and r["strategy"] == strategy]
            finals = [r["test_acc"] for r in rows]
            halves = [r["curve"][half - 1] for r in rows]
            curves = [r["curve"] for r in rows]
            summary[dataset]["strategies"][strategy] = {
                "seeds": len(rows), "test_acc_mean": statistics.mean(finals), "test_acc_std": statistics.stdev(finals),
                f"test_acc_mean_at_{half}": statistics.mean(halves), f"test_acc_std_at_{half}": statistics.stdev(halves),
                "found_best_val_arch": sum(r["best_val_acc"] >= optima[dataset]["best_val_acc"] for r in rows),
                "unique_cells_mean": statistics.mean(r["unique"] for r in rows),
                "seconds_per_search_mean": statistics.mean(r["seconds"] for r in rows),
                "curve_mean": [statistics.mean(c[i] for c in curves) for i in range(trials)],
                "curve_std": [statistics.stdev(c[i] for c in curves) for i in range(trials)],
            }
    return summary


def write_markdown(path: Path, summary: dict[str, Any], args: argparse.Namespace, strategies: tuple[str, ...],
                   wall: float) -> None:
    half = args.trials // 2
    lines = [
        "# Black-box strategies on NAS-Bench-201",
        "",
        f"Each search evaluates {args.trials} cells (repeats count) of the NAS-Bench-201 space, maximising the "
        "12-epoch validation accuracy from `nb201_12epoch_val_test.csv`, and reports the 200-epoch test accuracy "
        "(`nb201_200epoch_test.csv`) of the cell with the best validation accuracy it saw. "
        f"Mean ± standard deviation over {args.seeds} seeds (0..{args.seeds - 1}) per cell of the table; in "
        f"brackets the same after {half} cells. Strategies: random (`RandomSampler`), TPE (`TPESampler`, "
        f"multivariate), regularized evolution (population {args.population}, tournament {args.sample_size}, "
        "random first population). In-memory Optuna studies. The standard error of a mean is the std divided "
        f"by {math.sqrt(args.seeds):.0f}. Per seed, evolution's first population is the same {args.population} "
        "cells random search starts with (both use `RandomSampler(seed)`), so the two differ only in what "
        "follows. Accuracies in percent here; `nb201_strategy_comparison.json` stores them as fractions.",
        "",
        "| data set | " + " | ".join(strategies) + " | best test acc in the table | test acc of the best-val cell |",
        "|---|" + "---|" * (len(strategies) + 2),
    ]
    for dataset, entry in summary.items():
        cells = []
        for strategy in strategies:
            s = entry["strategies"][strategy]
            cells.append(f"{percent(s['test_acc_mean'])} ± {percent(s['test_acc_std'])} "
                         f"({percent(s[f'test_acc_mean_at_{half}'])} ± {percent(s[f'test_acc_std_at_{half}'])})")
        opt = entry["optimum"]
        lines.append(f"| {LABELS[dataset]} | " + " | ".join(cells)
                     + f" | {percent(opt['best_test_acc'])} | {percent(opt['test_acc_of_best_val'])} |")
    lines += ["", "Also per search (mean over seeds): distinct cells among the evaluated ones, and how many "
              "searches found the cell with the best validation accuracy of the whole table:", "",
              "| data set | strategy | distinct cells | found the best-val cell | seconds per search |",
              "|---|---|---|---|---|"]
    for dataset, entry in summary.items():
        for strategy in strategies:
            s = entry["strategies"][strategy]
            lines.append(f"| {LABELS[dataset]} | {strategy} | {s['unique_cells_mean']:.1f} | "
                         f"{s['found_best_val_arch']} of {s['seeds']} | {s['seconds_per_search_mean']:.2f} |")
    lines += ["", f"Command: `python scripts/compare_strategies.py --seeds {args.seeds} --trials {args.trials} "
              f"--workers {args.workers}` ({wall / 60:.1f} min on {args.workers} worker processes of a shared "
              "2-core machine). Tables: ../shared/data/nas-bench-201 (see its README for sources). "
              "Best-so-far curves: `nb201_strategy_comparison.png`.", ""]
    path.write_text("\n".join(lines))


def percent(fraction: float) -> str:
    return f"{100 * fraction:.2f}"


def plot(path: Path, summary: dict[str, Any], strategies: tuple[str, ...], trials: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(summary), figsize=(5 * len(summary), 4))
    axes = axes if len(summary) > 1 else [axes]
    x = list(range(1, trials + 1))
    for ax, (dataset, entry) in zip(axes, summary.items()):
        for strategy in strategies:
            s = entry["strategies"][strategy]
            mean, std = s["curve_mean"], s["curve_std"]
            ax.plot(x, mean, label=strategy)
            ax.fill_between(x, [m - d for m, d in zip(mean, std)], [m + d for m, d in zip(mean, std)], alpha=0.15)
        ax.axhline(entry["optimum"]["test_acc_of_best_val"], color="gray", linestyle="--", linewidth=1,
                   label="best-val cell")
        low = min(min(entry["strategies"][s]["curve_mean"][min(9, trials - 1):]) for s in strategies)
        ax.set_ylim(low - 0.02, entry["optimum"]["best_test_acc"] + 0.005)
        ax.set_title(LABELS[dataset])
        ax.set_xlabel("cells evaluated")
        ax.set_ylabel("test accuracy of the best-val cell so far\nmean ± std over seeds")
        ax.grid(alpha=0.3)
    axes[0].legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    from nas.evaluators.nb201_table import NB201TableEvaluator, default_nb201_root

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default=None, help="NAS-Bench-201 tables (default ../shared/data/nas-bench-201)")
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--population", type=int, default=20, help="evolution: population P")
    parser.add_argument("--sample-size", type=int, default=5, help="evolution: tournament size S")
    parser.add_argument("--workers", type=int, default=2, help="processes (default 2)")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    parser.add_argument("--out", default=str(REPO / "results" / "nb201_strategy_comparison"),
                        help="output path without suffix (.md, .json, .png are written)")
    args = parser.parse_args(argv)
    root = args.root or default_nb201_root()
    if root is None:
        parser.error("NAS-Bench-201 tables not found; pass --root DIR")
    datasets, strategies = tuple(args.datasets), tuple(args.strategies)
    optima = {d: NB201TableEvaluator(root, dataset=d).optimum() for d in datasets}
    jobs = [(str(root), d, s, seed, args.trials, args.population, args.sample_size)
            for d in datasets for s in strategies for seed in range(args.seeds)]
    started = time.perf_counter()
    runs = []
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with Pool(args.workers) as pool:
        for i, run in enumerate(pool.imap_unordered(one_search, jobs, chunksize=4), start=1):
            runs.append(run)
            if i % 50 == 0 or i == len(jobs):
                print(f"{i}/{len(jobs)} searches, {time.perf_counter() - started:.0f}s", flush=True)
    wall = time.perf_counter() - started
    runs.sort(key=lambda r: (r["dataset"], r["strategy"], r["seed"]))
    summary = summarise(runs, datasets, strategies, optima, args.trials)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    settings = {"seeds": args.seeds, "trials": args.trials, "population": args.population,
                "sample_size": args.sample_size, "workers": args.workers, "wall_seconds": wall}
    per_seed = [{k: r[k] for k in ("dataset", "strategy", "seed", "test_acc", "best_val_acc", "unique")} for r in runs]
    out.with_suffix(".json").write_text(json.dumps({"settings": settings, "summary": summary, "runs": per_seed},
                                                   indent=1) + "\n")
    write_markdown(out.with_suffix(".md"), summary, args, strategies, wall)
    plot(out.with_suffix(".png"), summary, strategies, args.trials)
    print(out.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
