"""Zero-cost proxies computed by nas on NAS-Bench-201 cells, against the published scores.

For the NAS-Bench-201 cells of NAS-Bench-Suite-Zero's ``zc_nasbench201.json`` (automl/NASLib;
key ``nasbench201`` -> ``cifar10``, about 500 cells), every proxy of
:mod:`nas.evaluators.zero_cost` is computed on CIFAR-10 (JPEG) training images with the
project's own networks and code, and compared, by Spearman rank correlation, with the
published score of the same proxy and with the cell's 200-epoch CIFAR-10 test accuracy
(``nb201_200epoch_test.csv``); the published scores' own correlation with that accuracy is
shown beside. NASWOT is not in the JSON; it is compared with the ``score`` column of
BayesWatch's ``nb201_cifar10_params_valid_test.csv``.

The JSON's keys are op-index tuples in NASLib's convention (op 0..4 = skip_connect, none,
nor_conv_3x3, nor_conv_1x1, avg_pool_3x3; edges in the order 0->1, 0->2, 0->3, 1->2, 1->3,
2->3). The script checks that decoding before it scores anything: each cell's parameter count
(our network's, and the CSV's) against the JSON's ``params``, and the JSON's validation
accuracy against the CSV's, also for the other orders of the parameter-free ops.

Writes ``results/zero_cost_nb201.json``, ``.md`` and ``.png``.

    PYTHONPATH=. python scripts/zero_cost_correlation.py --threads 1     # all cells: about 4 s per cell on a CPU
    PYTHONPATH=. python scripts/zero_cost_correlation.py --limit 50 --also naswot@128   # a seeded sample of 50

On a busy 2-core machine one torch thread was four times faster than two (the threads wait on each other).
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import itertools
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
# NASLib's NAS-Bench-201 encoding (naslib/search_spaces/nasbench201/conversions.py)
NASLIB_OPS = ("skip_connect", "none", "nor_conv_3x3", "nor_conv_1x1", "avg_pool_3x3")
NASLIB_EDGES = ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3))  # (source node, target node)
# our proxy -> its key in the JSON ("naswot" is compared with the CSV's score column instead)
PUBLISHED_KEY = {"synflow": "synflow", "snip": "snip", "grad_norm": "grad_norm", "jacov": "jacov", "params": "params"}
CSV_SCORE = "BayesWatch score"
PARAMS_CSV = "nb201_cifar10_params_valid_test.csv"
TEST_CSV = "nb201_200epoch_test.csv"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(SHARED / "cifar10-jpeg"),
                   help="CIFAR-10 image folder or zip set (default ../shared/data/cifar10-jpeg)")
    p.add_argument("--zc-json", default=str(SHARED / "zero-cost" / "zc_nasbench201.json"),
                   help="NAS-Bench-Suite-Zero's NAS-Bench-201 scores (default ../shared/data/zero-cost/zc_nasbench201.json)")
    p.add_argument("--nb201-root", default=str(SHARED / "nas-bench-201"),
                   help=f"folder with {PARAMS_CSV} and {TEST_CSV} (default ../shared/data/nas-bench-201)")
    p.add_argument("--batch-size", type=int, default=32,
                   help="images per proxy (default 32: what the JSON's scores used, as its jacov scores show: "
                   "they exceed -64 and jacov is at most -batch_size)")
    p.add_argument("--also", action="append", default=[], metavar="PROXY@BATCH",
                   help="a proxy also computed at another batch size, repeatable (e.g. naswot@128, the NASWOT "
                   "paper's batch)")
    p.add_argument("--seed", type=int, default=0, help="batch, weight initialisation and --limit sample (default 0)")
    p.add_argument("--limit", type=int, help="score a seeded sample of this many cells (default all)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, auto (default cpu)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--progress-every", type=int, default=50, help="cells per progress line (default 50)")
    p.add_argument("--out", default=str(REPO / "results" / "zero_cost_nb201"),
                   help="output path without suffix (default results/zero_cost_nb201)")
    p.add_argument("--render-only", action="store_true", help="write the .md and .png again from the .json")
    return p.parse_args(argv)


def decode(key: str, ops: tuple[str, ...] = NASLIB_OPS, edges: tuple[tuple[int, int], ...] = NASLIB_EDGES) -> str:
    """``"(4, 3, 3, 3, 2, 3)"`` -> the NAS-Bench-201 arch string, in the given convention."""
    indices = [int(t) for t in key.strip("()").split(",")]
    if len(indices) != 6:
        raise ValueError(f"{key!r} is not six op indices")
    op = {edge: ops[i] for edge, i in zip(edges, indices, strict=True)}
    return "+".join("|" + "|".join(f"{op[(src, dst)]}~{src}" for src in range(dst)) + "|" for dst in (1, 2, 3))


def rank(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties sharing their average rank (values must not be NaN)."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return ((ends - counts + 1 + ends) / 2)[inverse]


def spearman(x: Any, y: Any) -> float:
    """Spearman's rho: the Pearson correlation of the average ranks."""
    rx, ry = rank(np.asarray(x, dtype=float)), rank(np.asarray(y, dtype=float))
    rx, ry = rx - rx.mean(), ry - ry.mean()
    return float((rx * ry).sum() / math.sqrt((rx * rx).sum() * (ry * ry).sum()))


