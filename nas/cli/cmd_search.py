"""``nas search``: one command for every registered strategy (:mod:`nas.strategies`).

The common options and the evaluator's live here; every strategy's ``Settings`` dataclass gives
its own option group (:func:`nas.cli.options.add_settings`), so a strategy registered anywhere
appears here without an edit. The evaluator options become a plain evaluator config for
:func:`nas.evaluators.evaluator_from_config`. Module level imports stay light (no torch,
Optuna or Ray): ``nas search --help`` answers at once.
"""
from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from nas.cli.options import (
    add_overwrite,
    add_settings,
    apply,
    destination,
    number,
    seed,
    setting_type,
)
from nas.config import field_type, parse_value
from nas.errors import NasError
from nas.strategies import SearchData, get_strategy, registered_strategies
from nas.train.config import TrainConfig

ORDER = 20
DEFAULT_STRATEGY = "darts"
EPOCHS_PER_TRIAL = 3
TASK_EVALUATORS = ("detection", "segmentation")
# the training evaluator's own default; a config without it is read as 0 (runs from before hold-outs)
TRAIN_VAL_FRACTION = 0.2
DEFAULT_EVALUATOR = "train"
# the evaluator options that set a trial's training (each checked as its TrainConfig field)
TRIAL_OPTIONS = ("epochs_per_trial", "trial_batch_size", "trial_init_channels", "trial_layers")
# every option of the evaluator group (unset: None, or [] for --trial-setting)
EVALUATOR_OPTIONS = ("evaluator", "nb201_root", "nb201_dataset", *TRIAL_OPTIONS, "trial_setting", "task_head", "ann",
                     "images", "masks", "num_classes", "zc_proxy", "zc_data", "zc_batch_size")
ZC_OPTIONS = ("zc_proxy", "zc_data", "zc_batch_size")
# --dataset values that name the zero-cost batch's normalisation (digits, the search's default, leaves it to the data)
ZC_DATASETS = ("cifar10", "cifar100", "imagefolder")
# the options of every search; the strategies' settings get options under the other names
COMMON_OPTIONS = ("strategy", "space", "dataset", "data_root", "seed", "out", "overwrite", "resume", "device",
                  *EVALUATOR_OPTIONS)
# training settings with an option of their own (or none at all), refused in --trial-setting
OWN_OPTIONS = {"epochs": "use --epochs-per-trial", "batch_size": "use --trial-batch-size",
               "init_channels": "use --trial-init-channels", "layers": "use --trial-layers",
               "device": "use --device", "seed": "use --seed", "export_formats": "trials export nothing"}


def register(sub: argparse._SubParsersAction) -> None:
    strategies = registered_strategies()
    p = sub.add_parser("search", help="search a space for an architecture",
                       usage="nas search [--strategy NAME] [--space SPACE] [--out RUN | --resume RUN] [options]",
                       description="Search a space with a one-shot strategy (DARTS: a supernet trained by "
                       "gradient) or a black-box one (Optuna samplers, optionally as Ray Tune trials). The run "
                       "folder receives the config, metrics, the found genotype.json (with the space's "
                       "definition when the space is your own file) and plots; `nas train --genotype RUN` trains "
                       "what was found. Each strategy's options are in its own group below.")
    p.add_argument("--strategy", choices=sorted(strategies),
                   help=f"search strategy (default {DEFAULT_STRATEGY}; with --resume, the run's own)")
    p.add_argument("--space", help="space name or .yaml file (default darts; nb201 with --evaluator nb201)")
    p.add_argument("--dataset", default="digits", help="data set: digits (embedded, default), cifar10, cifar100, "
                   "imagefolder; with --evaluator detection / segmentation: shapes (embedded, default), coco, voc")
    p.add_argument("--data-root", help="folder (or zip) of the data set; not needed for digits")
    p.add_argument("--seed", type=seed, default=0, help="random seed (default 0)")
    p.add_argument("--out", help="run folder to create (default runs/<strategy>-<space>-<time>)")
    add_overwrite(p)
    p.add_argument("--resume", metavar="RUN", help="continue the run in this folder with its own strategy, "
                   "backend and settings")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto: cuda when present)")
    _add_evaluator_options(p)
    taken = {*COMMON_OPTIONS, "help"}
    groups: dict[type, list[str]] = {}
    for name, cls in strategies.items():
        groups.setdefault(cls.Settings, []).append(name)
    # the default (one-shot) strategy's options first, then the others in registration order
    for settings, names in sorted(groups.items(), key=lambda item: strategies[item[1][0]].kind != "oneshot"):
        first = strategies[names[0]]
        kind = "one-shot" if first.kind == "oneshot" else "black-box"
        group = p.add_argument_group(f"{kind} search (--strategy {', '.join(names)})", first.description or None)
        taken.update(add_settings(group, settings, exclude=taken))
    p.set_defaults(func=cmd_search)


