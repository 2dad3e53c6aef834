"""Settings of the black-box strategies (random, tpe, evolution, nsga2), for both backends:
Optuna in this process, or Ray Tune trials. Imports nothing heavy, so ``nas search --help`` stays fast."""
from __future__ import annotations

from dataclasses import dataclass

from nas.config import setting
from nas.errors import NasError

DEFAULT_TRIALS = 50
BUDGET_TRIALS = 100_000  # the trial cap of a search that --budget-epochs ends
DEFAULT_POPULATION = 20  # evolution's P and NSGA-II's population when --population is unset
BACKENDS = ("optuna", "ray")
PRUNERS = ("none", "sha", "hyperband")
SCHEDULERS = ("auto", "asha", "hyperband", "none")
RAY_SEARCHES = ("optuna", "basic")
DISTINCT = ("function", "same", "off")
DEFAULT_DISTINCT = "function"
WARM_SAMPLE = 1000
WARM_TOP = 10  # cells a warm start evaluates first, unless evolution's population says otherwise


@dataclass(frozen=True)
class BlackboxSettings:
    """How a black-box search runs; unset (``None``) values take the defaults named in their help."""

    trials: int | None = setting(None, f"trials to evaluate (default {DEFAULT_TRIALS}; with --budget-epochs: as many as the budget allows); with --resume: the total, "
                                 "counting the trials already finished (default: the run's own)", min=1)
    objectives: tuple[str, ...] | None = setting(
        None, "comma-separated metrics; several make a multi-objective search that maximises the first (val_acc; "
        "map / miou for detection / segmentation) and minimises params, macs or latency_ms (default: the "
        "evaluator's objective; nsga2 adds params)", metavar="METRICS")
    enqueue: tuple[str, ...] = setting((), "comma-separated reference names, genotype.json files or NAS-Bench-201 "
                                       "arch strings to evaluate first", metavar="GENOTYPES")
    population: int | None = setting(None, "evolution: population size P; nsga2: population per generation "
                                     "(default 20 for both)", min=2)
    sample_size: int | None = setting(None, "evolution: tournament size S (default 5, at most the population)", min=1)
    distinct: str = setting(DEFAULT_DISTINCT, "skip proposals whose cell is already evaluated, so --trials counts "
                            "evaluations actually made: function: the same function (NAS-Bench-201: after dropping "
                            "dead edges, isomorphic cells too); same: the same genotype; off: evaluate repeats "
                            "(--ray-search basic: always off)", choices=DISTINCT)
    warm_start: str | None = setting(None, "rank --warm-sample random cells by this zero-cost proxy and evaluate the "
                                     "best --warm-top first (evolution: as its first population; local: climbing from "
                                     "the best); the proxy's cost is reported apart from --trials: naswot, synflow, "
                                     "snip, grad_norm, jacov, params (computed on the images of --warm-data), or "
                                     "nb201-jacov (the Jacobian covariance scores published with the NAS-Bench-201 CIFAR-10 table)",
                                     metavar="PROXY")
    warm_sample: int = setting(WARM_SAMPLE, "warm start: random distinct cells to rank by the proxy", min=1)
    warm_data: str | None = setting(None, "warm start: image folder or zip a computed proxy scores cells on (default "
                                    "../shared/data/cifar10-jpeg)", metavar="PATH")
    warm_top: int | None = setting(None, "warm start: best-ranked cells to evaluate first (default: evolution's "
                                   f"population, else {WARM_TOP})", min=1)
    budget_epochs: int | None = setting(None, "stop the search once its trials have trained this many epochs in all "
                                        "(pruned trials count the epochs they ran): the budget of a multi-fidelity "
                                        "search with --pruner sha|hyperband (with --strategy tpe: BOHB-style)", min=1)
    backend: str = setting("optuna", "optuna: trials run in this process; ray: trials run as Ray Tune trials",
                           choices=BACKENDS)
    # backend optuna
    storage: str | None = setting(None, "backend optuna: study database URL (default sqlite:///<run>/study.db; "
                                  "'memory': no file, no resume); processes given the same URL and --study-name "
                                  "search one study together", metavar="URL")
    study_name: str | None = setting(None, "backend optuna: study name inside the storage (default "
                                     "<strategy>-<space>)")
    pruner: str = setting("none", "backend optuna: stop poor trials early on their per-epoch objective: "
                          "successive halving or Hyperband (one objective only)", choices=PRUNERS)
    # backend ray
    ray_address: str | None = setting(None, "backend ray: Ray cluster to attach to (auto, host:6379 or "
                                      "ray://host:10001; default $RAY_ADDRESS; none: start a local Ray)")
    ray_search: str = setting("optuna", "backend ray: optuna: the strategy's Optuna sampler inside Tune's "
                              "OptunaSearch; basic: Tune's own random search over tune.choice per decision "
                              "(with --strategy random only)", choices=RAY_SEARCHES)
    cpus_per_trial: float = setting(1.0, "backend ray: CPUs per trial", min=0, min_open=True)
    gpus_per_trial: float | None = setting(None, "backend ray: GPUs per trial, fractions allowed (0.5: two trials "
                                           "share a GPU); default 1 when the cluster has GPUs, else 0", min=0)
    max_concurrent: int | None = setting(None, "backend ray: at most this many trials at once (default: as many "
                                         "as the resources allow)", min=1)
    scheduler: str = setting("auto", "backend ray: early stopping on the per-epoch objective: asha, "
                             "hyperband (asynchronous, 3 brackets) or none (auto: asha for evaluators that report per "
                             "epoch, none for the others); always off with several objectives", choices=SCHEDULERS)
    grace_period: int = setting(1, "backend ray: epochs every trial trains before it may be stopped", min=1)
    reduction_factor: float = setting(2.0, "backend ray: keep the best 1/F of trials at each rung", min=1,
                                      min_open=True)
    dashboard_host: str = setting("127.0.0.1", "backend ray: interface of a local Ray's dashboard (127.0.0.1: "
                                  "this machine only)")
    dashboard_port: int | None = setting(None, "backend ray: port of a local Ray's dashboard (default 8265)",
                                         min=0)
    ray_job: bool = setting(True, "backend ray: run the search's driver as a Ray job named after the run folder, "
                            "its output on the dashboard's Jobs page (off: in this process; a Python search with "
                            "an evaluator a job cannot rebuild always runs in its process)")
    reuse_actors: bool = setting(False, "backend ray: run trials one after another in the same actors (faster for "
                                 "trials of seconds, such as table lookups; off: an actor per trial, whose log on the "
                                 "dashboard holds that trial's lines only)")
    keep_ray: bool = setting(False, "backend ray: keep a Ray that the search started (and its dashboard) up after "
                             "the search, until Ctrl-C")

    def check_together(self) -> None:
        """The checks that involve several fields (:func:`nas.config.check` calls it)."""
        population = DEFAULT_POPULATION if self.population is None else self.population
        if self.warm_top is not None and self.warm_start is None:
            raise NasError("--warm-top belongs to a warm start; add --warm-start PROXY or drop it")
        if self.warm_data is not None and self.warm_start is None:
            raise NasError("--warm-data belongs to a warm start; add --warm-start PROXY or drop it")
        top = self.warm_top or WARM_TOP
        if self.warm_start is not None and top > self.warm_sample:
            raise NasError(f"--warm-top {top} is more than the {self.warm_sample} cells --warm-sample ranks; "
                           "choose a larger --warm-sample or a smaller --warm-top")
        if self.sample_size is not None and self.sample_size > population:
            raise NasError(f"--sample-size {self.sample_size} is larger than the population ({population}"
                           f"{'' if self.population is not None else ', the default'}): a tournament draws from "
                           "the population; choose at most that many, or a larger --population")
