"""Benchmark one DARTS search step side by side with the reference supernet: images/s and peak memory.

One step is what the search loop does per batch: a first-order architecture step on a
validation batch plus a weight step on a training batch (``train_step`` of the search loop
itself). The defaults are the paper's search settings: darts space, 8 cells, C=16, batch 64,
32x32 images, one thread. Measured: the full supernet (K=1), partial channels (PC-DARTS, K=4)
and GDAS (one sampled op per edge), each with the settings a search uses by default
(channels-last, recomputation for K=1), and ``../shared/bench/ref_darts.py``, the paper's
supernet written plainly, as the peer.

Every measurement runs in a fresh process, and the rounds alternate the reference with the
project's settings (ref, K=1, ref, K=4, ref, gdas, ...), so that both see the same machine.
Peak memory is the whole process's peak resident set size (``ru_maxrss``) for both; on CUDA
``torch.cuda.max_memory_allocated`` for ours (the reference reports none). The last lines
printed are one per setting with images/s and peak_rss_mib for ours and the reference, and
the ratios; the medians over the rounds.

    PYTHONPATH=. python scripts/bench_darts.py --label cpu-1-thread
    PYTHONPATH=. python scripts/bench_darts.py --device cuda --label h100    # bf16, channels-last
    PYTHONPATH=. python scripts/bench_darts.py --profile --settings k1      # top ops of one step

Results are merged into ``results/darts_benchmark.json`` under ``--label``, and every label's
figures are tabulated in ``results/darts_benchmark.md``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
REFERENCE = REPO.parent / "shared" / "bench" / "ref_darts.py"
# name -> (strategy, partial channels)
SETTINGS = {"k1": ("darts", 1), "k4": ("darts", 4), "gdas": ("gdas", 1)}
TARGETS = {"k1": (3.0, 0.5), "k4": (8.0, None), "gdas": (None, None)}  # images/s ratio, memory ratio vs ref


def measure(args: argparse.Namespace, setting: str) -> dict:
    """Time ``args.steps`` steps after ``args.warmup`` untimed ones; in this process."""
    import torch

    from nas.run import resolve_device
    from nas.strategies.oneshot.architect import Architect
    from nas.strategies.oneshot.search import train_step
    from nas.strategies.oneshot.settings import DartsConfig
    from nas.strategies.oneshot.supernet import Supernet

    strategy, k = SETTINGS[setting]
    config = DartsConfig(partial_channels=k, channels_last=not args.no_channels_last, batch_size=args.batch_size,
                         init_channels=args.init_channels,
                         recompute={"on": True, "off": False}.get(args.recompute))
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dev = resolve_device(args.device)
    cuda = dev.type == "cuda"
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    model = Supernet(args.space, C=args.init_channels, layers=args.layers, partial_channels=k,
                     edge_normalisation=config.uses_edge_normalisation, recompute=config.uses_recompute(args.image_size)
                     ).to(dev, memory_format=memory_format)
    if strategy == "gdas":  # every forward pass runs one sampled op per edge
        model.tau, model.generator = 1.0, torch.Generator().manual_seed(0)
    w_opt = torch.optim.SGD(model.weight_parameters(), lr=0.025, momentum=0.9, weight_decay=3e-4)
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if cuda and not args.no_amp else None
    arch = Architect(model, order=1, **({"autocast": autocast} if autocast else {}))
    shape = (args.batch_size, 3, args.image_size, args.image_size)
    x, x_val = (torch.randn(shape).to(dev, memory_format=memory_format) for _ in range(2))
    y, y_val = (torch.randint(0, 10, (args.batch_size,), device=dev) for _ in range(2))
    kwargs = {"lr": 0.025, "grad_clip": 5.0, **({"autocast": autocast} if autocast else {})}

    def step() -> None:
        train_step(model, arch, w_opt, x, y, x_val, y_val, **kwargs)
        if cuda:
            torch.cuda.synchronize()

    for _ in range(args.warmup):
        step()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    result = {"setting": setting, "strategy": strategy, "partial_channels": k, "recompute": config.uses_recompute(args.image_size),
              "channels_last": config.channels_last, "step_s_median": median, "step_s_all": times,
              "images_per_s": args.batch_size / median, "peak_rss_mib": _peak_rss_mib(),
              "weights": sum(p.numel() for p in model.weight_parameters())}
    if cuda:
        result["cuda_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
        with profile(activities=activities) as prof:
            step()
        sort = "self_cuda_time_total" if cuda else "self_cpu_time_total"
        print(prof.key_averages().table(sort_by=sort, row_limit=25), file=sys.stderr)
    return result


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_reference(args: argparse.Namespace) -> dict:
    """The reference supernet in its own process, at the same batch, steps, threads and device."""
    cmd = [sys.executable, str(args.reference), "--batch", str(args.batch_size), "--steps", str(args.steps),
           "--threads", str(args.threads), "--device", "cuda" if args.device == "cuda" else "cpu"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"the reference failed:\n{proc.stderr}")
    found = dict(re.findall(r"^(peak_rss_mb|images_per_s) ([\d.]+)$", proc.stdout, flags=re.MULTILINE))
    # ref_darts.py prints ru_maxrss / 1024, i.e. MiB
    return {"setting": "ref", "images_per_s": float(found["images_per_s"]), "peak_rss_mib": float(found["peak_rss_mb"])}


def run_ours(args: argparse.Namespace, setting: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--single", setting], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    if proc.returncode != 0:
        raise SystemExit(f"{setting} failed:\n{proc.stderr}")
    if args.profile:
        print(proc.stderr, file=sys.stderr)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def summary(runs: list[dict], settings: list[str], with_reference: bool, device: str = "cpu") -> dict[str, dict]:
    """Medians over the rounds per setting, with the ratios to the reference."""
    out = {}
    ref = [r for r in runs if r["setting"] == "ref"]
    for name in settings:
        mine = [r for r in runs if r["setting"] == name]
        row = {"images_per_s": statistics.median(r["images_per_s"] for r in mine),
               "peak_rss_mib": statistics.median(r["peak_rss_mib"] for r in mine), "rounds": len(mine)}
        if with_reference:
            row["ref_images_per_s"] = statistics.median(r["images_per_s"] for r in ref)
            row["ref_peak_rss_mib"] = statistics.median(r["peak_rss_mib"] for r in ref)
            row["speed_ratio"] = row["images_per_s"] / row["ref_images_per_s"]
            if device == "cpu":  # on CUDA the processes' host memory says little, and ref reports no other
                row["memory_ratio"] = row["peak_rss_mib"] / row["ref_peak_rss_mib"]
        out[name] = row
    return out


def summary_line(name: str, row: dict) -> str:
    strategy, k = SETTINGS[name]
    line = f"{strategy} K={k}: {row['images_per_s']:.2f} images/s, peak_rss_mib {row['peak_rss_mib']:.0f}"
    if "speed_ratio" in row:
        line += (f" | ref: {row['ref_images_per_s']:.2f} images/s, peak_rss_mib {row['ref_peak_rss_mib']:.0f}"
                 f" | {row['speed_ratio']:.2f}x images/s"
                 + (f", {row['memory_ratio']:.2f}x memory" if "memory_ratio" in row else ""))
        speed, memory = TARGETS[name]
        goals = []
        if speed is not None:
            goals.append(f"images/s >= {speed:g}x: {'met' if row['speed_ratio'] >= speed else 'NOT met'}")
        if memory is not None and "memory_ratio" in row:
            goals.append(f"memory <= {memory:g}x: {'met' if row['memory_ratio'] <= memory else 'NOT met'}")
        if goals:
            line += " (" + "; ".join(goals) + ")"
    return line


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--space", default="darts")
    parser.add_argument("--init-channels", type=int, default=16)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS),
                        help="k1: full supernet, k4: partial channels K=4, gdas: GDAS (default: all)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds (median reported)")
    parser.add_argument("--steps", type=int, default=2, help="timed steps per process (median reported)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (default 1, as the search)")
    parser.add_argument("--no-channels-last", action="store_true", help="contiguous (NCHW) tensors")
    parser.add_argument("--recompute", choices=("auto", "on", "off"), default="auto",
                        help="recomputation in the backward pass (auto: the search's default)")
    parser.add_argument("--no-amp", action="store_true", help="no bf16 autocast on CUDA")
    parser.add_argument("--reference", type=Path, default=REFERENCE, help="the reference supernet script")
    parser.add_argument("--no-reference", action="store_true", help="measure ours only (no ratios)")
    parser.add_argument("--profile", action="store_true", help="print torch.profiler's top ops of one more step")
    parser.add_argument("--label", default="current", help="key under which results are stored")
    parser.add_argument("--out", default=str(REPO / "results" / "darts_benchmark.json"))
    parser.add_argument("--single", choices=list(SETTINGS), help=argparse.SUPPRESS)  # internal: one setting here
    args = parser.parse_args()

    if args.single is not None:
        print(json.dumps(measure(args, args.single)))
        return 0
    with_reference = not args.no_reference
    paper = {"space": "darts", "init_channels": 16, "layers": 8, "image_size": 32}
    changed = [k for k, v in paper.items() if getattr(args, k) != v]
    if with_reference and changed:
        print(f"bench_darts: error: the reference supernet runs the paper's settings only; drop "
              f"{', '.join('--' + k.replace('_', '-') for k in changed)} or pass --no-reference", file=sys.stderr)
        return 2
    if with_reference and not args.reference.is_file():
        print(f"bench_darts: error: reference {args.reference} not found; pass --reference PATH or --no-reference",
              file=sys.stderr)
        return 2
    runs = []
    for round_ in range(1, args.rounds + 1):
        for name in args.settings:
            for what in (["ref"] if with_reference else []) + [name]:
                run = run_reference(args) if what == "ref" else run_ours(args, name)
                run["round"] = round_
                runs.append(run)
                print(f"round {round_} {what}: {run['images_per_s']:.2f} images/s, "
                      f"peak_rss_mib {run['peak_rss_mib']:.0f}", flush=True)
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    rows = summary(runs, args.settings, with_reference, args.device)
    entry = {"settings": {k: getattr(args, k) for k in ("device", "space", "init_channels", "layers", "batch_size",
                                                         "image_size", "rounds", "steps", "warmup", "threads",
                                                         "no_channels_last", "recompute", "no_amp")},
             "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "load_average": load},
             "summary": rows, "runs": runs, "time": time.strftime("%Y-%m-%d %H:%M:%S")}
    out = Path(args.out)
    data = json.loads(out.read_text()) if out.exists() else {}
    data[args.label] = entry
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(data))
    print(f"written to {out} (and {out.with_suffix('.md').name}) under {args.label!r}")
    for name, row in rows.items():
        print(summary_line(name, row))
    return 0


def markdown(data: dict) -> str:
    """One table row per label and setting (labels measured before the side-by-side runs have no ratios)."""
    lines = ["# DARTS search step benchmark", "",
             "One supernet step as the search runs it: a first-order architecture step on a validation batch and a "
             "weight step on a training batch (`scripts/bench_darts.py`), side by side with "
             "`../shared/bench/ref_darts.py` in alternating fresh processes, same machine, same thread count. "
             "Medians over rounds; peak memory is each whole process's peak resident set size. K=1 is the full "
             "supernet, K=4 partial channels (PC-DARTS, edge normalisation on), gdas GDAS' step (one sampled op "
             "per edge).", "",
             ("| label | device, threads | K | images/s | peak RSS (MiB) | ref images/s | ref peak RSS (MiB) "
              "| images/s ratio | memory ratio | when |"),
             "|---|---|--:|--:|--:|--:|--:|--:|--:|---|"]
    for label, entry in data.items():
        s = entry["settings"]
        if "summary" not in entry:  # older labels: our step only, memory above the setup
            continue
        for name, row in entry["summary"].items():
            strategy, k = SETTINGS[name]
            ref = (f"{row['ref_images_per_s']:.2f} | {row['ref_peak_rss_mib']:.0f} | {row['speed_ratio']:.2f}x | "
                   + (f"{row['memory_ratio']:.2f}x" if "memory_ratio" in row else "-")
                   if "speed_ratio" in row else "- | - | - | -")
            lines.append(f"| {label} | {s['device']}, {s['threads']} | {k}{' (gdas)' if strategy == 'gdas' else ''} | "
                         f"{row['images_per_s']:.2f} | {row['peak_rss_mib']:.0f} | {ref} | {entry['time']} |")
    notes = REPO / "results" / "darts_speed_notes.md"
    if notes.exists():
        lines += ["", f"What bought what: see `{notes.relative_to(REPO)}`."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
