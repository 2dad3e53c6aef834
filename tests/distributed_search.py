"""A few one-shot searches on a tiny float64 data set, alone or as one rank under torchrun.

Run by tests/test_distributed.py (``python tests/distributed_search.py OUT --batch B``, or the
same under ``python -m torch.distributed.run --nproc_per_node 2``). Every case writes its run
folder to ``OUT/<case>``; under torchrun, rank 0 also writes ``OUT/checks.json``: after how
many architecture steps the ranks' architecture parameters were compared, and how many of
those comparisons found a difference in any bit.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch
import torch.distributed as dist
from torch.utils.data import TensorDataset

from nas.data import DatasetInfo
from nas.strategies.oneshot.architect import Architect
from nas.strategies.oneshot.search import search_darts
from nas.strategies.oneshot.settings import DartsConfig, GdasConfig

CASES = {
    # first order, with the auxiliary skips of DARTS- and every edge recomputed in the backward pass
    "darts": DartsConfig(epochs=2, warmup_epochs=0, collapse_remedy="aux-skip", recompute=True),
    "darts-order2": DartsConfig(epochs=2, warmup_epochs=0, order=2),
    "pc-darts": DartsConfig(epochs=2, warmup_epochs=0, partial_channels=2),
    "gdas": GdasConfig(epochs=2, warmup_epochs=0),
    # each rank's own BatchNorm statistics: the ranks still agree, but no longer with one process
    "darts-local-bn": DartsConfig(epochs=2, warmup_epochs=0, sync_batch_norm=False),
}


def toy_data() -> DatasetInfo:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(128, 1, 8, 8, generator=g, dtype=torch.float64)
    y = torch.randint(0, 4, (128,), generator=g)
    return DatasetInfo("toy", TensorDataset(x, y), TensorDataset(x[:8], y[:8]), num_classes=4, in_channels=1,
                       image_size=8, mean=(0.0,), std=(1.0,), classes=list("abcd"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--batch", type=int, required=True)
    parser.add_argument("--cases", default=",".join(CASES))
    args = parser.parse_args()
    torch.set_default_dtype(torch.float64)
    parallel = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if parallel:  # one process group for all cases (the search uses it as it would Ray Train's)
        dist.init_process_group("gloo")
    checked, differing = 0, 0
    step = Architect.step

    def compared_step(self: Architect, *a, **kw):
        nonlocal checked, differing
        out = step(self, *a, **kw)
        if parallel:
            mine = torch.cat([p.detach().flatten() for p in self.model.arch_parameters()])
            every = [torch.empty_like(mine) for _ in range(dist.get_world_size())]
            dist.all_gather(every, mine)
            checked += 1
            differing += any(not torch.equal(every[0], other) for other in every[1:])
        return out

    Architect.step = compared_step
    for case in args.cases.split(","):
        config = CASES[case]
        config = type(config)(**{**vars(config), "batch_size": args.batch, "init_channels": 4, "layers": 3})
        search_darts("nb201", toy_data(), config=config, out=args.out / case, seed=3, device="cpu",
                     progress=False, plots=False)
    if parallel:
        if dist.get_rank() == 0:
            (args.out / "checks.json").write_text(json.dumps({"checked": checked, "differing": differing}))
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
