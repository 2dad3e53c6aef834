"""What a black-box search leaves in its run folder, written the same way for every backend.

Each backend turns its trials (Optuna's study, Ray Tune's result grid) into
:class:`TrialRecord` s; :func:`write_results` then writes

    trials.csv                       one row per trial: number, status, metrics, genotype
    genotype.json, best.json         the best trial that ran to the end (several objectives:
                                     the Pareto member best in the first objective)
    pareto.json, pareto/NNNN.json    several objectives: the Pareto set of finished trials
    history.png, pareto.png          the first objective per trial with the best so far;
                                     the front over the first two objectives

>>> pareto_front([[0.9, 5], [0.8, 3], [0.7, 4]], ["maximize", "minimize"])
[0, 1]
"""
from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt

from nas.genotype import Genotype
from nas.io import atomic_save, atomic_write
from nas.run import Run
from nas.strategies.blackbox.sampling import short_form

# how history.png draws each status: (colour, marker, legend)
STATUS_STYLES = {"complete": ("tab:blue", "o", "ran to the end"), "pruned": ("tab:gray", "x", "pruned"),
                 "stopped": ("tab:gray", "x", "stopped early"), "fail": ("tab:red", "v", "failed"),
                 "error": ("tab:red", "v", "error")}


@dataclass
class TrialRecord:
    """One trial as the result writer sees it.

    status: ``complete`` (ran to the end), ``pruned`` / ``stopped`` (stopped early), ``fail`` /
        ``error``; only complete trials with finite objectives compete for the result.
    metrics: the evaluator's metrics (for a stopped trial, its last report).
    columns: the backend's own ``trials.csv`` columns (trial id, epoch, seconds, error, path).
    info: the backend's own entries of ``best.json`` and ``pareto.json`` (Optuna's params,
        Tune's trial id).
    """

    number: int
    status: str
    genotype: Genotype | None
    metrics: dict[str, Any] = field(default_factory=dict)
    columns: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class Outcome:
    """The best genotype (``None`` when no trial finished), its metrics, and the Pareto set as
    (genotype, metrics) pairs, best first (one objective: just the best)."""

    genotype: Genotype | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    pareto: list[tuple[Genotype, dict[str, Any]]] = field(default_factory=list)


def pareto_front(values: Sequence[Sequence[float]], directions: Sequence[str]) -> list[int]:
    """Indices of the non-dominated rows (``directions``: maximize/minimize per column)."""
    signs = [1 if d == "maximize" else -1 for d in directions]
    scored = [[s * v for s, v in zip(signs, row)] for row in values]
    return [i for i, a in enumerate(scored)
            if not any(all(x >= y for x, y in zip(b, a)) and any(x > y for x, y in zip(b, a)) for b in scored)]


def distinct_members(records: Sequence[TrialRecord]) -> list[TrialRecord]:
    """``records`` without a repeated or functionally identical cell (the first of each stays):
    a front that a search without ``--distinct`` filled with repeats lists each cell once."""
    from nas.strategies.blackbox.distinct import function_key

    seen: set[str] = set()
    kept = []
    for record in records:
        key = function_key(record.genotype)
        if key not in seen:
            seen.add(key)
            kept.append(record)
    return kept


def finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def plain(metrics: dict[str, Any]) -> dict[str, Any]:
    """Metrics as JSON-ready numbers and strings (what study attributes and Tune's result files hold)."""
    values: dict[str, Any] = {}
    for key, value in metrics.items():
        if hasattr(value, "item"):
            value = value.item()
        if isinstance(value, (int, float, str, bool)):
            values[key] = value
    return values


def table_rows(records: Sequence[TrialRecord], objectives: Sequence[str]) -> list[dict[str, Any]]:
    """The rows of ``trials.csv``, in trial order."""
    rows = []
    for record in sorted(records, key=lambda r: r.number):
        row: dict[str, Any] = {"trial": record.number, "status": record.status}
        row.update({name: record.metrics.get(name) for name in objectives})
        row.update({k: v for k, v in {**record.metrics, **record.columns}.items() if k not in row})
        row["genotype"] = short_form(record.genotype) if record.genotype is not None else ""
        row["genotype_json"] = json.dumps(record.genotype.to_dict()) if record.genotype is not None else ""
        rows.append(row)
    return rows


