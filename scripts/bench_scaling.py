"""Scaling of a one-shot search over processes: images/s of one search step on 1 and more
processes, and the share of the step that goes to communication.

Every measurement is a real search (``nas search``, DARTS, first order) of two epochs of
``--steps`` steps at per-process batch ``--batch-size``; the step time is the second epoch's
wall time over its steps (rank 0's; the first epoch pays for warm-up). Three ways to run it:

* ``1 process``: the search alone;
* ``W independent``: W single-process searches at once, which load the machine as the data
  parallel search does but exchange nothing;
* ``W data parallel``: one search on W processes (``torchrun --nproc_per_node W``).

images/s is ``W x batch / step time``. Communication share of the data parallel step:
``(T_dp - T_independent) / T_dp``, the time the W ranks spend on what they exchange (the
gradients DDP all-reduces, the architecture gradients, the global BatchNorm statistics)
beyond what the same load costs without it. On the CPU (gloo) each process has
``--threads`` threads; on GPUs (``--device cuda``) W ranges over ``--gpus`` (default 1..the
GPUs present), one GPU each (NCCL).

    PYTHONPATH=. python scripts/bench_scaling.py --label cpu-2-cores
    PYTHONPATH=. python scripts/bench_scaling.py --device cuda --label h100x8

Results are merged into ``results/scaling_benchmark.json`` under ``--label`` and every
label's figures are tabulated in ``results/scaling_benchmark.md``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "results"


def search_args(args: argparse.Namespace, out: Path, *extra: str) -> list[str]:
    return ["-m", "nas", "search", *extra, "--strategy", "darts", "--space", args.space, "--dataset", args.dataset,
            "--epochs", "2", "--warmup-epochs", "0", "--max-steps", str(args.steps), "--batch-size",
            str(args.batch_size), "--init-channels", str(args.init_channels), "--layers", str(args.layers),
            "--threads", str(args.threads), "--device", args.device, "--seed", "0", "--out", str(out)]


def step_time(out: Path) -> float:
    """The second epoch's seconds per step of the search in ``out``."""
    last = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()][-1]
    return last["epoch_time_s"] / json.loads((out / "config.json").read_text())["darts"]["max_steps"]