def ranked(values: list[float]) -> np.ndarray:
    """Scores for ranking: NaN (a score that does not exist, e.g. jacov of a cell whose output
    ignores its input) becomes -inf, ranked last, as NASLib stores such scores as -1e8."""
    out = np.asarray(values, dtype=float)
    return np.where(np.isnan(out), -np.inf, out)


def read_tables(root: Path) -> tuple[dict[str, dict[str, str]], dict[str, float]]:
    with open(root / PARAMS_CSV, newline="") as f:
        params = {row["cellstr"]: row for row in csv.DictReader(f)}
    with open(root / TEST_CSV, newline="") as f:
        test = {row["ArchitectureString"]: float(row["CIFAR10TestAccuracy200Epochs"]) for row in csv.DictReader(f)}
    return params, test


def check_decoding(published: dict[str, dict[str, Any]], table: dict[str, dict[str, str]]) -> dict[str, Any]:
    """How well NASLib's convention (and the alternatives) explain the JSON by the CSV and by our networks."""
    from nas.builders.spec import build_classifier
    from nas.genotype import from_nb201_string
    from nas.measure import count_parameters

    ours, csv_match, csv_mismatch = 0, 0, []
    for key, entry in published.items():
        arch = decode(key)
        built = count_parameters(build_classifier(from_nb201_string(arch), "nb201", num_classes=10))
        ours += abs(built / 1e6 - entry["params"]) < 5e-7
        listed = float(table[arch]["params"])
        if abs(listed - entry["params"]) < 5e-7:
            csv_match += 1
        else:
            csv_mismatch.append({"key": key, "arch": arch, "json_params": entry["params"], "csv_params": listed,
                                 "our_params": built / 1e6})
    val = [entry["val_accuracy"] for entry in published.values()]

    def val_corr(ops: tuple[str, ...], edges: tuple[tuple[int, int], ...]) -> float:
        return float(np.corrcoef(val, [float(table[decode(k, ops, edges)]["valid_top1"]) for k in published])[0, 1])

    free = ("skip_connect", "none", "avg_pool_3x3")
    alternatives = {}
    for perm in itertools.permutations(free):
        ops = (perm[0], perm[1], "nor_conv_3x3", "nor_conv_1x1", perm[2])
        alternatives[",".join(ops)] = val_corr(ops, NASLIB_EDGES)
    by_target = tuple(sorted(NASLIB_EDGES, key=lambda e: (e[1], e[0])))
    return {"cells": len(published), "our_params_equal_json": ours, "csv_params_equal_json": csv_match,
            "csv_params_differ": csv_mismatch,
            "val_accuracy_pearson": {"naslib_convention": val_corr(NASLIB_OPS, NASLIB_EDGES),
                                     "other_op_orders": {k: v for k, v in alternatives.items()
                                                         if k != ",".join(NASLIB_OPS)},
                                     "edges_by_target_node": val_corr(NASLIB_OPS, by_target)}}


