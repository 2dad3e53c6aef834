"""Detection and segmentation benchmark: genotype backbones against torchvision's ResNet-18 and
MobileNetV3-Large (random weights) inside the same detector and segmenter.

Every backbone is trained with the same short schedule on the embedded shapes data
(:func:`nas.train.train` with ``task="detection"`` / ``"segmentation"``) and measured at the same input
size: parameters, MACs (whole model and backbone alone), median latency of one image and the
validation mAP / mIoU. Writes ``results/tasks_benchmark.md`` and ``.json``.

    PYTHONPATH=. python scripts/bench_tasks.py                       # CPU-sized defaults, ~10 min on 2 cores
    PYTHONPATH=. python scripts/bench_tasks.py --epochs 20 --train-images 2000 --device cuda
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # runs from a checkout without installing the package

TORCHVISION = ("resnet18", "mobilenet_v3_large")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backbones", default="DARTS_V2,MOBILENETV2,resnet18,mobilenet_v3_large",
                   help="comma-separated genotypes (reference names, genotype.json) and torchvision backbones "
                   "(resnet18, mobilenet_v3_large)")
    p.add_argument("--detector", default="fcos", help="detector of every backbone (default fcos)")
    p.add_argument("--head", default="unet", help="segmentation head of every backbone (default unet)")
    p.add_argument("--tasks", default="detection,segmentation", help="detection, segmentation or both")
    p.add_argument("--init-channels", type=int, default=8, help="width of cell-space genotypes (default 8)")
    p.add_argument("--cells-per-stage", type=int, default=1, help="normal cells per stage (default 1)")
    p.add_argument("--epochs", type=int, default=4, help="training epochs of both tasks (default 4)")
    p.add_argument("--det-epochs", type=int, help="detection epochs (default --epochs)")
    p.add_argument("--seg-epochs", type=int, help="segmentation epochs (default --epochs)")
    p.add_argument("--image-size", type=int, default=64, help="image side in pixels (default 64)")
    p.add_argument("--train-images", type=int, default=240, help="shapes training scenes (default 240)")
    p.add_argument("--val-images", type=int, default=64, help="shapes validation scenes (default 64)")
    p.add_argument("--batch-size", type=int, default=8, help="images per step (default 8)")
    p.add_argument("--lr", type=float, help="peak AdamW learning rate (default: the task recipe's)")
    p.add_argument("--latency-repeats", type=int, default=10, help="timed forward passes (default 10)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    p.add_argument("--runs", help="keep the run folders here (default: a temporary folder, deleted)")
    p.add_argument("--out", default=str(REPO / "results" / "tasks_benchmark"),
                   help="output path without suffix (default results/tasks_benchmark)")
    return p.parse_args(argv)


def bench_one(task: str, name: str, args: argparse.Namespace, config, runs: Path) -> dict[str, Any]:
    from nas.measure import measure
    from nas.train import train

    backbone = name if name in TORCHVISION else None
    genotype = None if backbone else name
    config = dataclasses.replace(config, init_channels=args.init_channels, cells_per_stage=args.cells_per_stage)
    started = time.perf_counter()
    result = train(genotype, task=task, head=args.detector if task == "detection" else args.head, backbone=backbone,
                   config=config, out=runs / f"{task}-{name}", progress=False)
    wall = time.perf_counter() - started
    size = measure(result.model, (3, config.image_size, config.image_size), task=task, latency=True,
                   repeats=args.latency_repeats)
    records = [json.loads(line) for line in (result.run / "metrics.jsonl").read_text().splitlines()]
    recalibrated = bn_recalibrated_quality(result.model, task, config)
    quality = ("map", "map50", "map75") if task == "detection" else ("miou", "pixel_accuracy")
    row = {"task": task, "model": args.detector if task == "detection" else args.head, "backbone": name,
           "description": result.spec.describe(), **{k: size[k] for k in
                                                     ("params", "backbone_params", "macs", "backbone_macs",
                                                      "latency_ms")},
           **{k: result.metrics[k] for k in quality}, "train_loss": result.metrics["train_loss"],
           **{f"{k}_bn_recalibrated": v for k, v in recalibrated.items() if k in quality},
           "images_per_s": sum(r["images_per_s"] for r in records) / len(records), "wall_s": wall}
    print(f"{task:12s} {name:20s} params {row['params'] / 1e6:.2f} M  MACs {row['macs'] / 1e6:.0f} M  "
          f"latency {row['latency_ms']:.1f} ms  " + "  ".join(f"{k} {row[k]:.3f}" for k in quality)
          + f"  ({wall:.0f} s)", flush=True)
    return row


def bn_recalibrated_quality(model, task: str, config) -> dict[str, float]:
    """Validation quality after re-estimating every batch-norm layer's running statistics on the
    training images (a cumulative average over one pass; weights unchanged).

    Short schedules leave running statistics behind the weights, most of all with torchvision's
    MobileNetV3, whose batch norms use momentum 0.01 (10x slower than the default 0.1).
    """
    import copy

    import torch
    from torch.utils.data import DataLoader

    from nas.data.tasks import ShapesDataset, collate_detection
    from nas.train.metrics import evaluate_detector, evaluate_segmenter
    from nas.train.tasks import SHAPES_TRAIN_SEED, SHAPES_VAL_SEED

    model = copy.deepcopy(model).cpu()
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # cumulative average
    kind = "detection" if task == "detection" else "segmentation"
    train = ShapesDataset(config.train_images, image_size=config.image_size, seed=SHAPES_TRAIN_SEED, task=kind)
    val = ShapesDataset(config.val_images, image_size=config.image_size, seed=SHAPES_VAL_SEED, task=kind)
    collate = collate_detection if task == "detection" else None
    model.train()
    with torch.no_grad():
        for images, _ in DataLoader(train, batch_size=config.batch_size, collate_fn=collate):
            if task == "detection":
                model.backbone(model.transform(list(images))[0].tensors)
            else:
                model(images)
    loader = DataLoader(val, batch_size=config.batch_size, collate_fn=collate)
    if task == "detection":
        return evaluate_detector(model, loader, "cpu")
    return evaluate_segmenter(model, loader, "cpu", ShapesDataset.num_classes)


def background_only_scores(config) -> dict[str, float]:
    """mIoU and pixel accuracy of predicting background everywhere on the validation scenes: the
    score a segmenter gets before it has learned any shape."""
    import torch

    from nas.data.tasks import ShapesDataset
    from nas.train.tasks import SHAPES_VAL_SEED

    val = ShapesDataset(config.val_images, image_size=config.image_size, seed=SHAPES_VAL_SEED, task="segmentation")
    masks = torch.stack([torch.as_tensor(val[i][1]) for i in range(len(val))])
    valid = masks != 255
    background = float(((masks == 0) & valid).sum() / valid.sum())
    present = len(set(masks[valid].unique().tolist()))
    return {"miou": background / present, "pixel_accuracy": background}


def write_markdown(path: Path, report: dict[str, Any]) -> None:
    s = report["settings"]
    lines = [
        "# Detection and segmentation benchmark", "",
        f"`{report['command']}`",
        f"run {report['date']} on {report['machine']} ({s['device']}; {report['cpu_count']} CPU cores, "
        f"{s['threads']} torch thread(s)), torch {report['torch']}, torchvision {report['torchvision']}; "
        f"{report['total_s'] / 60:.1f} min in all. Load average when it started: {report['load_average']}"
        + (" (other jobs shared the machine, so times are indicative)." if (report["load_average"] or 0) > 1.5
           else "."), "",
        f"Same schedule for every backbone: embedded shapes data (`ShapesDataset`, 3 classes + background), "
        f"{s['train_images']} training / {s['val_images']} validation scenes of {s['image_size']}x{s['image_size']} "
        f"pixels, {s['epochs']['detection']} epochs for detection and {s['epochs']['segmentation']} for "
        f"segmentation, batch {s['batch_size']}, AdamW lr {s['lr']} with {s['warmup_steps']} "
        f"warm-up steps then cosine, seed {s['seed']}, no pretrained weights. Genotype cell backbones use "
        f"C={s['init_channels']} and {s['cells_per_stage']} normal cell(s) per stage; MOBILENETV2 is the mobile "
        "space's chain at its own widths; ResNet-18 and MobileNetV3-Large are torchvision's (weights=None), "
        f"tapped at strides 4-32. Detector: {s['detector']} on an FPN of width 64; segmenter: {s['head']}.", "",
    ]
    for task, quality in (("detection", ("map", "map50", "map75")), ("segmentation", ("miou", "pixel_accuracy"))):
        rows = [r for r in report["rows"] if r["task"] == task]
        if not rows:
            continue
        lines += [f"## {task.capitalize()} ({rows[0]['model']})", ""]
        if task == "segmentation":
            floor = report["background_only"]
            lines += [f"Predicting background everywhere scores mIoU {floor['miou']:.3f} and pixel accuracy "
                      f"{floor['pixel_accuracy']:.3f} on these validation scenes; a row at that floor has not "
                      "learned to find the shapes within the schedule.", ""]
        lines += [
                  "| backbone | params (model / backbone) | MACs (model / backbone) | latency, 1 image | "
                  + " | ".join(quality) + f" | {quality[0]} after BN re-estimation | train images/s | wall time |",
                  "|---|---:|---:|---:|" + "---:|" * len(quality) + "---:|---:|---:|"]
        for r in rows:
            lines.append(f"| {r['backbone']} | {r['params'] / 1e6:.2f} M / {r['backbone_params'] / 1e6:.2f} M | "
                         f"{r['macs'] / 1e6:.0f} M / {r['backbone_macs'] / 1e6:.0f} M | {r['latency_ms']:.1f} ms | "
                         + " | ".join(f"{r[k]:.3f}" for k in quality)
                         + f" | {r[quality[0] + '_bn_recalibrated']:.3f} | {r['images_per_s']:.1f} | {r['wall_s']:.0f} s |")
        lines.append("")
    lines += [
        "MACs are multiply-accumulates of convolutions and matrix products for one image "
        "(`torch.utils.flop_counter`), the detector's including its transform, heads and box predictor in eval mode "
        "(RoI align, NMS and element-wise ops not counted). Latency is the median of "
        f"{s['latency_repeats']} eval-mode forward passes of one image on the CPU after two warm-up passes "
        "(for detectors: pre- and post-processing included). mAP is COCO AP@[.50:.95] (pycocotools), map50 / map75 "
        "at IoU 0.5 / 0.75; mIoU is the mean IoU over the classes present, pixel accuracy over all pixels. "
        "'after BN re-estimation' evaluates the same weights after re-estimating every batch norm's running "
        "statistics over one pass of the training images (cumulative average): short schedules leave the running "
        "statistics behind the weights, most of all in torchvision's MobileNetV3, whose batch norms use momentum "
        "0.01 instead of 0.1. The main columns are the engine's own evaluation. "
        "One seed and a short schedule from scratch: the quality columns rank backbones only roughly, and "
        "differences of a few points are within seed noise.",
        ""]
    path.write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch
    import torchvision

    from nas.run import cpu_name
    from nas.train import recipe

    torch.set_num_threads(args.threads)
    settings = {"epochs": args.epochs, "image_size": args.image_size, "train_images": args.train_images,
                "val_images": args.val_images, "batch_size": args.batch_size, "seed": args.seed, "device": args.device,
                "export_formats": ()}
    if args.lr is not None:
        settings["lr"] = args.lr
    configs = {task: dataclasses.replace(recipe("shapes", task), **{**settings, "epochs": epochs or args.epochs})
               for task, epochs in (("detection", args.det_epochs), ("segmentation", args.seg_epochs))}
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    started = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-tasks-") as tmp:
        runs = Path(args.runs) if args.runs else Path(tmp)
        for task in [t.strip() for t in args.tasks.split(",") if t.strip()]:
            for name in [b.strip() for b in args.backbones.split(",") if b.strip()]:
                rows.append(bench_one(task, name, args, configs[task], runs))
    report = {
        "command": "PYTHONPATH=. python scripts/bench_tasks.py" + ("" if argv is None and len(sys.argv) == 1
                                                                   else " " + " ".join(argv or sys.argv[1:])),
        "date": dt.date.today().isoformat(), "machine": cpu_name(),
        "cpu_count": os.cpu_count(), "load_average": None if load is None else round(load, 1),
        "torch": torch.__version__, "torchvision": torchvision.__version__,
        "settings": {**configs["detection"].to_dict(), "epochs": {t: c.epochs for t, c in configs.items()},
                     "threads": args.threads, "detector": args.detector, "head": args.head,
                     "init_channels": args.init_channels, "cells_per_stage": args.cells_per_stage,
                     "latency_repeats": args.latency_repeats},
        "rows": rows, "total_s": time.perf_counter() - started,
        "background_only": background_only_scores(configs["segmentation"])}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    write_markdown(out.with_suffix(".md"), report)
    print(f"wrote {out.with_suffix('.md')} and {out.with_suffix('.json')} ({report['total_s'] / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
