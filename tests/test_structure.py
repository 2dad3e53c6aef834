"""The shape of the package: fast help, no import cycles."""
from __future__ import annotations

import ast
import resource
import subprocess
import sys
from pathlib import Path

import networkx as nx
import pytest

from nas.cli import command_names

PACKAGE = Path(__file__).resolve().parent.parent / "nas"
HELP_CPU_SECONDS = 1.0


def _child_cpu_seconds(args: list[str]) -> tuple[float, subprocess.CompletedProcess]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = subprocess.run(args, capture_output=True, text=True, timeout=120)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), result


@pytest.mark.parametrize("command", [None, *command_names()])
def test_help_is_fast(command):
    """`nas --help` and `nas <command> --help` import no torch, Optuna or Ray: under 1 s of CPU."""
    args = [sys.executable, "-m", "nas", *([command] if command else []), "--help"]
    seconds, result = _child_cpu_seconds(args)
    assert result.returncode == 0, result.stderr
    assert "usage: nas" in result.stdout
    assert seconds < HELP_CPU_SECONDS, (f"`{' '.join(args[2:])}` took {seconds:.2f} s of CPU; "
                                        "defer heavy imports into the function that runs the command")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST):
    """Every import statement at any depth (functions included), except under ``if TYPE_CHECKING:``,
    which never runs."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from (n for child in node.orelse for n in _imports_of(child))
            continue
        yield from _imports_of(node)


def _imports_of(node: ast.AST):
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        yield node
    else:
        yield from _imports(node)


def import_graph() -> nx.DiGraph:
    """Modules of nas/ and the modules of nas/ each one imports: ``import a.b`` imports ``a.b``;
    ``from a import b`` imports ``a.b`` when that is a module, else ``a``; relative imports are
    resolved against the importing module's package."""
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = nx.DiGraph()
    graph.add_nodes_from(files)
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = []
        for node in _imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets += [alias.name for alias in node.names]
                continue
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            for alias in node.names:
                targets.append(f"{origin}.{alias.name}" if f"{origin}.{alias.name}" in files else origin)
        graph.add_edges_from((name, t) for t in targets if t in files and t != name)
    return graph


def test_import_graph_sees_relative_and_nested_imports(tmp_path, monkeypatch):
    pkg = tmp_path / "nas"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from .low import thing\n")
    (pkg / "sub" / "low.py").write_text("thing = 1\ndef f():\n    from nas.high import g\n")
    (pkg / "high.py").write_text("from typing import TYPE_CHECKING\nfrom nas import sub\n"
                                 "if TYPE_CHECKING:\n    from nas.other import x\n")
    (pkg / "other.py").write_text("import nas.high\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", pkg)
    graph = import_graph()
    assert set(graph.edges) == {("nas.sub", "nas.sub.low"), ("nas.sub.low", "nas.high"),
                                ("nas.high", "nas.sub"), ("nas.other", "nas.high")}
    assert _cycles(graph) == [["nas.high", "nas.sub", "nas.sub.low"]]


def _cycles(graph: nx.DiGraph) -> list[list[str]]:
    return sorted(sorted(c) for c in nx.strongly_connected_components(graph) if len(c) > 1)


def test_no_import_cycles():
    graph = import_graph()
    problems = []
    for component in _cycles(graph):
        loop = nx.find_cycle(graph.subgraph(component))
        problems.append(f"{len(component)} modules import each other: {', '.join(component)} "
                        f"(e.g. {' -> '.join([a for a, _ in loop] + [loop[0][0]])})")
    assert not problems, "import cycles inside nas/:\n" + "\n".join(problems)


def _folder(module: str) -> str:
    """The layer a module belongs to: its top-level folder of nas/ (``nas.strategies`` for
    ``nas.strategies.blackbox.strategy``: a package and its subfolders are one layer), or itself
    for a file directly in nas/ (``nas.space``)."""
    return ".".join(module.split(".")[:2])


def test_no_import_cycles_between_folders():
    """Folders are layers: two folders importing each other (through any of their modules) are one
    tangled layer, even when no single chain of modules loops."""
    graph = import_graph()
    folders = nx.DiGraph()
    folders.add_edges_from((_folder(a), _folder(b), {"via": f"{a} -> {b}"}) for a, b in graph.edges
                           if _folder(a) != _folder(b))
    problems = []
    for component in _cycles(folders):
        loop = nx.find_cycle(folders.subgraph(component))
        problems.append(f"{', '.join(component)} import each other: "
                        + "; ".join(folders.edges[a, b]["via"] for a, b in loop))
    assert not problems, "import cycles between the folders of nas/:\n" + "\n".join(problems)