def launch(commands: list[tuple[list[str], dict[str, str]]]) -> None:
    """Run the ``(arguments, environment)`` commands at once; a failure ends the benchmark."""
    procs = [subprocess.Popen([sys.executable, *argv], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for argv, env in commands]
    for p in procs:
        _, err = p.communicate()
        if p.returncode != 0:
            raise SystemExit(f"a benchmark search failed:\n{err[-3000:]}")


def measure(args: argparse.Namespace, world: int, mode: str, folder: Path) -> float:
    """Step time in seconds of ``mode`` (alone, independent, parallel) on ``world`` processes."""
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONPATH": str(REPO)}
    if mode.startswith("parallel"):
        out = folder / f"{mode}-{world}"
        extra = ["--no-sync-batch-norm"] if mode == "parallel-local-bn" else []
        launch([(["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(world),
                  *search_args(args, out, *extra)], env)])
        return step_time(out)
    outs = [folder / f"{mode}-{world}-{i}" for i in range(world)]
    # on GPUs, each independent search gets a GPU of its own, as each rank does
    launch([(search_args(args, out), {**env, "CUDA_VISIBLE_DEVICES": str(i)} if args.device == "cuda" else env)
            for i, out in enumerate(outs)])
    return statistics.mean(step_time(out) for out in outs)


def probe_latency() -> None:
    """Under torchrun: print the mean time of an all-reduce of 64 floats (what a global
    BatchNorm exchanges per call), after a warm-up."""
    import time

    import torch
    import torch.distributed as dist

    cuda = torch.cuda.is_available() and os.environ.get("BENCH_DEVICE") == "cuda"
    if cuda:
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group("nccl" if cuda else "gloo")
    x = torch.zeros(64, device="cuda" if cuda else "cpu")
    for n in (20, 500):
        dist.barrier()
        start = time.perf_counter()
        for _ in range(n):
            dist.all_reduce(x)
        if cuda:
            torch.cuda.synchronize()
        seconds = (time.perf_counter() - start) / n
    if dist.get_rank() == 0:
        print(f"latency_us {seconds * 1e6:.1f}", flush=True)
    dist.destroy_process_group()


def latency(args: argparse.Namespace, world: int) -> float:
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                          str(world), str(Path(__file__).resolve()), "--probe-latency"], cwd=REPO, text=True,
                         capture_output=True, check=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1", "BENCH_DEVICE": args.device}).stdout
    return float(out.split("latency_us")[1].split()[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--label", help="name of this machine's figures in results/ (required)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--gpus", default=None, help="cuda: comma-separated process counts (default 1..all GPUs)")
    parser.add_argument("--processes", type=int, default=2, help="cpu: the data parallel process count (default 2)")
    parser.add_argument("--space", default="darts")
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--batch-size", type=int, default=32, help="per-process batch (default 32)")
    parser.add_argument("--init-channels", type=int, default=8)
    parser.add_argument("--layers", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10, help="timed steps (the second epoch's)")
    parser.add_argument("--threads", type=int, default=1, help="cpu: threads per process")
    parser.add_argument("--rounds", type=int, default=3, help="repeats; the medians are reported")
    parser.add_argument("--probe-latency", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe_latency:
        probe_latency()
        return
    if not args.label:
        parser.error("--label is required: the name of this machine's figures in results/")
    if args.device == "cuda":
        import torch

        counts = [int(c) for c in args.gpus.split(",")] if args.gpus else list(range(1, torch.cuda.device_count() + 1))
        if not counts:
            raise SystemExit("--device cuda: no GPU here")
    else:
        counts = [args.processes]

    latencies = {str(world): latency(args, world) for world in counts if world > 1}
    print(f"all-reduce latency of 64 floats, by process count: {latencies} us", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        timings: dict[str, list[float]] = {}
        for r in range(args.rounds):
            plan = [(1, "alone")] + [(w, m) for w in counts if w > 1
                                     for m in ("independent", "parallel", "parallel-local-bn")]
            for world, mode in plan:
                round_folder = folder / f"round{r}"
                t = measure(args, world, mode, round_folder)
                timings.setdefault(f"{world}:{mode}", []).append(t)
                print(f"round {r + 1}: {world} x {mode}: {t * 1000:.1f} ms/step", flush=True)
        alone = statistics.median(timings["1:alone"])
        rows.append({"processes": 1, "mode": "alone", "step_ms": alone * 1000,
                     "images_per_s": args.batch_size / alone})
        for world in counts:
            if world == 1:
                continue
            independent = statistics.median(timings[f"{world}:independent"])
            rows.append({"processes": world, "mode": "independent", "step_ms": independent * 1000,
                         "images_per_s": world * args.batch_size / independent})
            for mode, label in (("parallel", "data parallel"),
                                ("parallel-local-bn", "data parallel, --no-sync-batch-norm")):
                parallel = statistics.median(timings[f"{world}:{mode}"])
                rows.append({"processes": world, "mode": label, "step_ms": parallel * 1000,
                             "images_per_s": world * args.batch_size / parallel,
                             "speedup": alone / parallel * world,
                             "communication_share": max(0.0, (parallel - independent) / parallel)})
    setting = {k: getattr(args, k) for k in ("device", "space", "dataset", "batch_size", "init_channels", "layers",
                                              "steps", "threads", "rounds")}
    entry = {"setting": setting, "rows": rows, "allreduce_latency_us": latencies, "machine": platform.processor() or platform.machine(),
             "cpus": os.cpu_count()}
    for row in rows:
        extra = (f"  speedup {row['speedup']:.2f}x  communication {row['communication_share']:.0%}"
                 if "speedup" in row else "")
        print(f"{row['processes']} x {row['mode']}: {row['step_ms']:.1f} ms/step, {row['images_per_s']:.0f} "
              f"images/s{extra}")
    RESULTS.mkdir(exist_ok=True)
    store = RESULTS / "scaling_benchmark.json"
    data = json.loads(store.read_text()) if store.exists() else {}
    data[args.label] = entry
    store.write_text(json.dumps(data, indent=2) + "\n")
    (RESULTS / "scaling_benchmark.md").write_text(table(data))
    print(f"written: {store} and {RESULTS / 'scaling_benchmark.md'}")


def table(data: dict) -> str:
    lines = ["# One-shot search on several processes: images/s of one search step", "",
             ("Written by `scripts/bench_scaling.py`: DARTS, first order, the per-process batch below, the second "
              "epoch's step time of a real `nas search` (rank 0). Communication share: (T data parallel - T "
              "independent) / T data parallel, where *independent* runs as many single-process searches at once "
              "(the same load on the machine, nothing exchanged)."), ""]
    for label, entry in data.items():
        s = entry["setting"]
        lines += [f"## {label}", "",
                  (f"{s['device']}, {entry.get('cpus')} CPUs, space {s['space']} on {s['dataset']}, batch "
                   f"{s['batch_size']} per process, C={s['init_channels']}, {s['layers']} cells, {s['threads']} "
                   f"thread(s) per process, median of {s['rounds']} rounds of {s['steps']} steps"), "",
                  "| processes | mode | ms/step | images/s | speedup vs 1 | communication share |",
                  "|---|---|---|---|---|---|"]
        for row in entry["rows"]:
            speedup = f"{row['speedup']:.2f}x" if "speedup" in row else ""
            comm = f"{row['communication_share']:.0%}" if "communication_share" in row else ""
            lines.append(f"| {row['processes']} | {row['mode']} | {row['step_ms']:.1f} | {row['images_per_s']:.0f} | "
                         f"{speedup} | {comm} |")
        for world, us in entry.get("allreduce_latency_us", {}).items():
            lines += ["", (f"All-reduce of 64 floats among {world} processes: {us:.0f} µs (the size of what a "
                           "global BatchNorm exchanges; it does so once in the forward and once in the backward "
                           "pass of every BatchNorm, about 880 times per step of the default supernet).")]
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
