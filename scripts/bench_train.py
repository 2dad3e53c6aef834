"""Training benchmark: images per second, peak memory and accuracy of short training runs.

Trains DARTS_V2 and a seeded random genotype of the same (darts) space with ``nas.train`` on
``digits`` and, when the data is there, on CIFAR-10, each in a fresh process so peak memory
is per run (CPU: peak resident set of the process; GPU: ``torch.cuda.max_memory_allocated``).
Writes ``results/train_benchmark.md`` and ``.json``.

    PYTHONPATH=. python scripts/bench_train.py                      # CPU-sized defaults
    PYTHONPATH=. python scripts/bench_train.py --device cuda --cifar-epochs 5 --cifar-train-subset 0
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED_CIFAR = REPO.parent / "shared" / "data" / "cifar10-jpeg"
RANDOM_SEED = 0  # seed of the random genotype: random_genotype("darts", seed=0)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    p.add_argument("--cifar-root", default=str(SHARED_CIFAR) if SHARED_CIFAR.exists() else None,
                   help=f"CIFAR-10 data root; default {SHARED_CIFAR} when present, else CIFAR-10 is skipped")
    p.add_argument("--init-channels", type=int, default=16, help="initial channels (default 16)")
    p.add_argument("--layers", type=int, default=8, help="cells (default 8)")
    p.add_argument("--batch-size", type=int, default=64, help="images per step (default 64)")
    p.add_argument("--digits-epochs", type=int, default=2, help="epochs on digits (default 2)")
    p.add_argument("--cifar-epochs", type=int, default=1, help="epochs on CIFAR-10 (default 1)")
    p.add_argument("--cifar-train-subset", type=int, default=512,
                   help="CIFAR-10 training images, a fixed sample; 0 for all 50,000 (default 512)")
    p.add_argument("--cifar-val-subset", type=int, default=500,
                   help="CIFAR-10 test images evaluated, a fixed sample; 0 for all 10,000 (default 500)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    p.add_argument("--out", default=str(REPO / "results" / "train_benchmark"),
                   help="output path without suffix (default results/train_benchmark)")
    p.add_argument("--single", help=argparse.SUPPRESS)  # one run, in a child process, as JSON
    return p.parse_args(argv)


def single_run(job: dict[str, Any]) -> dict[str, Any]:
    """Train one genotype as ``job`` says; return its figures (runs in a fresh process)."""
    import dataclasses

    import torch

    from nas.genotype import get_reference, random_genotype
    from nas.run import cpu_name
    from nas.train import recipe, train

    if job["threads"]:
        torch.set_num_threads(job["threads"])
    genotype = get_reference("DARTS_V2") if job["genotype"] == "DARTS_V2" else random_genotype("darts", RANDOM_SEED)
    config = dataclasses.replace(recipe(job["dataset"]), **job["settings"])
    started = time.perf_counter()
    result = train(genotype, job["dataset"], config=config, out=job["out"], data_root=job["data_root"],
                   progress=False)
    wall = time.perf_counter() - started
    records = [json.loads(line) for line in (result.run / "metrics.jsonl").read_text().splitlines()]
    size = json.loads((result.run / "model.json").read_text())
    return {
        "genotype": job["genotype"], "dataset": job["dataset"], "params": size["params"], "macs": size["macs"],
        "epochs": len(records), "train_images": records[-1]["train_images"],  # per epoch (full batches only)
        # the first epoch includes one-off warm-up (allocator, kernels); the mean is over all epochs
        "images_per_s": sum(r["images_per_s"] for r in records) / len(records),
        "images_per_s_last_epoch": records[-1]["images_per_s"],
        "peak_mem_mib": records[-1]["peak_mem_mib"], "val_acc": records[-1]["val_acc"],
        "train_loss": records[-1]["train_loss"], "wall_s": wall, "device": next(result.model.parameters()).device.type,
        "threads": torch.get_num_threads(),
        "device_name": torch.cuda.get_device_name(0) if next(result.model.parameters()).is_cuda else cpu_name(),
        "settings": dataclasses.asdict(config) | {"export_formats": list(config.export_formats)},
    }


def jobs(args: argparse.Namespace, runs: Path) -> list[dict[str, Any]]:
    common = {"init_channels": args.init_channels, "layers": args.layers, "batch_size": args.batch_size,
              "seed": args.seed, "device": args.device}
    plans = [("digits", None, {**common, "epochs": args.digits_epochs})]
    if args.cifar_root:
        plans.append(("cifar10", args.cifar_root, {**common, "epochs": args.cifar_epochs,
                                                   "train_subset": args.cifar_train_subset or None,
                                                   "val_subset": args.cifar_val_subset or None}))
    return [{"genotype": g, "dataset": d, "data_root": root, "settings": s, "threads": args.threads,
             "out": str(runs / f"{d}-{g}")}
            for d, root, s in plans for g in ("DARTS_V2", f"random(seed={RANDOM_SEED})")]


def markdown(rows: list[dict[str, Any]], args: argparse.Namespace, total_s: float, load: float) -> str:
    first = rows[0]
    lines = [
        "# Training benchmark",
        "",
        "`" + " ".join(["PYTHONPATH=. python scripts/bench_train.py", *sys.argv[1:]]) + "`",
        f"run {dt.date.today().isoformat()} on {first['device_name']} ({first['device']}; {os.cpu_count()} CPU cores, "
        f"{first['threads']} torch thread(s)), torch {__import__('torch').__version__}; {total_s / 60:.1f} min in all. "
        f"Load average when it started: {load:.1f} (other jobs shared the machine).",
        "",
        f"Networks: the darts space with C={args.init_channels} initial channels and {args.layers} cells "
        f"(2 reductions), batch {args.batch_size}, seed {args.seed}. `random` is "
        f"`random_genotype(\"darts\", seed={RANDOM_SEED})`. Each run is a fresh process.",
        "",
        "| data set | genotype | params | MACs | epochs x train images | images/s (mean, last epoch) "
        "| peak memory | final val acc | wall time |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        memory = "peak RSS" if r["device"] == "cpu" else "max allocated"
        lines.append(f"| {r['dataset']} | {r['genotype']} | {r['params'] / 1e6:.3f} M | {r['macs'] / 1e6:.1f} M | "
                     f"{r['epochs']} x {r['train_images']:,} | {r['images_per_s']:.0f} "
                     f"({r['images_per_s_last_epoch']:.0f}) | {r['peak_mem_mib']:.0f} MiB ({memory}) | "
                     f"{r['val_acc']:.1%} | {r['wall_s']:.0f} s |")
    lines += ["", "Settings per data set (everything else is the data set's `recipe`):", ""]
    seen = set()
    for r in rows:
        if r["dataset"] in seen:
            continue
        seen.add(r["dataset"])
        s = r["settings"]
        lines.append(f"- {r['dataset']}: {s['epochs']} epoch(s), lr {s['lr']}, cutout {s['cutout']}, auxiliary weight "
                     f"{s['auxiliary_weight']}, drop-path {s['drop_path']}, train subset {s['train_subset'] or 'all'}, "
                     f"val subset {s['val_subset'] or 'all'}, augment {s['augment']}.")
    lines += [
        "",
        "Train images per epoch are full batches only (the last partial batch is dropped). "
        "images/s counts training images only (forward, backward, step; data loading included, evaluation not). "
        "Peak memory on the CPU is the process's peak resident set (Python, torch and the decoded data set "
        "included); on a GPU it is `torch.cuda.max_memory_allocated`. Accuracies after so few epochs say that "
        "training works, not how good the architectures are.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.single:
        print("RESULT " + json.dumps(single_run(json.loads(args.single))))
        return 0
    started = time.perf_counter()
    load = os.getloadavg()[0]
    rows = []
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        for job in jobs(args, Path(tmp)):
            print(f"{job['dataset']} / {job['genotype']} ...", flush=True)
            done = subprocess.run([sys.executable, __file__, "--single", json.dumps(job)], env=env,
                                  capture_output=True, text=True)
            if done.returncode != 0:
                print(done.stderr[-3000:], file=sys.stderr)
                return done.returncode
            row = json.loads(done.stdout.split("RESULT ", 1)[1])
            rows.append(row)
            print(f"  {row['images_per_s']:.0f} images/s, peak {row['peak_mem_mib']:.0f} MiB, val acc "
                  f"{row['val_acc']:.1%}, {row['wall_s']:.0f} s", flush=True)
    total = time.perf_counter() - started
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"argv": sys.argv[1:], "total_s": total, "load_average": load,
                                                    "runs": rows}, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(rows, args, total, load))
    print(f"wrote {out.with_suffix('.md')} and {out.with_suffix('.json')} ({total / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
