"""Warm start: rank a large random sample of cells by a zero-cost proxy and evaluate the best first.

A proxy scores a cell from its untrained network in a fraction of a second, without labels
(NASWOT) or with one mini-batch. :func:`warm_start` draws ``sample`` random cells (distinct
under the search's ``distinct`` key), scores each and returns the ``top`` best. The search
evaluates them first, as enqueued trials: evolution takes them as its first population, local
search climbs from the best, TPE learns from them. What the ranking cost (cells scored,
seconds) is recorded in the run's ``config.json`` under ``warm_start`` and printed; it is not
part of ``--trials``, which counts evaluations.

Proxies: those of :mod:`nas.evaluators.zero_cost` (computed here, on the data set's images), and
``nb201-jacov``, the zero-cost score published for every NAS-Bench-201 cell with the CIFAR-10 table
(``nb201_cifar10_params_valid_test.csv``, column ``score``, from nas-without-training), read from
the table evaluator's files. By its values it is the Jacobian covariance score of Mellor et al.'s
first version (arXiv 2006.04647 v1; Spearman 0.94 with this project's ``jacov``,
``results/zero_cost_nb201.md``), not the ICML 2021 NASWOT kernel score.
"""
from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from nas.errors import NasError
from nas.evaluators.base import Evaluator
from nas.genotype import Genotype, random_genotype
from nas.space import SearchSpace, load_space
from nas.strategies.blackbox.distinct import cell_key

TABLE_PROXY = "nb201-jacov"


@dataclass
class WarmStart:
    """A warm start's cells and what ranking them cost."""

    proxy: str
    sample: int
    top: int
    genotypes: list[Genotype] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    scored: int = 0  # cells the proxy scored (distinct cells drawn)
    seconds: float = 0.0

    def record(self) -> dict[str, Any]:
        """Plain data for ``config.json``: the cost and the best scores."""
        data = {k: v for k, v in asdict(self).items() if k not in ("genotypes", "scores")}
        data["best_scores"] = [s if math.isfinite(s) else None for s in self.scores]
        return {**data, "seconds": round(self.seconds, 3)}

    def line(self, trials: int) -> str:
        return (f"warm start: {self.proxy} ranked {self.scored} random cells in {self.seconds:.1f} s (apart from "
                f"the {trials} evaluations); the best {len(self.genotypes)} are evaluated first")


def proxy_scorer(proxy: str, evaluator: Evaluator, space: SearchSpace, *,
                 data: str | None = None) -> Callable[[Genotype], float]:
    """``score(genotype)``, higher is better, for a warm start with ``proxy``."""
    if proxy == TABLE_PROXY:
        record = getattr(evaluator, "record", None)
        if record is None or not hasattr(evaluator, "table"):
            raise NasError(f"--warm-start {TABLE_PROXY} reads the NAS-Bench-201 table: use it with --evaluator nb201, "
                           "or rank by a proxy this search computes (naswot, synflow, ...)")
        return lambda genotype: record(genotype).jacov
    from nas.evaluators.zero_cost import PROXIES, ZeroCostEvaluator

    if proxy not in PROXIES:
        raise NasError(f"unknown --warm-start proxy {proxy!r}; choose one of {', '.join([*PROXIES, TABLE_PROXY])}")
    if isinstance(evaluator, ZeroCostEvaluator) and data is None:
        scorer = evaluator
    else:
        scorer = ZeroCostEvaluator(proxy=proxy, **({"data": data} if data is not None else {}))
    return lambda genotype: scorer.score(genotype, proxy)


def warm_start(space: SearchSpace | str, score: Callable[[Genotype], float], *, proxy: str, sample: int, top: int,
               seed: int, distinct: str = "function") -> WarmStart:
    """The ``top`` best of ``sample`` random cells (distinct under ``distinct``, seeded) by ``score``."""
    space = load_space(space)
    key = cell_key(distinct if distinct != "off" else "same")
    rng = random.Random(f"warm-start {seed}")
    cells: dict[str, Genotype] = {}
    for _ in range(sample * 20):  # a small space may hold fewer distinct cells than asked
        if len(cells) >= sample:
            break
        genotype = random_genotype(space, rng)
        cells.setdefault(key(genotype), genotype)
    started = time.perf_counter()
    scored = []
    for genotype in cells.values():
        value = float(score(genotype))
        scored.append((value if not math.isnan(value) else -math.inf, genotype))
    seconds = time.perf_counter() - started
    scored.sort(key=lambda item: -item[0])  # stable: ties keep the draw's order
    best = scored[:top]
    return WarmStart(proxy, sample, top, [g for _, g in best], [s for s, _ in best], len(scored), seconds)
