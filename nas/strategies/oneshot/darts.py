"""The ``darts`` strategy: differentiable architecture search (Liu, Simonyan, Yang, ICLR 2019)
over any cell space, with second-order steps, partial channels (PC-DARTS) and a collapse
remedy (DARTS-, on by default). The search loop is :func:`nas.strategies.oneshot.search.search_darts`.

>>> from nas.strategies import get_strategy
>>> result = get_strategy("darts").search("darts", DartsConfig(epochs=4))  # doctest: +SKIP
>>> result.genotype, result.path  # doctest: +SKIP
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from nas.strategies.base import SearchData, Strategy, register_strategy
from nas.strategies.oneshot.settings import DartsConfig, ray_train_workers


@register_strategy
class Darts(Strategy):
    name = "darts"
    kind = "oneshot"
    Settings = DartsConfig
    description = ("supernet search (DARTS, PC-DARTS, DARTS-); the defaults are a tiny CPU demo, the paper's "
                   "CIFAR-10 search is --epochs 50 --init-channels 16 --layers 8 (scripts/search_darts_cifar10.sh). "
                   "With --resume the run's saved settings apply.")

    def search(self, space: Any, settings: DartsConfig | None, *, evaluator: Any = None,
               data: SearchData | None = None, out: str | Path | None = None, resume: str | Path | None = None,
               seed: int = 0, progress: bool = True) -> Any:
        # the search loop imports torch: only a search pays for it, not `nas search --help`
        from nas.strategies.oneshot.derive import short_genotype

        data = data or SearchData()
        if _on_ray_train(settings, resume):
            from nas.strategies.oneshot.ray_train import search_ray_train as search
        else:
            from nas.strategies.oneshot.search import search_darts as search
        result = search(space if space is not None else "darts", data.dataset,
                        config=None if resume else settings or self.Settings(), out=out, resume=resume, seed=seed,
                        data_root=data.data_root, device=data.device, progress=progress, strategy=self.name)
        if progress and result.rank == 0:
            print(f"genotype ({result.epochs} epochs{', stopped early' if result.stopped_early else ''}): "
                  f"{short_genotype(result.genotype)}")
            print(f"run folder: {result.path}  (genotype.json, genotype.png, alphas.png, metrics.jsonl, tensorboard/)")
        return result


def _on_ray_train(settings: DartsConfig | None, resume: str | Path | None) -> bool:
    """Whether the search runs as a Ray Train job: ``--backend ray``, or resuming a run made so
    (read only outside torchrun, whose other ranks may not see the run folder)."""
    if resume is None:
        return settings is not None and settings.backend == "ray"
    from nas.run import Run
    from nas.strategies.oneshot.distributed import launched_world

    return launched_world() == 1 and ray_train_workers(Run.open(resume).config) is not None