def _add_evaluator_options(p: argparse.ArgumentParser) -> list[argparse.Action]:
    g = p.add_argument_group(
        "evaluator of black-box strategies",
        "each trial scores one genotype by a short training run (--evaluator train), a NAS-Bench-201 table lookup "
        "(--evaluator nb201), zero-cost proxies of the untrained network (--evaluator zc) or a short detection / "
        "segmentation training run with the genotype as backbone (--evaluator detection|segmentation)")
    return [
        g.add_argument("--evaluator",
                       help="train (default): train each genotype briefly on --dataset and select on a held-out 20%% of its "
                       "training images; nb201: look the cell up in the NAS-Bench-201 tables (space "
                       "nb201; a search takes seconds); zc: score the untrained network by a zero-cost proxy on "
                       "one mini-batch (about a second per trial); detection / segmentation: train a detector "
                       "(objective map) or segmenter (miou) on the genotype backbone, on generated shapes unless "
                       "--dataset coco / voc"),
        g.add_argument("--nb201-root", metavar="DIR", help="folder with the NAS-Bench-201 CSV tables (default "
                       "../shared/data/nas-bench-201 when present)"),
        g.add_argument("--nb201-dataset", choices=("cifar10", "cifar100", "imagenet16-120"),
                       help="nb201: which of the benchmark's data sets the table answers for (default cifar10)"),
        g.add_argument("--zc-proxy", metavar="NAME[,NAME...]",
                       help="zc: the proxy to maximise, or several (each is recorded; the first is the objective): "
                       "naswot (default), synflow, snip, grad_norm, jacov, params"),
        g.add_argument("--zc-data", metavar="PATH", help="zc: folder or zip of <class>/<image> folders (optionally "
                       "in train/) to draw the mini-batch from (default ../shared/data/cifar10-jpeg when present); "
                       "--dataset cifar10|cifar100|imagefolder picks its normalisation (default: CIFAR-10's for "
                       "CIFAR-10's classes, else the images' own statistics)"),
        g.add_argument("--zc-batch-size", type=number(int, min=2, max=4096), metavar="N",
                       help="zc: images in the mini-batch, drawn once with --seed (default 64)"),
        g.add_argument("--epochs-per-trial", type=setting_type(TrainConfig, "epochs"),
                       help=f"train / detection / segmentation: training epochs per trial (default "
                       f"{EPOCHS_PER_TRIAL})"),
        g.add_argument("--trial-batch-size", type=setting_type(TrainConfig, "batch_size"),
                       help="training batch size per trial (default: the recipe's)"),
        g.add_argument("--trial-init-channels", type=setting_type(TrainConfig, "init_channels"),
                       help="initial channels of trial networks (default: the recipe's)"),
        g.add_argument("--trial-layers", type=setting_type(TrainConfig, "layers"),
                       help="cells of trial networks (default: the recipe's)"),
        g.add_argument("--trial-setting", action="append", default=[], metavar="NAME=VALUE",
                       help="any other training setting of every trial, repeatable: a `nas train` option for "
                       "--evaluator train (lr=0.1, train_subset=500, val_fraction=0.1), a `nas detect` / `nas "
                       "segment` option for detection / segmentation (image_size=64, train_images=120)"),
        g.add_argument("--task-head", metavar="NAME", help="detection: fasterrcnn, retinanet or fcos (default fcos); "
                       "segmentation: fcn, deeplabv3 or unet (default unet)"),
        g.add_argument("--ann", help="detection on --dataset coco: the annotation JSON (images in --data-root)"),
        g.add_argument("--images", help="segmentation on --dataset voc: folder of images"),
        g.add_argument("--masks", help="segmentation on --dataset voc: folder of PNG class-id masks"),
        g.add_argument("--num-classes", type=number(int, min=2),
                       help="segmentation on --dataset voc: classes incl. background"),
    ]


