"""``nas detect`` and ``nas segment``: train a detector or segmenter on a genotype backbone."""
from __future__ import annotations

import argparse

ORDER = 35

# TaskConfig field -> (type, help); an unset option (None) keeps the default of TaskConfig
TASK_OPTIONS: dict[str, tuple[type, str]] = {
    "epochs": (int, "training epochs (default 3)"),
    "batch_size": (int, "images per step (default 8)"),
    "lr": (float, "peak AdamW learning rate after the warm-up (default 0.002)"),
    "weight_decay": (float, "AdamW weight decay (default 1e-4)"),
    "warmup_steps": (int, "steps of linear learning-rate warm-up (default 20)"),
    "grad_clip": (float, "maximum gradient norm, 0 for none (default 10)"),
    "image_size": (int, "image side in pixels, a multiple of 32 (default 96)"),
    "train_images": (int, "shapes scenes to train on (default 240)"),
    "val_images": (int, "shapes scenes to evaluate on (default 48)"),
    "val_fraction": (float, "coco / voc: share of the images held out for evaluation (default 0.2)"),
    "num_workers": (int, "DataLoader worker processes (default 0)"),
    "max_train_batches": (int, "end every epoch after this many batches (smoke tests only)"),
    "export_formats": (str, "formats exported into the run folder at the end, comma-separated: source, torchscript "
                            "(+ pt2, onnx for segment), or none (default source,torchscript)"),
}


def _common(p: argparse.ArgumentParser, *, what: str) -> None:
    p.add_argument("--genotype", help="backbone genotype: a reference name (DARTS_V2, MOBILENETV2, ...), a "
                   "genotype.json or a search run folder; not needed with --resume, --backbone or --init-from")
    p.add_argument("--backbone", help="a torchvision baseline backbone instead of a genotype: resnet18 or "
                   "mobilenet_v3_large (random weights)")
    p.add_argument("--space", help="space name or .yaml file (default: the genotype's own space)")
    p.add_argument("--init-channels", type=int, help="initial channels of a cell backbone (default 8, or the "
                   "--init-from run's)")
    p.add_argument("--cells-per-stage", type=int, default=1, help="normal cells per resolution (default 1)")
    p.add_argument("--init-from", metavar="RUN", help="a `nas train` run (or checkpoint) of the same genotype whose "
                   "cells initialise the backbone")
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument("--device", help="auto, cpu or cuda (default auto: cuda when present)")
    p.add_argument("--out", help=f"run folder to create; must not exist or be empty (default runs/{what}-<name>-<time>)")
    p.add_argument("--resume", metavar="RUN", help="continue the run in this folder from its last checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar or per-epoch lines")
    group = p.add_argument_group("training settings")
    for name, (kind, help_text) in TASK_OPTIONS.items():
        group.add_argument("--" + name.replace("_", "-"), type=kind, default=None, help=help_text)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("detect", help="train a detector (Faster R-CNN, RetinaNet, FCOS) on a genotype backbone",
                       description="Train a torchvision detector whose backbone is a genotype (cells or blocks, "
                       "strides 4-32, with an FPN) into a new run folder, evaluate COCO mAP / AP50 / AP75 after "
                       "every epoch and export it. The default data (generated shapes) needs no download.")
    p.add_argument("--detector", default="fcos", help="fasterrcnn, retinanet or fcos (default fcos)")
    p.add_argument("--dataset", default="shapes", help="shapes (embedded, default) or coco")
    p.add_argument("--data-root", help="coco: the folder holding the images")
    p.add_argument("--ann", help="coco: the annotation JSON (instances_*.json)")
    p.add_argument("--fpn-channels", type=int, default=64, help="FPN width (default 64; fcos: a multiple of 32)")
    _common(p, what="detect")
    p.set_defaults(func=cmd_detect)

    p = sub.add_parser("segment", help="train a segmenter (FCN, DeepLabV3, U-Net) on a genotype backbone",
                       description="Train a semantic segmentation model whose backbone is a genotype into a new "
                       "run folder, evaluate mean IoU and pixel accuracy after every epoch and export it. The "
                       "default data (generated shapes) needs no download.")
    p.add_argument("--head", default="unet", help="fcn, deeplabv3 or unet (default unet)")
    p.add_argument("--dataset", default="shapes", help="shapes (embedded, default) or voc (image + mask folders)")
    p.add_argument("--images", help="voc: folder of images")
    p.add_argument("--masks", help="voc: folder of PNG masks of class ids, same file stems (255 = ignore)")
    p.add_argument("--num-classes", type=int, help="voc: classes including the background (default 21)")
    _common(p, what="segment")
    p.set_defaults(func=cmd_segment)


def task_config_from_args(args: argparse.Namespace, task: str):
    """:class:`TaskConfig` with every option the user set (not None) applied on top of the defaults."""
    from nas.tasks.engine import TaskConfig
    from nas.export import parse_formats

    overrides = {name: getattr(args, name) for name in TASK_OPTIONS if getattr(args, name) is not None}
    for name in ("seed", "device"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    if "export_formats" in overrides:
        text = overrides["export_formats"].strip().lower()
        overrides["export_formats"] = () if text == "none" else parse_formats(text, task)
    return TaskConfig(**overrides)


def _check_resume(args: argparse.Namespace, names: tuple[str, ...]) -> None:
    from nas.errors import NasError

    given = [f"--{n.replace('_', '-')}" for n in (*TASK_OPTIONS, "seed", "device", "out", "genotype", "backbone",
                                                   "space", "init_channels", "init_from", *names)
             if getattr(args, n, None) is not None]
    if given:
        raise NasError(f"--resume continues with the run's own settings; drop {' '.join(given)}")


def _need_backbone(args: argparse.Namespace) -> None:
    from nas.errors import NasError

    if not (args.genotype or args.backbone or args.init_from):
        raise NasError("pass --genotype NAME|FILE|RUN (see `nas build --list-genotypes`), --backbone resnet18, "
                       "--init-from RUN, or --resume RUN")


def cmd_detect(args: argparse.Namespace) -> int:
    from nas.tasks.engine import train_detector

    if args.resume:
        _check_resume(args, ("data_root", "ann"))
        train_detector(resume=args.resume, progress=not args.no_progress)
        return 0
    _need_backbone(args)
    config = task_config_from_args(args, "detection")
    train_detector(args.genotype, detector=args.detector, backbone=args.backbone, config=config, space=args.space,
                   dataset=args.dataset, data_root=args.data_root, ann=args.ann, init_channels=args.init_channels,
                   cells_per_stage=args.cells_per_stage, fpn_channels=args.fpn_channels, init_from=args.init_from,
                   out=args.out, progress=not args.no_progress)
    return 0


def cmd_segment(args: argparse.Namespace) -> int:
    from nas.tasks.engine import train_segmenter

    if args.resume:
        _check_resume(args, ("images", "masks", "num_classes"))
        train_segmenter(resume=args.resume, progress=not args.no_progress)
        return 0
    _need_backbone(args)
    config = task_config_from_args(args, "segmentation")
    train_segmenter(args.genotype, head=args.head, backbone=args.backbone, config=config, space=args.space,
                    dataset=args.dataset, images=args.images, masks=args.masks, num_classes=args.num_classes,
                    init_channels=args.init_channels, cells_per_stage=args.cells_per_stage, init_from=args.init_from,
                    out=args.out, progress=not args.no_progress)
    return 0
