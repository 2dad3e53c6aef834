"""NAS-Bench-201 as a table: score a cell of the ``nb201`` space by looking it up.

Three CSV files (see ``../shared/data/README.md`` for their sources) hold, for all 15,625
cells: the accuracies after 12 training epochs (validation and test, for CIFAR-10, CIFAR-100
and ImageNet16-120), the final 200-epoch test accuracies, and the CIFAR-10 network's
parameter count. A search maximises the cheap 12-epoch validation accuracy (``val_acc``), as
budgeted NAS does; what a method reports is the 200-epoch test accuracy (``test_acc``) of the
cell it picks. A whole search runs in seconds.

Accuracies are fractions (0..1), as every evaluator and run folder of nas reports them; the
tables' percentages are divided by 100 when they are read.

>>> from nas.genotype import get_reference
>>> table = NB201TableEvaluator("../shared/data/nas-bench-201", dataset="cifar10")  # doctest: +SKIP
>>> table.evaluate(get_reference("NB201_RESNET"))["test_acc"]  # doctest: +SKIP
0.9391
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nas.errors import NasError
from nas.evaluators.base import Evaluator, Report, register_evaluator
from nas.genotype import Genotype, from_nb201_string, to_nb201_string

TABLE_12_EPOCHS = "nb201_12epoch_val_test.csv"
TABLE_200_EPOCHS = "nb201_200epoch_test.csv"
TABLE_PARAMS = "nb201_cifar10_params_valid_test.csv"
TABLE_FILES = (TABLE_12_EPOCHS, TABLE_200_EPOCHS, TABLE_PARAMS)

# data set -> (column prefix in the 12-epoch table, column in the 200-epoch table)
DATASET_COLUMNS = {
    "cifar10": ("cifar10", "CIFAR10TestAccuracy200Epochs"),
    "cifar100": ("cifar100", "CIFAR100TestAccuracy200Epochs"),
    "imagenet16-120": ("imagenet", "ImageNetTestAccuracy200Epochs"),
}
NB201_DATASETS = tuple(DATASET_COLUMNS)


def default_nb201_root() -> Path | None:
    """``../shared/data/nas-bench-201`` (next to the working folder or to this project) if it
    holds the tables, else ``None``."""
    project = Path(__file__).resolve().parents[2]
    for base in (Path.cwd(), project):
        candidate = base.parent / "shared" / "data" / "nas-bench-201"
        if all((candidate / name).is_file() for name in TABLE_FILES):
            return candidate
    return None


def normalize_nb201_dataset(name: str) -> str:
    key = name.lower().replace("_", "-")
    aliases = {"imagenet": "imagenet16-120", "imagenet16": "imagenet16-120", "imagenet16120": "imagenet16-120"}
    key = aliases.get(key.replace("-", ""), key)
    if key not in DATASET_COLUMNS:
        raise NasError(f"unknown NAS-Bench-201 data set {name!r}; choose one of {', '.join(NB201_DATASETS)}")
    return key


@dataclass(frozen=True)
class NB201Record:
    """One cell's entries in the tables (accuracies as fractions, parameters as a count)."""

    index: int
    arch: str
    val_acc: float  # 12 epochs, validation
    test_acc_12: float  # 12 epochs, test
    test_acc: float  # 200 epochs, test
    params: int  # CIFAR-10 network
    # the published zero-cost score of the CIFAR-10 table (its `score` column, from nas-without-training):
    # by its values the Jacobian covariance score of that paper's first version (arXiv 2006.04647 v1), not
    # NASWOT's kernel log-determinant; -inf where it is undefined (the output ignores the input)
    jacov: float


_ROWS: dict[str, tuple[list[dict[str, str]], ...]] = {}
_TABLES: dict[tuple[str, str], dict[str, NB201Record]] = {}


