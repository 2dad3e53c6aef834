"""Genotypes from Optuna trials (define-by-run) and back, for any cell or chain space.

Every decision is one ``suggest_categorical`` whose name always carries the same choices, so
every sampler (random, TPE, NSGA-II, evolution) sees a fixed distribution per name:

* sparse cell spaces (DARTS, lecture): per cell type and intermediate node, the SET of inputs
  as one categorical over combinations (``"normal.node4.inputs"`` -> ``"0,2"``), then one op per
  input slot (``"normal.node4.op0"``, ``"normal.node4.op1"``; slot ``j`` feeds from the
  ``j``-th input of the set, in increasing order);
* dense cell spaces (NAS-Bench-201): one op per edge (``"normal.node2.from0"``);
* chain spaces (mobile): a depth per stage (``"stage2.depth"``), then one op per block that
  this depth uses (``"stage2.block0"``, ...), so block names are conditional on the depth.

Decisions with a single choice (the first DARTS node can only read inputs 0 and 1) are not
suggested at all.

>>> import optuna
>>> from nas.space import load_space
>>> space = load_space("nb201")
>>> study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
>>> genotype = suggest_genotype(study.ask(), space)
>>> genotype_to_params(genotype, space) == study.trials[0].params
True
"""
from __future__ import annotations

import itertools
from typing import Any

import optuna

from nas.errors import NasError
from nas.faults import kill_point
from nas.genotype import CellGenotype, Genotype, to_nb201_string
from nas.genotype.sampling import edge_ops
from nas.space import SearchSpace, load_space


def input_set_key(sources: tuple[int, ...] | list[int]) -> str:
    """The categorical value of an input set: sorted node ids joined by commas (``"0,2"``)."""
    return ",".join(str(s) for s in sorted(sources))


def param_choices(space: SearchSpace | str) -> dict[str, tuple[Any, ...]]:
    """Every parameter name a genotype of ``space`` can use, with its choices.

    Chain spaces list the blocks up to the largest depth; :func:`params_to_genotype` ignores
    the blocks beyond a stage's sampled depth. This is the flat search space to hand to
    samplers that want one up front (``tune.choice`` per name, grid search).
    """
    space = load_space(space)
    choices: dict[str, tuple[Any, ...]] = {}
    if space.kind == "chain":
        for i, stage in enumerate(space.stages):
            if len(stage.depth) > 1:
                choices[f"stage{i}.depth"] = tuple(stage.depth)
            if len(space.ops) > 1:
                for b in range(max(stage.depth)):
                    choices[f"stage{i}.block{b}"] = tuple(space.ops)
        return choices
    ops = edge_ops(space)
    for cell_type in space.cell_types:
        for node in space.intermediate:
            prefix = f"{cell_type}.node{node}"
            if space.dense:
                if len(ops) > 1:
                    for src in range(node):
                        choices[f"{prefix}.from{src}"] = ops
                continue
            input_sets = _input_sets(node, space.num_edges(node))
            if len(input_sets) > 1:
                choices[f"{prefix}.inputs"] = input_sets
            if len(ops) > 1:
                for slot in range(space.num_edges(node)):
                    choices[f"{prefix}.op{slot}"] = ops
    return choices


def suggest_genotype(trial: optuna.trial.BaseTrial, space: SearchSpace | str) -> Genotype:
    """Sample a genotype of ``space`` from ``trial`` (define-by-run); see the module docstring."""
    space = load_space(space)

    def choose(name: str, choices: tuple[Any, ...]) -> Any:
        if len(choices) == 1:
            return choices[0]
        value = trial.suggest_categorical(name, choices)
        kill_point("blackbox.suggesting")  # some decisions stored, others not yet
        return value

    return _decide(space, choose)


def params_to_genotype(params: dict[str, Any], space: SearchSpace | str) -> Genotype:
    """The genotype that ``params`` (as in ``trial.params``) describe; extra names are ignored."""
    space = load_space(space)

    def choose(name: str, choices: tuple[Any, ...]) -> Any:
        if len(choices) == 1:
            return choices[0]
        if name not in params:
            raise NasError(f"parameters lack {name!r}, needed for a genotype of space {space.name!r}; "
                           "pass the params of a trial sampled from this space")
        value = params[name]
        if value not in choices:
            raise NasError(f"parameter {name}={value!r} is not one of {list(choices)} in space {space.name!r}")
        return value

    return _decide(space, choose)


