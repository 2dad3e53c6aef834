"""``nas search --strategy random|tpe|evolution|nsga2``: black-box search from the command line.

The options of this group pick the evaluator (short training, or the NAS-Bench-201 tables),
the budget, the study storage and the sampler settings; ``--backend ray`` hands the same search
to Ray Tune (:mod:`nas.strategies.blackbox.ray_tune`, which adds its own option group).
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from nas.errors import NasError
from nas.evaluators import EVALUATORS, Evaluator, evaluator_from_config
from nas.run import Run
from nas.space import SearchSpace, load_space

DEFAULT_TRIALS = 50
DEFAULT_EPOCHS_PER_TRIAL = 3
BACKENDS = ("optuna", "ray")
# training settings with an option of their own (or none at all), refused in --trial-setting
OWN_OPTIONS = {"epochs": "use --epochs-per-trial", "batch_size": "use --trial-batch-size",
               "init_channels": "use --trial-init-channels", "layers": "use --trial-layers",
               "device": "use --device", "seed": "use --seed", "export_formats": "trials export nothing"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "black-box search (--strategy random, tpe, evolution, nsga2)",
        "each trial samples one genotype and scores it by a short training run (--evaluator train), a "
        "NAS-Bench-201 table lookup (--evaluator nb201) or a short detection / segmentation training run with "
        "the genotype as backbone (--evaluator detection|segmentation); the study is stored in "
        "<run>/study.db unless --storage says otherwise")
    group.add_argument("--trials", type=int, default=None,
                       help=f"trials to evaluate (default {DEFAULT_TRIALS}; with --resume: the total, default as before)")
    group.add_argument("--evaluator", choices=EVALUATORS, default="train",
                       help="train: train each genotype briefly on --dataset and select on a held-out 20%% of its "
                       "training images (default); nb201: look the cell up in the NAS-Bench-201 tables (space "
                       "nb201; a search takes seconds); detection / segmentation: train a detector (objective "
                       "map) or segmenter (miou) on the genotype backbone, on generated shapes unless --dataset "
                       "coco / voc")
    group.add_argument("--nb201-root", metavar="DIR",
                       help="folder with the NAS-Bench-201 CSV tables (default ../shared/data/nas-bench-201 "
                       "when present)")
    group.add_argument("--nb201-dataset", default="cifar10", choices=("cifar10", "cifar100", "imagenet16-120"),
                       help="which of the benchmark's data sets the table answers for (default cifar10)")
    group.add_argument("--epochs-per-trial", type=int, default=None,
                       help=f"training epochs per trial (default {DEFAULT_EPOCHS_PER_TRIAL})")
    group.add_argument("--trial-batch-size", type=int, help="training batch size per trial (default: the data set's recipe)")
    group.add_argument("--trial-init-channels", type=int, help="initial channels of trial networks (default: the recipe's)")
    group.add_argument("--trial-layers", type=int, help="cells of trial networks (default: the recipe's)")
    group.add_argument("--trial-setting", action="append", default=[], metavar="NAME=VALUE",
                       help="any other training setting of every trial, repeatable: a `nas train` option for "
                       "--evaluator train (lr=0.1, train_subset=500, val_fraction=0.1), a `nas detect` / `nas "
                       "segment` option for detection / segmentation (image_size=64, train_images=120)")
    group.add_argument("--task-head", metavar="NAME",
                       help="detection: fasterrcnn, retinanet or fcos (default fcos); segmentation: fcn, deeplabv3 "
                       "or unet (default unet)")
    group.add_argument("--ann", help="detection on --dataset coco: the annotation JSON (images in --data-root)")
    group.add_argument("--images", help="segmentation on --dataset voc: folder of images")
    group.add_argument("--masks", help="segmentation on --dataset voc: folder of PNG class-id masks")
    group.add_argument("--num-classes", type=int, help="segmentation on --dataset voc: classes incl. background")
    group.add_argument("--objectives", metavar="METRICS",
                       help="comma-separated metrics; several make a multi-objective search that maximises the "
                       "first (val_acc; map / miou for detection / segmentation) and minimises params, macs or "
                       "latency_ms (nsga2 default: the evaluator's objective and params)")
    group.add_argument("--storage", metavar="URL",
                       help="study database URL (default sqlite:///<run>/study.db; 'memory': no file, no resume); "
                       "processes given the same URL and --study-name search one study together")
    group.add_argument("--study-name", help="study name inside the storage (default <strategy>-<space>)")
    group.add_argument("--pruner", choices=("none", "sha", "hyperband"), default="none",
                       help="stop poor trials early on their per-epoch val_acc: successive halving or Hyperband "
                       "(default none; one objective only)")
    group.add_argument("--population", type=int,
                       help="evolution: population P (default 20); nsga2: population per generation (default 20)")
    group.add_argument("--sample-size", type=int, help="evolution: tournament size S (default 5)")
    group.add_argument("--enqueue", nargs="+", metavar="GENOTYPE", default=[],
                       help="reference names, genotype.json files or NAS-Bench-201 arch strings to evaluate first")
    group.add_argument("--backend", choices=BACKENDS, default="optuna",
                       help="optuna: trials run in this process (default); ray: trials run as Ray Tune trials")
    try:
        from nas.strategies.blackbox import ray_tune
    except ImportError:
        pass  # the Ray backend is optional
    else:
        ray_tune.add_arguments(parser)


def space_and_evaluator(args: argparse.Namespace) -> tuple[SearchSpace, Evaluator]:
    """The space and evaluator that ``nas search`` options (or the resumed run's config) describe."""
    if args.resume:
        from nas.strategies.blackbox.optuna_search import load_space_definition

        config = Run.open(args.resume).config
        if "evaluator" not in config:
            raise NasError(f"{args.resume} is not a black-box search run (its config names no evaluator)")
        overrides = {"device": args.device} if config["evaluator"].get("name") == "train" else {}
        return load_space_definition(config), evaluator_from_config(config["evaluator"], **overrides)
    space = load_space(args.space)
    measure_latency = "latency_ms" in (args.objectives or "")
    if args.evaluator in ("detection", "segmentation"):
        from nas.evaluators import create_evaluator
        from nas.train import TrainConfig

        dataset = "shapes" if args.dataset == "digits" else args.dataset  # digits: the search's default
        return space, create_evaluator(
            args.evaluator, head=args.task_head, space=space, dataset=dataset, data_root=args.data_root,
            ann=args.ann, images=args.images, masks=args.masks, num_classes=args.num_classes,
            epochs=args.epochs_per_trial or DEFAULT_EPOCHS_PER_TRIAL, batch_size=args.trial_batch_size,
            init_channels=args.trial_init_channels, device=args.device, seed=args.seed,
            measure_latency=measure_latency, **parse_settings(args.trial_setting, TrainConfig))
    if args.task_head is not None:
        raise NasError("--task-head applies to --evaluator detection or segmentation")
    if args.evaluator == "nb201":
        from nas.evaluators.nb201_table import NB201TableEvaluator

        if args.trial_setting:
            raise NasError("--trial-setting applies to trials that train; the nb201 evaluator looks them up")
        if space.name != "nb201":
            raise NasError(f"--evaluator nb201 scores cells of the nb201 space, not {space.name!r}; add --space nb201")
        return space, NB201TableEvaluator(args.nb201_root, dataset=args.nb201_dataset)
    from nas.evaluators.training import TrainingEvaluator
    from nas.train import TrainConfig

    return space, TrainingEvaluator(
        args.dataset, space=space, data_root=args.data_root,
        epochs=args.epochs_per_trial or DEFAULT_EPOCHS_PER_TRIAL, batch_size=args.trial_batch_size,
        init_channels=args.trial_init_channels, layers=args.trial_layers, device=args.device, seed=args.seed,
        measure_latency=measure_latency, **parse_settings(args.trial_setting, TrainConfig))


def parse_settings(items: list[str], config_class: type) -> dict[str, Any]:
    """``["lr=0.1", "augment=false"]`` -> ``{"lr": 0.1, "augment": False}``, each value read as the
    type of that field of the ``config_class`` dataclass; unknown names and bad values raise
    :class:`NasError` naming them."""
    fields = {f.name: str(f.type) for f in dataclasses.fields(config_class)}
    settings: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not name:
            raise NasError(f"--trial-setting {item!r} is not NAME=VALUE (for example lr=0.1)")
        if name in OWN_OPTIONS:
            raise NasError(f"--trial-setting {name}: {OWN_OPTIONS[name]}")
        if name not in fields:
            known = sorted(set(fields) - set(OWN_OPTIONS))
            raise NasError(f"--trial-setting: unknown setting {name!r}; known: {', '.join(known)}")
        kind, text = fields[name], text.strip()
        try:
            if text.lower() == "none" and "None" in kind:
                value: Any = None
            elif kind.startswith("bool"):
                if text.lower() not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
                    raise ValueError(text)
                value = text.lower() in ("true", "1", "yes", "on")
            elif kind.startswith("int"):
                value = int(text)
            elif kind.startswith("float"):
                value = float(text)
            elif kind.startswith("tuple"):
                value = tuple(part.strip() for part in text.split(",") if part.strip())
            else:
                value = text
        except ValueError:
            raise NasError(f"--trial-setting {name}={text!r}: expected {kind}") from None
        settings[name] = value
    return settings


def _resolve_trials(args: argparse.Namespace) -> int:
    if args.trials is not None:
        return args.trials
    if args.resume:
        return int(Run.open(args.resume).config.get("trials") or DEFAULT_TRIALS)
    return DEFAULT_TRIALS


def run_from_args(args: argparse.Namespace) -> int:
    args.trials = _resolve_trials(args)
    if args.backend == "ray":
        try:
            from nas.strategies.blackbox import ray_tune
        except ImportError as exc:
            raise NasError(f"the Ray backend is not available ({exc}); install ray[tune] or use --backend optuna") \
                from None
        return int(ray_tune.run_from_args(args) or 0)
    from nas.strategies.blackbox.optuna_search import search_blackbox

    space, evaluator = space_and_evaluator(args)
    if args.resume:
        config = Run.open(args.resume).config
        if config.get("backend", "optuna") != "optuna":
            raise NasError(f"run {args.resume} is a {config['backend']} search; resume it with --backend "
                           f"{config['backend']}")
        search_blackbox(space, evaluator, strategy=config["strategy"], trials=args.trials, resume=Path(args.resume))
        return 0
    search_blackbox(space, evaluator, strategy=args.strategy, trials=args.trials, out=args.out, seed=args.seed,
                    storage=args.storage, study_name=args.study_name, objectives=args.objectives,
                    enqueue=args.enqueue, pruner=args.pruner, population=args.population,
                    sample_size=args.sample_size)
    return 0