def load_nb201_table(root: str | Path, dataset: str = "cifar10") -> dict[str, NB201Record]:
    """Arch string -> :class:`NB201Record` for ``dataset``; the files are read once per process."""
    root = Path(root)
    dataset = normalize_nb201_dataset(dataset)
    key = (str(root.resolve()), dataset)
    if key not in _TABLES:
        if key[0] not in _ROWS:
            _ROWS[key[0]] = _read_files(root)
        _TABLES[key] = _build_table(root, dataset, *_ROWS[key[0]])
    return _TABLES[key]


def _read_csv(path: Path, columns: tuple[str, ...]) -> list[dict[str, str]]:
    if not path.is_file():
        raise NasError(f"NAS-Bench-201 table {path} not found; pass the folder holding "
                       f"{', '.join(TABLE_FILES)} (--nb201-root DIR)")
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise NasError(f"{path}: not a CSV text file ({' '.join(str(exc).split())[:120]}); "
                       "replace it with the NAS-Bench-201 table of that name") from None
    except OSError as exc:
        raise NasError(f"{path}: cannot be read ({exc.strerror or exc}); check its permissions") from None
    if not rows:
        raise NasError(f"{path}: the table is empty; replace it with the NAS-Bench-201 table of that name")
    missing = [c for c in columns if c not in rows[0]]
    if missing:
        raise NasError(f"{path}: not a NAS-Bench-201 table: it lacks the columns {', '.join(missing)}; "
                       "replace it with the NAS-Bench-201 table of that name")
    for line, row in enumerate(rows, start=2):  # line 1 is the header
        if None in row or any(row.get(c) is None for c in columns):
            raise NasError(f"{path}: line {line} has {'more' if None in row else 'fewer'} fields than the header; "
                           "replace the file with the NAS-Bench-201 table of that name")
    return rows


def _read_files(root: Path) -> tuple[list[dict[str, str]], ...]:
    if not root.is_dir():
        raise NasError(f"NAS-Bench-201 folder {root} not found; pass the folder holding "
                       f"{', '.join(TABLE_FILES)} (--nb201-root DIR)")
    short_columns = tuple(f"{prefix}-{split}" for prefix, _ in DATASET_COLUMNS.values() for split in ("val", "test"))
    return (_read_csv(root / TABLE_12_EPOCHS, ("cellstr", *short_columns)),
            _read_csv(root / TABLE_200_EPOCHS, ("ArchitectureString", *(c for _, c in DATASET_COLUMNS.values()))),
            _read_csv(root / TABLE_PARAMS, ("cellstr", "params")))


def _build_table(root: Path, dataset: str, short: list[dict[str, str]], final: list[dict[str, str]],
                 sizes: list[dict[str, str]]) -> dict[str, NB201Record]:
    prefix, final_column = DATASET_COLUMNS[dataset]
    final_by_arch = {row["ArchitectureString"]: _fraction(root / TABLE_200_EPOCHS, line, final_column, row)
                     for line, row in enumerate(final, start=2)}
    params_by_arch = {row["cellstr"]: round(_number(root / TABLE_PARAMS, line, "params", row, 0, 1e4) * 1e6)
                      for line, row in enumerate(sizes, start=2)}
    # the score column is empty for the cells whose output does not depend on the input
    jacov_by_arch = {row["cellstr"]: (_number(root / TABLE_PARAMS, line, "score", row, -1e300, 1e300)
                                       if row.get("score") else -math.inf)
                      for line, row in enumerate(sizes, start=2)}
    table: dict[str, NB201Record] = {}
    for index, row in enumerate(short):
        arch = row["cellstr"]
        if arch not in final_by_arch or arch not in params_by_arch:
            raise NasError(f"{root}: cell {arch} of {TABLE_12_EPOCHS} is missing from {TABLE_200_EPOCHS} "
                           f"or {TABLE_PARAMS}; the three tables must list the same cells")
        path, line = root / TABLE_12_EPOCHS, index + 2
        table[arch] = NB201Record(index=index, arch=arch, val_acc=_fraction(path, line, f"{prefix}-val", row),
                                  test_acc_12=_fraction(path, line, f"{prefix}-test", row),
                                  test_acc=final_by_arch[arch], params=params_by_arch[arch],
                                  jacov=jacov_by_arch[arch])
    return table