def genotype_to_params(genotype: Genotype, space: SearchSpace | str) -> dict[str, Any]:
    """The parameters under which :func:`suggest_genotype` yields ``genotype``.

    Use it to start a study from known architectures:
    ``study.enqueue_trial(genotype_to_params(get_reference("DARTS_V2"), "darts"))``.
    ``none`` edges of sparse cells are outside the sampled space (a sampled edge is never
    ``none``), so such genotypes raise :class:`NasError`.
    """
    space = load_space(space)
    genotype.validate(space)
    params: dict[str, Any] = {}
    if space.kind == "chain":
        for i, (stage, blocks) in enumerate(zip(space.stages, genotype.stages)):
            if len(stage.depth) > 1:
                params[f"stage{i}.depth"] = len(blocks)
            if len(space.ops) > 1:
                for b, op in enumerate(blocks):
                    params[f"stage{i}.block{b}"] = op
        return params
    ops = edge_ops(space)
    for cell_type, cell in genotype.cells:
        for node, node_edges in zip(space.intermediate, cell.nodes):
            prefix = f"{cell_type}.node{node}"
            edges = sorted(node_edges, key=lambda e: e[1])
            for op, src in edges:
                if op not in ops:
                    raise NasError(f"{cell_type} cell: op {op!r} on edge {src}->{node} cannot be sampled "
                                   f"in space {space.name!r} (sampled edges use {', '.join(ops)})")
            if space.dense:
                if len(ops) > 1:
                    params.update({f"{prefix}.from{src}": op for op, src in edges})
                continue
            sources = [src for _, src in edges]
            if len(set(sources)) != len(sources):
                raise NasError(f"{cell_type} cell: node {node} reads node {sources[0]} twice; "
                               "sampled nodes read distinct inputs")
            if len(_input_sets(node, space.num_edges(node))) > 1:
                params[f"{prefix}.inputs"] = input_set_key(sources)
            if len(ops) > 1:
                params.update({f"{prefix}.op{slot}": op for slot, (op, _) in enumerate(edges)})
    return params


def short_form(genotype: Genotype) -> str:
    """A one-line description for logs: the arch string for nb201, ``op~src`` lists otherwise."""
    if genotype.space == "nb201":
        return to_nb201_string(genotype)
    if genotype.stages:
        return " ".join("[" + ",".join(op.replace("inverted_residual_", "") for op in stage) + "]"
                        for stage in genotype.stages)
    return " ".join(f"{name}:" + "+".join("|" + "|".join(f"{op}~{src}" for op, src in node) + "|"
                                          for node in cell.nodes)
                    for name, cell in genotype.cells)


def _input_sets(node: int, k: int) -> tuple[str, ...]:
    return tuple(input_set_key(c) for c in itertools.combinations(range(node), k))


def _decide(space: SearchSpace, choose) -> Genotype:
    """Build a genotype from ``choose(name, choices)``, asked in a fixed order."""
    if space.kind == "chain":
        stages = []
        for i, stage in enumerate(space.stages):
            depth = choose(f"stage{i}.depth", tuple(stage.depth))
            stages.append(tuple(choose(f"stage{i}.block{b}", tuple(space.ops)) for b in range(depth)))
        return Genotype(space.name, stages=tuple(stages)).with_space(space)
    ops = edge_ops(space)
    cells = []
    for cell_type in space.cell_types:
        nodes = []
        for node in space.intermediate:
            prefix = f"{cell_type}.node{node}"
            if space.dense:
                nodes.append(tuple((choose(f"{prefix}.from{src}", ops), src) for src in range(node)))
                continue
            key = choose(f"{prefix}.inputs", _input_sets(node, space.num_edges(node)))
            sources = [int(s) for s in key.split(",")]
            nodes.append(tuple((choose(f"{prefix}.op{slot}", ops), src) for slot, src in enumerate(sources)))
        cells.append((cell_type, CellGenotype(tuple(nodes), space.default_concat())))
    return Genotype(space.name, tuple(cells)).with_space(space)