def cmd_search(args: argparse.Namespace) -> int:
    from nas.evaluators import evaluator_from_config
    from nas.run import Run, resolve_device
    from nas.space import load_space

    if args.resume and (args.out or args.overwrite):
        raise NasError(f"--resume continues the run in its own folder; drop {'--out' if args.out else '--overwrite'}")
    resolve_device(args.device)  # a device that does not exist here fails before anything is made
    saved = None
    if args.resume:
        kinds = [k for name in registered_strategies() for k in (name, f"ray-{name}")]
        saved = Run.open(args.resume, kinds=kinds, what="a `nas search` run; pass a folder that nas search "
                         "made (a `nas train`, `detect` or `segment` run resumes with its own command)").config
    name = args.strategy or (saved.get("strategy") if saved is not None else DEFAULT_STRATEGY)
    if name not in registered_strategies():
        raise NasError(f"{args.resume} was not made by nas search (no known strategy in its config.json); "
                       "pass --strategy")
    strategy = get_strategy(name)
    refuse_ignored_options(args, strategy)
    if _launched_world() > 1 and strategy.kind != "oneshot":
        raise NasError(f"torchrun runs the one-shot strategies (darts, gdas) on several processes; --strategy "
                       f"{name} runs its trials in parallel itself (--backend ray): start it without torchrun")
    settings = apply(strategy.Settings(), args)
    with destination(args.out, args.overwrite):  # checked before an evaluator opens any data
        space = evaluator = None
        if saved is None:
            space = load_space(args.space or ("nb201" if args.evaluator == "nb201" else "darts"))
            if strategy.kind == "blackbox":
                evaluator = evaluator_from_config(evaluator_config(args, space, settings))
        elif strategy.kind == "blackbox" and "evaluator" in saved:
            # the run's own evaluator, on this machine's device
            device = {"device": args.device} if "device" in saved["evaluator"] else {}
            evaluator = evaluator_from_config(saved["evaluator"], **device)
        result = strategy.search(space, settings, evaluator=evaluator,
                                 data=SearchData(args.dataset, args.data_root, args.device), out=args.out,
                                 resume=args.resume, seed=args.seed, progress=True)
    if result.genotype is not None and getattr(result, "rank", 0) == 0:
        print(f"next: nas train --genotype {result.path}", flush=True)
    return 0


def _launched_world() -> int:
    from nas.strategies.oneshot.distributed import launched_world

    return launched_world()


def refuse_ignored_options(args: argparse.Namespace, strategy: Any) -> None:
    """Raise :class:`NasError` for an option the search would ignore: a setting of other
    strategies only, or an evaluator option with a strategy that scores no trials."""
    own = {f.name for f in dataclasses.fields(strategy.Settings)}
    for cls in registered_strategies().values():
        for f in dataclasses.fields(cls.Settings):
            if f.name not in own and f.name not in COMMON_OPTIONS and getattr(args, f.name, None) is not None:
                names = [n for n, c in registered_strategies().items()
                         if f.name in {g.name for g in dataclasses.fields(c.Settings)}]
                raise NasError(f"--{f.name.replace('_', '-')} is a setting of --strategy {', '.join(names)}, not "
                               f"{strategy.name}; add --strategy {names[0]} or drop it")
    given = [option for option in EVALUATOR_OPTIONS if getattr(args, option, None) not in (None, [])]
    if given and strategy.kind != "blackbox":
        raise NasError(f"--{given[0].replace('_', '-')}: --strategy {strategy.name} scores no trials (the evaluator "
                       "belongs to the black-box strategies); drop it")


