"""``nas detect`` and ``nas segment``: train a detector or segmenter on a genotype backbone.

Both commands are one runner over the training engine; they differ in their head choices and
their data options.
"""
from __future__ import annotations

import argparse

from nas.cli.cmd_train import refuse_resume_conflicts
from nas.cli.options import add_overwrite, add_settings, apply, destination, number
from nas.train.config import CLASSIFICATION_ONLY, TrainConfig, recipe

ORDER = 35

# command -> (task, head option, data options other than --dataset, settings it has no use for)
COMMANDS = {
    "detect": ("detection", "detector", ("data_root", "ann"), CLASSIFICATION_ONLY),
    "segment": ("segmentation", "head", ("images", "masks", "num_classes"), (*CLASSIFICATION_ONLY, "fpn_channels")),
}
DEFAULT_HEADS = {"detection": "fcos", "segmentation": "unet"}  # when --detector / --head is not given

def _common(p: argparse.ArgumentParser, *, command: str) -> None:
    p.add_argument("--genotype", help="backbone genotype: a reference name (DARTS_V2, MOBILENETV2, ...), a "
                   "genotype.json or a search run folder; not needed with --resume, --backbone or --init-from")
    p.add_argument("--backbone", help="a torchvision baseline backbone instead of a genotype: resnet18 or "
                   "mobilenet_v3_large (random weights)")
    p.add_argument("--space", help="space name or .yaml file (default: the genotype's own space)")
    p.add_argument("--init-from", metavar="RUN", help="a `nas train` run (or checkpoint) of the same genotype whose "
                   "cells initialise the backbone")
    p.add_argument("--out", help=f"run folder to create; must not exist or be empty (default "
                   f"runs/{command}-<name>-<time>)")
    add_overwrite(p)
    p.add_argument("--resume", metavar="RUN", help="continue the run in this folder from its last checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar or per-epoch lines")
    task, _, _, unused = COMMANDS[command]
    group = p.add_argument_group("training settings (unset ones come from the task's recipe, whose values are "
                                 "shown as defaults)")
    add_settings(group, TrainConfig, exclude=unused, defaults=recipe("shapes", task))
    p.set_defaults(func=cmd_task, command=command)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("detect", help="train a detector (Faster R-CNN, RetinaNet, FCOS) on a genotype backbone",
                       description="Train a torchvision detector whose backbone is a genotype (cells or blocks, "
                       "strides 4-32, with an FPN) into a new run folder, evaluate COCO mAP / AP50 / AP75 after "
                       "every epoch and export it. The default data (generated shapes) needs no download.")
    p.add_argument("--detector", help="fasterrcnn, retinanet, fcos or a head registered with "
                   "nas.builders.register_head (default fcos)")
    p.add_argument("--dataset", help="shapes (embedded, default) or coco")
    p.add_argument("--data-root", help="coco: the folder holding the images")
    p.add_argument("--ann", help="coco: the annotation JSON (instances_*.json)")
    _common(p, command="detect")

    p = sub.add_parser("segment", help="train a segmenter (FCN, DeepLabV3, U-Net) on a genotype backbone",
                       description="Train a semantic segmentation model whose backbone is a genotype into a new "
                       "run folder, evaluate mean IoU and pixel accuracy after every epoch and export it. The "
                       "default data (generated shapes) needs no download.")
    p.add_argument("--head", help="fcn, deeplabv3, unet or a head registered with "
                   "nas.builders.register_head (default unet)")
    p.add_argument("--dataset", help="shapes (embedded, default) or voc (image + mask folders)")
    p.add_argument("--images", help="voc: folder of images")
    p.add_argument("--masks", help="voc: folder of PNG masks of class ids, same file stems (255 = ignore)")
    p.add_argument("--num-classes", type=number(int, min=2), help="voc: classes including the background (default 21)")
    _common(p, command="segment")


def cmd_task(args: argparse.Namespace) -> int:
    from nas.errors import NasError
    from nas.train import train

    task, head_option, data_options, unused = COMMANDS[args.command]
    if args.resume:
        refuse_resume_conflicts(args, ("out", "overwrite", "genotype", "backbone", "space", "init_from", head_option,
                                       "dataset", *data_options), unused)
        train(task=task, resume=args.resume, progress=not args.no_progress)
        return 0
    if not (args.genotype or args.backbone or args.init_from):
        raise NasError("pass --genotype NAME|FILE|RUN (see `nas build --list-genotypes`), --backbone resnet18, "
                       "--init-from RUN, or --resume RUN")
    dataset = args.dataset or "shapes"
    config = apply(recipe(dataset, task), args, exclude=unused)
    data = {name: getattr(args, name) for name in data_options}
    head = getattr(args, head_option)
    with destination(args.out, args.overwrite):
        train(args.genotype, dataset, task=task, head=DEFAULT_HEADS[task] if head is None else head,
              backbone=args.backbone, config=config, space=args.space, init_from=args.init_from, out=args.out,
              progress=not args.no_progress, **data)
    return 0