def csv_score_facts(table: dict[str, dict[str, str]]) -> dict[str, Any]:
    """What the CSV's ``score`` column looks like over all cells: its range, and whether its empty
    entries are the cells whose output does not depend on the input."""
    from nas.genotype import from_nb201_string

    def input_reaches_output(arch: str) -> bool:
        reached = {0}
        for node, edges in enumerate(from_nb201_string(arch).cell("normal").nodes, start=1):
            if any(op != "none" and src in reached for op, src in edges):
                reached.add(node)
        return 3 in reached

    values = [float(r["score"]) for r in table.values() if r["score"]]
    empty = {arch for arch, r in table.items() if not r["score"]}
    cut = {arch for arch in table if not input_reaches_output(arch)}
    return {"cells": len(table), "min": min(values), "max": max(values), "negative": sum(v < 0 for v in values),
            "empty": len(empty), "input_not_reaching_output": len(cut), "both": len(empty & cut)}


def parse_also(items: list[str], proxies: dict[str, Any]) -> list[tuple[str, int]]:
    runs = []
    for item in items:
        name, _, size = item.partition("@")
        if name not in proxies or not size.isdigit() or int(size) < 2:
            raise SystemExit(f"--also {item}: expected PROXY@BATCH with PROXY one of {', '.join(proxies)}")
        runs.append((name, int(size)))
    return runs