def evaluator_config(args: argparse.Namespace, space: Any, settings: Any) -> dict[str, Any]:
    """The evaluator config (``{"name": NAME, **settings}``) that the evaluator options describe."""
    from nas.evaluators import EVALUATORS

    name = DEFAULT_EVALUATOR if args.evaluator is None else args.evaluator
    if name not in EVALUATORS:
        raise NasError(f"--evaluator {name}: unknown evaluator; choose from {', '.join(sorted(EVALUATORS))}")
    if name != "zc":
        given = [option for option in ZC_OPTIONS if getattr(args, option, None) is not None]
        if given:
            raise NasError(f"--{given[0].replace('_', '-')} applies to --evaluator zc")
    if name == "zc":
        return zero_cost_config(args, space)
    trial = trial_settings(args.trial_setting, name)
    if name == "nb201":
        if args.trial_setting:
            raise NasError("--trial-setting applies to trials that train; the nb201 evaluator looks them up")
        given = [option for option in TRIAL_OPTIONS if getattr(args, option) is not None]
        if given:
            raise NasError(f"--{given[0].replace('_', '-')} applies to trials that train; the nb201 evaluator "
                           "looks them up")
        if space.name != "nb201":
            raise NasError(f"--evaluator nb201 scores cells of the nb201 space, not {space.name!r}; add --space nb201")
        dataset = "cifar10" if args.nb201_dataset is None else args.nb201_dataset
        return {"name": name, "root": args.nb201_root, "dataset": dataset}
    if args.task_head is not None and name not in TASK_EVALUATORS:
        raise NasError("--task-head applies to --evaluator detection or segmentation")
    common = {"space": space.to_dict(), "data_root": args.data_root,
              "epochs": EPOCHS_PER_TRIAL if args.epochs_per_trial is None else args.epochs_per_trial,
              "batch_size": args.trial_batch_size,
              "init_channels": args.trial_init_channels, "device": args.device, "seed": args.seed,
              "measure_latency": "latency_ms" in (getattr(settings, "objectives", None) or ())}
    if name in TASK_EVALUATORS:
        config = {"name": name, "head": args.task_head, **common,
                  "dataset": "shapes" if args.dataset == "digits" else args.dataset,  # digits: the search's default
                  "ann": args.ann, "images": args.images, "masks": args.masks, "num_classes": args.num_classes}
    elif name == "train":
        config = {"name": name, **common, "dataset": args.dataset, "layers": args.trial_layers,
                  "val_fraction": TRAIN_VAL_FRACTION}
    else:
        config = {"name": name}
    return {k: v for k, v in {**config, **trial}.items() if v is not None}


def zero_cost_config(args: argparse.Namespace, space: Any) -> dict[str, Any]:
    """The ``zc`` evaluator's config: the proxies, data, batch size, and the search's seed and device."""
    from nas.evaluators.zero_cost import check_proxies

    given = [option for option in (*TRIAL_OPTIONS, "nb201_root", "nb201_dataset", "task_head")
             if getattr(args, option) is not None]
    if args.trial_setting or given:
        option = "trial-setting" if args.trial_setting else given[0].replace("_", "-")
        raise NasError(f"--{option} does not apply to the zc evaluator, which trains nothing and reads no table")
    if args.dataset not in ("digits", *ZC_DATASETS):
        raise NasError(f"--dataset {args.dataset}: the zc evaluator reads the images of --zc-data; --dataset only "
                       f"picks their normalisation: {', '.join(ZC_DATASETS)}")
    try:
        proxies = check_proxies("naswot" if args.zc_proxy is None else args.zc_proxy)
    except NasError as exc:
        raise NasError(f"--zc-proxy {args.zc_proxy}: {exc}") from None
    config = {"name": "zc", "proxy": list(proxies), "data": args.zc_data,
              "dataset": args.dataset if args.dataset in ZC_DATASETS else None, "batch_size": args.zc_batch_size,
              "seed": args.seed, "device": args.device, "space": space.to_dict()}
    return {k: v for k, v in config.items() if v is not None}


def trial_settings_class(evaluator: str) -> type | None:
    """The settings dataclass whose fields ``--trial-setting`` sets for ``evaluator`` (the
    registered evaluator's ``trial_settings``; None for an evaluator that does not train)."""
    from nas.evaluators import EVALUATORS

    cls = EVALUATORS[evaluator][0] if evaluator in EVALUATORS else None
    return getattr(cls, "trial_settings", None)


def trial_settings(items: list[str], evaluator: str) -> dict[str, Any]:
    """``["lr=0.1", "augment=false"]`` -> ``{"lr": 0.1, "augment": False}``, each value parsed as its
    field of the evaluator's settings class; unknown names and bad values raise :class:`NasError`."""
    if not items:
        return {}
    cls = trial_settings_class(evaluator)
    if cls is None:
        raise NasError(f"--trial-setting applies to the evaluators that train (train, detection, segmentation), "
                       f"not {evaluator!r}")
    known = {f.name for f in dataclasses.fields(cls)} - set(OWN_OPTIONS)
    settings: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not name:
            raise NasError(f"--trial-setting {item!r} is not NAME=VALUE (for example lr=0.1)")
        if name in OWN_OPTIONS:
            raise NasError(f"--trial-setting {name}: {OWN_OPTIONS[name]}")
        if name not in known:
            raise NasError(f"--trial-setting: unknown setting {name!r}; known: {', '.join(sorted(known))}")
        try:
            settings[name] = parse_value(cls, name, text)
        except NasError as exc:
            kind = field_type(cls, name)[0].__name__
            raise NasError(f"--trial-setting {name}={text.strip()!r}: expected {kind} ({exc})") from None
    return settings
