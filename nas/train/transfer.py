"""Transfer: start a detector's or segmenter's backbone from the cells of a classification run.

The classifier and the backbone share their cells (same genotype, same widths); only the
stems and the backbone's stride-32 stage differ, and those stay as initialised.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from nas.builders import ModelSpec, backbone_cell_prefixes
from nas.checkpoint import load_checkpoint
from nas.errors import NasError
from nas.measure import task_backbone
from nas.space import SearchSpace


@dataclass
class Transfer:
    """What :func:`init_backbone_from` copied: ``loaded`` backbone tensor names (with their
    classifier names in ``mapping``), and backbone tensors left as initialised."""

    source: Path
    loaded: list[str]
    skipped: list[str]
    mapping: dict[str, str]

    def summary(self) -> dict[str, Any]:
        return {"source": str(self.source), "loaded": len(self.loaded), "skipped": len(self.skipped)}


def classification_checkpoint(path: str | Path) -> Path:
    """The checkpoint of a ``nas train`` run folder (``best.pt``, else ``last.pt``) or the file itself."""
    path = Path(path)
    if path.is_dir():
        for name in ("best.pt", "last.pt"):
            if (path / "checkpoints" / name).is_file():
                return path / "checkpoints" / name
        raise NasError(f"{path} has no checkpoints/best.pt or last.pt; pass a `nas train` run folder that "
                       "finished an epoch, or its checkpoint file")
    if not path.is_file():
        raise NasError(f"--init-from {path}: no such run folder or checkpoint file")
    return path


def _stage_indices(plan: list[bool]) -> list[list[int]]:
    """Layer indices grouped by resolution: a reduction starts a new stage."""
    stages: list[list[int]] = [[]]
    for i, reduction in enumerate(plan):
        if reduction and stages[-1]:
            stages.append([])
        stages[-1].append(i)
    return stages


def backbone_weight_names(space: SearchSpace, *, classifier_layers: int | None, cells_per_stage: int,
                          chain_stages: int = 0) -> dict[str, str]:
    """Module prefixes ``{backbone prefix: classifier prefix}`` of the same cells.

    Cell spaces: the classifier's cells (``body.cells.i``, reductions at 1/3 and 2/3 of its
    depth) are matched stage by stage and position by position to the backbone's
    (:func:`nas.builders.backbone_cell_prefixes`: ``cells_per_stage`` normal cells per stage and
    three reductions); the backbone's last stage (stride 32) has no counterpart. Chain spaces:
    ``body.stages.i`` is the backbone's i-th space stage. The stems differ (one stride-1 conv vs
    two stride-2 convs) and are not mapped.
    """
    prefixes = backbone_cell_prefixes(space, cells_per_stage=cells_per_stage)
    if space.kind == "chain":
        return {prefixes[i]: f"body.stages.{i}." for i in range(chain_stages)}
    if classifier_layers is None:
        raise NasError("the classification run's spec has no layer count; it is not a cell network")
    r1, r2 = classifier_layers // 3, 2 * classifier_layers // 3
    classifier = _stage_indices([i in (r1, r2) for i in range(classifier_layers)])
    n = cells_per_stage
    backbone = _stage_indices(([False] * n + [True]) * 3 + [False] * n)
    return {prefixes[b]: f"body.cells.{c}."
            for b_stage, c_stage in zip(backbone, classifier) for b, c in zip(b_stage, c_stage)}


def init_backbone_from(model: nn.Module, spec: ModelSpec, source: str | Path) -> Transfer:
    """Copy the cells of a classification run's network into ``model``'s backbone.

    ``source`` is a ``nas train`` run folder or checkpoint of the same genotype and space.
    Weights and batch-norm statistics are copied where the mapped name exists with the same
    shape (the cells match when the initial channels match); raises :class:`NasError` when
    none does.

    Example::

        transfer = init_backbone_from(model, spec, "runs/train-DARTS_V2-...")
        len(transfer.loaded)
    """
    if spec.genotype is None or spec.space is None:
        raise NasError("--init-from copies cells of a genotype; a torchvision backbone has none to receive them")
    path = classification_checkpoint(source)
    state = load_checkpoint(path)
    classifier = ModelSpec.from_dict(state["spec"], source=str(path))
    if classifier.genotype.to_dict() != spec.genotype.to_dict():
        raise NasError(f"{path} trained another genotype than this backbone's; pass a run of the same genotype "
                       "(or leave out --genotype to take the run's)")
    prefixes = backbone_weight_names(spec.space, classifier_layers=classifier.layers,
                                     cells_per_stage=spec.cells_per_stage, chain_stages=len(spec.space.stages))
    source_state = state["model"]
    target = task_backbone(model)
    target_state = target.state_dict()
    update, mapping, skipped = {}, {}, []
    for name, tensor in target_state.items():
        if name.endswith("num_batches_tracked"):
            continue  # a step counter, not a weight: its shape () matches anything
        prefix = next((p for p in prefixes if name.startswith(p)), None)
        other = prefixes[prefix] + name[len(prefix):] if prefix else None
        if other is not None and other in source_state and source_state[other].shape == tensor.shape:
            update[name] = source_state[other]
            mapping[name] = other
        else:
            skipped.append(name)
    if not update:
        raise NasError(f"no backbone tensor of {path} matches this backbone (classifier: {classifier.describe()}; "
                       f"backbone: {spec.describe()}); use the run's --init-channels")
    target.load_state_dict(update, strict=False)
    return Transfer(path, sorted(update), skipped, mapping)