def git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    if args.render_only:
        result = json.loads(out.with_suffix(".json").read_text())
        plot(result, out.with_suffix(".png"))
        out.with_suffix(".md").write_text(markdown(result, out))
        print(table_text(result["correlations"]))
        return 0
    import torch

    from nas.evaluators.zero_cost import PROXIES, ZeroCostEvaluator
    from nas.genotype import from_nb201_string
    from nas.run import versions

    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    load_before = os.getloadavg()
    commit = git_commit()  # the code that runs, before anyone commits during a long run
    published = json.loads(Path(args.zc_json).read_text())["nasbench201"]["cifar10"]
    table, test_acc = read_tables(Path(args.nb201_root))
    check = check_decoding(published, table)
    facts = csv_score_facts(table)
    print(f"decoding ({check['cells']} cells, NASLib's convention): our parameter count equals the JSON's for "
          f"{check['our_params_equal_json']}, the CSV's for {check['csv_params_equal_json']}; JSON vs CSV validation "
          f"accuracy: Pearson {check['val_accuracy_pearson']['naslib_convention']:.4f} (other orders of the "
          f"parameter-free ops: at most {max(check['val_accuracy_pearson']['other_op_orders'].values()):.4f})",
          flush=True)
    if check["our_params_equal_json"] != check["cells"]:
        raise SystemExit("the op-index decoding does not reproduce the JSON's parameter counts; stopping")

    keys = list(published)
    if args.limit is not None and args.limit < len(keys):
        import random

        keys = sorted(random.Random(args.seed).sample(keys, args.limit), key=keys.index)
    runs = [(name, args.batch_size) for name in PROXIES] + parse_also(args.also, PROXIES)
    groups: dict[int, list[str]] = {}
    for name, size in runs:
        groups.setdefault(size, []).append(name)
    evaluators = {size: ZeroCostEvaluator(names, data=args.data, batch_size=size, seed=args.seed, device=args.device,
                                          space="nb201") for size, names in groups.items()}
    label = {(name, size): name if size == args.batch_size else f"{name}@{size}" for name, size in runs}
    scores: dict[str, list[float]] = {label[r]: [] for r in runs}
    seconds: dict[str, list[float]] = {label[r]: [] for r in runs}
    build_seconds: list[float] = []
    records = []
    print(f"scoring {len(keys)} cells: {', '.join(label[r] for r in runs)} (batch {args.batch_size} unless "
          f"@N), seed {args.seed}, {torch.get_num_threads()} threads, device {args.device}", flush=True)
    loop = time.perf_counter()
    for i, key in enumerate(keys, start=1):
        arch = decode(key)
        genotype = from_nb201_string(arch)
        record: dict[str, Any] = {"key": key, "arch": arch, "test_acc": test_acc[arch]}
        for size, names in groups.items():
            built = time.perf_counter()
            evaluator = evaluators[size]
            model = evaluator.network(genotype)
            build_seconds.append(time.perf_counter() - built)
            for name in names:
                t = time.perf_counter()
                value = PROXIES[name](model, evaluator.images, evaluator.labels)
                seconds[label[(name, size)]].append(time.perf_counter() - t)
                scores[label[(name, size)]].append(value)
                record[label[(name, size)]] = value
        records.append(record)
        if i % args.progress_every == 0 or i == len(keys):
            elapsed = time.perf_counter() - loop
            print(f"{i}/{len(keys)} cells, {elapsed:.0f} s ({elapsed / i:.2f} s per cell, about "
                  f"{elapsed / i * (len(keys) - i):.0f} s left)", flush=True)

    acc = [test_acc[decode(k)] for k in keys]
    csv_score = [float(table[decode(k)]["score"]) if table[decode(k)]["score"] else math.nan for k in keys]
    rows = []
    for name, size in runs:
        lab = label[(name, size)]
        ours = ranked(scores[lab])
        if name in PUBLISHED_KEY:
            theirs, source = ranked([published[k][PUBLISHED_KEY[name]] for k in keys]), "NAS-Bench-Suite-Zero JSON"
        else:
            theirs, source = ranked(csv_score), CSV_SCORE
        row = {"proxy": name, "label": lab, "batch_size": size, "published": source,
               "rho_ours_published": spearman(ours, theirs), "rho_ours_test": spearman(ours, acc),
               "rho_published_test": spearman(theirs, acc),
               "seconds_per_cell": float(np.mean(seconds[lab])), "seconds_median": float(np.median(seconds[lab])),
               "non_finite": int(np.sum(~np.isfinite(np.asarray(scores[lab], dtype=float))))}
        rows.append(row)
        if name == "jacov":  # the CSV's score column behaves as a Jacobian covariance score (see the notes)
            rows.append({**row, "label": f"{lab} vs {CSV_SCORE}", "published": CSV_SCORE,
                         "rho_ours_published": spearman(ours, ranked(csv_score)),
                         "rho_published_test": spearman(ranked(csv_score), acc)})
    total = time.perf_counter() - start
    result = {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "command": "python scripts/zero_cost_correlation.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "data": str(Path(args.data)), "images": "CIFAR-10 (JPEG) training split", "batch_size": args.batch_size,
        "also": [label[r] for r in runs if r[1] != args.batch_size], "seed": args.seed, "device": args.device,
        "threads": torch.get_num_threads(), "cells": len(keys), "cells_in_json": len(published),
        "subset": args.limit is not None and args.limit < len(published),
        "seconds_total": total, "load_average_1min": {"start": load_before[0], "end": os.getloadavg()[0]}, "build_seconds_per_cell": float(np.sum(build_seconds) / len(keys)),
        "decoding_check": check, "csv_score_column": facts, "correlations": rows, "versions": {**versions(), "git_commit": commit},
        "architectures": records,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1, default=_json_number) + "\n")
    plot(result, out.with_suffix(".png"))
    out.with_suffix(".md").write_text(markdown(result, out))
    print(table_text(rows))
    print(f"wrote {out.with_suffix('.json')}, .md, .png ({total / 60:.1f} min)")
    return 0


def _json_number(value: Any) -> Any:
    return float(value) if isinstance(value, np.floating) else str(value)


