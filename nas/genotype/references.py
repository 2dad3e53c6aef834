"""Published and hand-designed genotypes, by name.

DARTS_V1/V2: Liu et al., ICLR 2019 (first / second order search on CIFAR-10).
PC_DARTS: Xu et al., ICLR 2020 (CIFAR-10 search).
RESIDUAL / INCEPTION: hand-designed cells of the ``lecture`` space built from residual and
inception-style blocks, as baselines for searched cells.
NB201_RESNET: NAS-Bench-201's ResNet-like cell; MOBILENETV2: the chain closest to MobileNetV2.
"""
from __future__ import annotations

import difflib
from pathlib import Path

from nas.errors import NasError
from nas.genotype.core import CellGenotype, Genotype
from nas.genotype.nb201 import from_nb201_string
from nas.space import path_kind, shorten


def _darts_cell(pairs: list[tuple[str, int]]) -> CellGenotype:
    return CellGenotype(tuple(tuple(pairs[i:i + 2]) for i in range(0, len(pairs), 2)), (2, 3, 4, 5))


def _darts(space: str, normal: list[tuple[str, int]], reduction: list[tuple[str, int]]) -> Genotype:
    return Genotype.from_cells(space, normal=_darts_cell(normal), reduction=_darts_cell(reduction))


REFERENCES: dict[str, Genotype] = {
    "DARTS_V1": _darts(
        "darts",
        [("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 0), ("sep_conv_3x3", 1),
         ("skip_connect", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 2)],
        [("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 0),
         ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("avg_pool_3x3", 0)]),
    "DARTS_V2": _darts(
        "darts",
        [("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
         ("sep_conv_3x3", 1), ("skip_connect", 0), ("skip_connect", 0), ("dil_conv_3x3", 2)],
        [("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 1),
         ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("max_pool_3x3", 1)]),
    "PC_DARTS": _darts(
        "darts",
        [("sep_conv_3x3", 1), ("skip_connect", 0), ("sep_conv_3x3", 0), ("dil_conv_3x3", 1),
         ("sep_conv_5x5", 0), ("sep_conv_3x3", 1), ("avg_pool_3x3", 0), ("dil_conv_3x3", 1)],
        [("sep_conv_5x5", 1), ("max_pool_3x3", 0), ("sep_conv_5x5", 1), ("sep_conv_5x5", 2),
         ("sep_conv_3x3", 0), ("sep_conv_3x3", 3), ("sep_conv_3x3", 1), ("sep_conv_3x3", 2)]),
    # A chain of residual blocks with identity shortcuts around each node.
    "RESIDUAL": _darts(
        "lecture",
        [("res_basic", 1), ("skip_connect", 0), ("res_basic", 2), ("skip_connect", 1),
         ("res_bottleneck", 3), ("skip_connect", 2), ("res_basic", 4), ("skip_connect", 3)],
        [("res_basic", 1), ("max_pool_3x3", 0), ("res_basic", 2), ("skip_connect", 1),
         ("res_bottleneck", 3), ("max_pool_3x3", 1), ("conv_1x1", 4), ("skip_connect", 2)]),
    # Parallel branches of different receptive fields merged by concatenation, as in Inception.
    "INCEPTION": _darts(
        "lecture",
        [("conv_1x1", 1), ("inception", 0), ("conv_3x3", 1), ("sep_conv_5x5", 0),
         ("avg_pool_3x3", 1), ("conv_1x1", 0), ("inception", 1), ("dil_conv_3x3", 2)],
        [("inception", 1), ("max_pool_3x3", 0), ("conv_3x3", 1), ("sep_conv_5x5", 0),
         ("max_pool_3x3", 1), ("conv_1x1", 2), ("inception", 3), ("avg_pool_3x3", 0)]),
    "NB201_RESNET": from_nb201_string(
        "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"),
    "MOBILENETV2": Genotype(
        space="mobile",
        stages=(("inverted_residual_k3_e1",), ("inverted_residual_k3_e6",) * 2, ("inverted_residual_k3_e6",) * 3,
                ("inverted_residual_k3_e6",) * 4, ("inverted_residual_k3_e6",) * 3,
                ("inverted_residual_k3_e6",) * 3)),
}


def get_reference(name: str) -> Genotype:
    try:
        return REFERENCES[name.upper()]
    except KeyError:
        close = difflib.get_close_matches(name.upper(), REFERENCES, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise NasError(f"unknown genotype {shorten(name)!r}; {hint}known names: {', '.join(REFERENCES)} "
                       "(or pass the path of a genotype.json, a run folder or a NAS-Bench-201 arch string)") from None


def resolve_genotype(name_or_path: str) -> Genotype:
    """A reference name, a genotype.json path, a run folder, a NAS-Bench-201 arch string or a
    genotype's JSON itself (``str(genotype)``)."""
    text = str(name_or_path)
    if text.upper() in REFERENCES:
        return REFERENCES[text.upper()]
    if text.startswith("|"):
        return from_nb201_string(text)
    if text.lstrip().startswith("{"):
        return Genotype.from_json(text, source=f"genotype {shorten(text.strip(), 40)!r}")
    path = Path(text)
    kind = path_kind(path)  # None for a text that cannot be a path (a NUL byte, too long a name)
    if kind == "dir":
        if not (path / "genotype.json").is_file():
            raise NasError(f"{shorten(text)} is a folder without a genotype.json; pass a run folder of `nas search` "
                           "or `nas train`, a genotype.json or a reference name")
        path = path / "genotype.json"
    if path.suffix == ".json" or kind is not None:
        return Genotype.load(path)
    return get_reference(text)