def write_results(run: Run, records: Sequence[TrialRecord], objectives: Sequence[str],
                  directions: Sequence[str]) -> Outcome:
    """Write ``trials.csv``, the best genotype, the Pareto set and the plots of a search into ``run``."""
    objectives, directions = list(objectives), list(directions)
    rows = table_rows(records, objectives)
    if not rows:
        return Outcome()
    names = list(dict.fromkeys(key for row in rows for key in row))
    table = io.StringIO(newline="")
    writer = csv.DictWriter(table, fieldnames=names)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(run.path / "trials.csv", table.getvalue())
    done = [r for r in records if r.status == "complete" and r.genotype is not None
            and all(finite(r.metrics.get(name)) for name in objectives)]
    _plot_history(run, records, objectives[0], directions[0])
    if not done:
        return Outcome()
    front = [done[i] for i in pareto_front([[float(r.metrics[o]) for o in objectives] for r in done], directions)]
    first = 1 if directions[0] == "maximize" else -1
    front.sort(key=lambda r: (-first * float(r.metrics[objectives[0]]), r.number))
    front = distinct_members(front)
    best = front[0]
    best.genotype.save(run.path / "genotype.json")
    run.write_json("best.json", {"trial": best.number, **best.info, "values": _values(best, objectives),
                                 "metrics": best.metrics, "genotype": best.genotype.to_dict(),
                                 "short": short_form(best.genotype)})
    if len(objectives) > 1:
        members = []
        for record in front:
            name = f"pareto/{record.number:04d}.json"
            run.write_json(name, record.genotype.to_dict())
            members.append({"trial": record.number, **record.info, "file": name,
                            "values": _values(record, objectives), "metrics": record.metrics,
                            "short": short_form(record.genotype)})
        run.write_json("pareto.json", {"objectives": objectives, "members": members})
        _plot_pareto(run, done, front, objectives)
    return Outcome(best.genotype, dict(best.metrics), [(r.genotype, dict(r.metrics)) for r in front])


def headline(metrics: dict[str, Any], objectives: Sequence[str]) -> str:
    """The objectives and the usual headline metrics, for one printed line."""
    keys = dict.fromkeys([*objectives, "val_acc", "test_acc", "params", "macs", "latency_ms"])
    return " ".join(f"{k} {_fmt(metrics[k])}" for k in keys if finite(metrics.get(k)))


def metric_text(metrics: dict[str, Any], names: Sequence[str]) -> str:
    """``val_acc 0.912 params 1.2e+05``: the named metrics that are numbers (NaN included), for a
    trial's progress line."""
    return " ".join(f"{name} {metrics[name]:.4g}" for name in names
                    if isinstance(metrics.get(name), (int, float)) and not isinstance(metrics.get(name), bool))


def _fmt(value: Any) -> str:
    if isinstance(value, int) and abs(value) >= 10_000:
        return f"{value / 1e6:.3g}M"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def print_best(path: Any, genotype: Genotype, metrics: dict[str, Any], pareto: Sequence[Any],
               objectives: Sequence[str]) -> None:
    """The closing lines of a search: the Pareto set's size, the best genotype and its file."""
    if len(objectives) > 1:
        print(f"pareto front: {len(pareto)} genotypes in {path}/pareto/ (pareto.json)")
    print(f"best: {short_form(genotype)} | {headline(metrics, objectives)}")
    print(f"genotype: {path}/genotype.json")


def _values(record: TrialRecord, objectives: Sequence[str]) -> dict[str, float]:
    return {name: record.metrics[name] for name in objectives}


def _plot_history(run: Run, records: Sequence[TrialRecord], objective: str, direction: str) -> None:
    """``history.png``: the objective of every trial by trial number, and the best so far
    among trials that ran to the end."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for status, (color, marker, label) in STATUS_STYLES.items():
        points = [(r.number, float(r.metrics[objective])) for r in records
                  if r.status == status and finite(r.metrics.get(objective))]
        if points:
            ax.scatter(*zip(*points), c=color, marker=marker, label=label, s=20)
    done = sorted((r.number, float(r.metrics[objective])) for r in records
                  if r.status == "complete" and finite(r.metrics.get(objective)))
    if done:
        best, running = [], None
        for _, value in done:
            running = value if running is None else (max if direction == "maximize" else min)(running, value)
            best.append(running)
        ax.step([n for n, _ in done], best, where="post", color="tab:orange", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel(objective)
    ax.set_title(f"{objective} per trial ({'higher' if direction == 'maximize' else 'lower'} is better)")
    if ax.has_data():
        ax.legend(loc="best", fontsize=8)
    _save(fig, run.path / "history.png")


def _plot_pareto(run: Run, done: Sequence[TrialRecord], front: Sequence[TrialRecord],
                 objectives: Sequence[str]) -> None:
    x, y = objectives[1], objectives[0]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter([float(r.metrics[x]) for r in done], [float(r.metrics[y]) for r in done], c="tab:gray", s=15,
               label="trials")
    ordered = sorted(front, key=lambda r: float(r.metrics[x]))
    ax.plot([float(r.metrics[x]) for r in ordered], [float(r.metrics[y]) for r in ordered], "o-", c="tab:orange",
            label="Pareto front")
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.legend(loc="best", fontsize=8)
    _save(fig, run.path / "pareto.png")


def _save(fig: Any, path: Any) -> None:
    try:  # a kill mid-plot leaves the previous PNG
        atomic_save(path, lambda f: fig.savefig(f, format="png", dpi=120, bbox_inches="tight"))
    finally:
        plt.close(fig)