def table_text(rows: list[dict[str, Any]]) -> str:
    lines = ["| proxy | batch | ρ(ours, published) | ρ(ours, test acc) | ρ(published, test acc) | s per cell |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        published = "JSON" if r["published"] != CSV_SCORE else "CSV score"
        lines.append(f"| {r['label']} | {r['batch_size']} | {r['rho_ours_published']:.3f} ({published}) | "
                     f"{r['rho_ours_test']:.3f} | {r['rho_published_test']:.3f} | {r['seconds_per_cell']:.3f} |")
    return "\n".join(lines)


def markdown(result: dict[str, Any], out: Path) -> str:
    check = result["decoding_check"]
    facts = result["csv_score_column"]
    val = check["val_accuracy_pearson"]
    subset = (f"a seeded sample of {result['cells']} of the {result['cells_in_json']} cells (--limit, seed "
              f"{result['seed']})" if result["subset"] else f"all {result['cells']} cells")
    also = f" (and {', '.join(result['also'])})" if result["also"] else ""
    v = result["versions"]
    mismatches = ", ".join(f"{m['key']} (CSV {m['csv_params']:.6f}, JSON {m['json_params']:.6f})"
                           for m in check["csv_params_differ"])
    return f"""# Zero-cost proxies on NAS-Bench-201 (CIFAR-10), computed by nas

Every proxy of `nas.evaluators.zero_cost` computed with the project's own NAS-Bench-201 networks (C=16, 5 cells
per stage, 10 classes) on {subset} of NAS-Bench-Suite-Zero's `zc_nasbench201.json` (automl/NASLib), on one
mini-batch of {result['batch_size']} CIFAR-10 (JPEG) training images{also} drawn with seed {result['seed']}, each
network initialised from the same seed. ρ is Spearman's rank
correlation (average ranks for ties) over the same cells: of our scores with the published ones, of our scores
with the 200-epoch CIFAR-10 test accuracy (`nb201_200epoch_test.csv`), and of the published scores with that
accuracy. A score that does not exist ranks last, as NASLib's -1e8 does: jacov is NaN for the cells whose output
ignores the input, naswot -inf where the kernel is singular (here: cells without a convolution whose output is
zero, so that every ReLU of the network sees a constant); `non_finite` in the JSON's `correlations` counts them.

{table_text(result['correlations'])}

Seconds per cell are the proxy's own time on one cell (mean; the network build, {result['build_seconds_per_cell']:.3f}
s per cell and batch size, apart), on {result['threads']} thread(s) of {v.get('device')} ({v.get('cpus')} CPUs,
shared with other work: 1-minute load average {result['load_average_1min']['start']:.1f} at the start,
{result['load_average_1min']['end']:.1f} at the end, so the times are indicative). Whole run:
{result['seconds_total'] / 60:.1f} min.

## What is compared

- Published synflow, snip, grad_norm, jacov, params: the JSON (NAS-Bench-Suite-Zero). Its synflow is the natural
  log of the sum (same ranks); its batch size is not written in the file, but its jacov scores reach -32.2, and
  jacov is at most -(batch size), so they used 32 images: the default here.
- Published NASWOT: the `score` column of BayesWatch's `nb201_cifar10_params_valid_test.csv`. That column cannot
  be the log-determinant of NASWOT's kernel: the kernel is a sum of Gram matrices of 0/1 vectors, an integer
  matrix, so its determinant is 0 or at least 1 and its log never negative, yet {facts['negative']} of the
  column's {facts['cells'] - facts['empty']} values are negative ({facts['min']:.4g} to {facts['max']:.4g}); and
  its {facts['empty']} empty entries are the {facts['input_not_reaching_output']} cells whose output does not depend
  on the input (no path of non-`none` edges from the input; {facts['both']} in both sets), where a correlation
  of input gradients is undefined but the kernel is not. The column behaves as the Jacobian covariance score of
  the paper's first version (arXiv v1, our `jacov`; that version's scripts draw batches of 256), so our jacov is
  compared with it too (row "jacov vs {CSV_SCORE}").

## The op-index convention of the JSON keys, checked

Keys such as `(4, 3, 3, 3, 2, 3)` are NASLib's: op indices 0..4 = skip_connect, none, nor_conv_3x3,
nor_conv_1x1, avg_pool_3x3, on the edges 0->1, 0->2, 0->3, 1->2, 1->3, 2->3 (`naslib/search_spaces/nasbench201/
conversions.py`). Decoded so, our network's parameter count equals the JSON's `params` for
{check['our_params_equal_json']} of {check['cells']} cells, and the CSV's `params` equals it for
{check['csv_params_equal_json']}; the {len(check['csv_params_differ'])} others are CSV entries that are not whole
parameter counts (the CSV has 199 such rows, see `tests/test_builders.py`), where our count equals the JSON's:
{mismatches or 'none'}. Parameter
counts cannot tell skip_connect, none and avg_pool_3x3 apart, so the JSON's `val_accuracy` was compared with the
CSV's `valid_top1`: Pearson {val['naslib_convention']:.4f} in this convention, at most
{max(val['other_op_orders'].values()):.4f} for any other order of the three parameter-free ops, and
{val['edges_by_target_node']:.4f} with the edges ordered by target node.

## Definitions (see the docstrings of `nas/evaluators/zero_cost.py`)

- naswot: log|K| by `slogdet`, K[i, j] = units where images i and j agree (both active or both inactive),
  summed over every ReLU module call of one forward pass in train mode (BatchNorm on batch statistics).
- synflow: float64 copy, parameters replaced by their absolute values, BatchNorm switched off (identity), one
  all-ones input; sum over Conv2d/Linear weights of |θ · dR/dθ|, R the sum of the outputs.
- snip: sum over Conv2d/Linear weights of |w · dL/dw|, L the cross-entropy of the batch (train mode).
- grad_norm: sum over Conv2d/Linear layers of the L2 norm of dL/dw.
- jacov: -Σ(log(v + 1e-5) + 1/(v + 1e-5)) over the eigenvalues of the correlation matrix of the input gradients
  of the summed outputs (train mode).
- params: trainable parameters.

Command: `{result['command']}`. Versions: Python {v.get('python')}, torch {v.get('torch')}, numpy {v.get('numpy')},
nas {v.get('nas')} (commit {str(v.get('git_commit'))[:10]}). Per-cell scores: `{out.with_suffix('.json').name}`
(`architectures`); figure: `{out.with_suffix('.png').name}`.
"""


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["correlations"]
    main_rows = [r for r in rows if " vs " not in r["label"]]
    fig = plt.figure(figsize=(3 * len(main_rows), 7.5))
    grid = fig.add_gridspec(2, len(main_rows), height_ratios=[1.1, 1])
    bars = fig.add_subplot(grid[0, :])
    x = np.arange(len(rows))
    for offset, keyname, text in ((-0.27, "rho_ours_published", "ours vs published"),
                                  (0.0, "rho_ours_test", "ours vs test accuracy"),
                                  (0.27, "rho_published_test", "published vs test accuracy")):
        bars.bar(x + offset, [r[keyname] for r in rows], width=0.27, label=text)
    bars.set_xticks(x, [r["label"].replace(" vs ", "\nvs ") for r in rows], fontsize=8)
    bars.axhline(0, color="black", linewidth=0.5)
    bars.set_ylabel("Spearman ρ")
    bars.set_title(f"Zero-cost proxies on {result['cells']} NAS-Bench-201 cells, CIFAR-10 (JPEG), batch "
                   f"{result['batch_size']}")
    bars.set_ylim(min(0.0, *(r[k] for r in rows for k in ("rho_ours_published", "rho_ours_test",
                                                               "rho_published_test"))), 1.18)
    bars.legend(fontsize=8, loc="upper center", ncol=3)
    records = result["architectures"]
    acc = np.array([r["test_acc"] for r in records])
    for i, row in enumerate(main_rows):
        ax = fig.add_subplot(grid[1, i])
        ours = ranked([r[row["label"]] for r in records])
        finite = np.isfinite(ours)
        ax.scatter(rank(ours)[finite], acc[finite], s=4, alpha=0.5)
        ax.set_title(f"{row['label']} (ρ {row['rho_ours_test']:.2f})", fontsize=9)
        ax.set_xlabel("rank of our score", fontsize=8)
        if i == 0:
            ax.set_ylabel("200-epoch test accuracy (%)", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