def _number(path: Path, line: int, column: str, row: dict[str, str], low: float, high: float) -> float:
    """A table entry as a finite number in ``[low, high]``."""
    text = row[column]
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not low <= value <= high:  # also false for NaN
        raise NasError(f"{path}: line {line}, column {column} holds {text[:40]!r}, not a number from {low:g} to "
                       f"{high:g}; replace the file with the NAS-Bench-201 table of that name")
    return value


def _fraction(path: Path, line: int, column: str, row: dict[str, str]) -> float:
    """A table's accuracy in percent as a fraction."""
    return _number(path, line, column, row, 0, 100) / 100


@register_evaluator("nb201")
class NB201TableEvaluator(Evaluator):
    """Scores ``nb201`` genotypes from the NAS-Bench-201 tables.

    root: folder with the three CSV files (default :func:`default_nb201_root`).
    dataset: ``cifar10``, ``cifar100`` or ``imagenet16-120``.

    Returns ``val_acc`` (12-epoch validation accuracy, the search signal), ``test_acc``
    (200-epoch test accuracy, what to report), ``test_acc_12``, ``params`` (of the CIFAR-10
    network, for every data set) and the benchmark ``index``.
    """

    objective = "val_acc"
    space = "nb201"
    provides = ("val_acc", "test_acc", "test_acc_12", "params")

    def __init__(self, root: str | Path | None = None, dataset: str = "cifar10") -> None:
        if root is None:
            root = default_nb201_root()
            if root is None:
                raise NasError("NAS-Bench-201 tables not found in ../shared/data/nas-bench-201; pass the "
                               f"folder holding {', '.join(TABLE_FILES)} (--nb201-root DIR)")
        self.root = Path(root)
        self.dataset = normalize_nb201_dataset(dataset)
        self.table = load_nb201_table(self.root, self.dataset)

    def record(self, genotype: Genotype | str) -> NB201Record:
        """The table entry of a genotype or arch string."""
        if isinstance(genotype, Genotype):
            if genotype.space != "nb201":
                raise NasError(f"the NAS-Bench-201 table scores cells of the nb201 space, not {genotype.space!r}; "
                               "search with --space nb201")
            arch = to_nb201_string(genotype)
        else:
            arch = to_nb201_string(from_nb201_string(genotype))
        try:
            return self.table[arch]
        except KeyError:
            raise NasError(f"cell {arch} is not in the NAS-Bench-201 tables under {self.root}") from None

    def evaluate(self, genotype: Genotype, *, report: Report | None = None,
                 workdir: Path | None = None) -> dict[str, Any]:
        rec = self.record(genotype)
        return {"val_acc": rec.val_acc, "test_acc": rec.test_acc, "test_acc_12": rec.test_acc_12,
                "params": rec.params, "index": rec.index, "arch": rec.arch}

    def optimum(self) -> dict[str, Any]:
        """Reference points: the best test accuracy in the table, and the test accuracy of the
        cell with the best 12-epoch validation accuracy (what a perfect search on this signal
        would report)."""
        best_test = max(self.table.values(), key=lambda r: r.test_acc)
        best_val = max(self.table.values(), key=lambda r: (r.val_acc, r.test_acc))
        return {"best_test_acc": best_test.test_acc, "best_test_arch": best_test.arch,
                "best_val_acc": best_val.val_acc, "test_acc_of_best_val": best_val.test_acc,
                "best_val_arch": best_val.arch}

    def median(self, metric: str = "test_acc") -> float:
        values = sorted(getattr(r, metric) for r in self.table.values())
        mid = len(values) // 2
        return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2

    def config(self) -> dict[str, Any]:
        return {"name": "nb201", "root": str(self.root), "dataset": self.dataset}
