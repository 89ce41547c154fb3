"""The layer rules: one ordered list of medilab's parts, top to bottom. A module imports only
from its own part or from parts in rows below its own (function-level and TYPE_CHECKING imports
included), and no module imports another in a circle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "medilab"

# top to bottom; a part is a top-level module or subpackage of medilab (also in README "Layout")
LAYERS: tuple[tuple[str, ...], ...] = (
    ("cli",),
    ("demo",),
    ("api",),
    ("seeds",),  # a seed ensemble: member runs and their ensemble
    ("tune",),  # a search whose trials are runs (--cv: crossval's folds); a package
    ("study", "crossval", "ensemble"),  # folders that group runs
    ("run",),  # the engine
    ("export",),
    ("reports",),
    ("trained",),
    ("runfolder", "training_summary"),
    ("tasks",),
    ("explain",),
    ("data",),
    ("precision_probe",),  # auto's timed choice per phase
    ("precision",),
    ("models",),  # a model never imports data code
    ("io",),
    ("config",),
    ("registry",),
    ("errors", "version"),
)
# inside data/: tools that use sources on top; then sources, datamodules, transforms and the
# small tools, and the on-disk formats at the bottom
DATA_LAYERS: tuple[tuple[str, ...], ...] = (
    ("verify", "info"),
    ("sources",),
    ("datamodules",),
    ("transforms", "cache", "covariates", "loading", "sample_table", "splits"),
    ("formats",),
)
ROW = {part: row for row, parts in enumerate(LAYERS) for part in parts}
DATA_ROW = {part: row for row, parts in enumerate(DATA_LAYERS) for part in parts}
NO_TORCH = ("io", "errors", "version", "registry")  # importable without torch
THIRD_PARTY_TORCH = ("torch", "lightning", "torchvision", "monai", "timm")


def module_name(path: Path, package: Path) -> str:
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, package: Path) -> set[str]:
    """Every module ``path`` imports, wherever the import statement sits (relative imports
    resolved; ``from a import b`` counts as ``a.b`` when that is a module, else ``a``)."""
    known = {module_name(p, package) for p in package.rglob("*.py")}
    name = module_name(path, package)
    here = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = here.split(".")[: len(here.split(".")) - node.level + 1]
                base = ".".join([*parent, *([node.module] if node.module else [])])
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.add(full if full in known else base)
    return found


def part_of(module: str, depth: int = 1) -> str | None:
    """The layer part of a medilab module (``medilab.data.x.y`` → ``data``; with ``depth=2``
    → ``x``); None elsewhere."""
    bits = module.split(".")
    if bits[0] != "medilab":
        return None
    return bits[depth] if len(bits) > depth else "__init__"


def data_violation(name: str, target: str) -> str | None:
    """The data/ rule for an import between two data modules (None when it flows down)."""
    own, other = part_of(name, 2), part_of(target, 2)
    if own == "__init__" or other == "__init__" or own == other:
        return None
    if own not in DATA_ROW:
        return f"{name}: not in the data layer list"
    if other not in DATA_ROW or DATA_ROW[other] <= DATA_ROW[own]:
        return f"{name} imports {target}"
    return None


def violations(package: Path = PACKAGE) -> list[str]:
    found = []
    for path in sorted(package.rglob("*.py")):
        name = module_name(path, package)
        own = part_of(name)
        if own == "__init__":
            continue  # the package front door may import anything
        if own not in ROW:
            found.append(f"{name}: not in the layer list")
            continue
        for target in sorted(imports(path, package)):
            other = part_of(target)
            if own in NO_TORCH and target.split(".")[0] in THIRD_PARTY_TORCH:
                found.append(f"{name} imports {target} (no torch in {own})")
            if other == own == "data" and (problem := data_violation(name, target)):
                found.append(problem)
            if other is None or other == own:
                continue
            if other not in ROW or ROW[other] <= ROW[own]:
                found.append(f"{name} imports {target}")
    return found


def cycles(package: Path = PACKAGE) -> list[list[str]]:
    """Groups of medilab modules that import each other in a circle (Tarjan's algorithm)."""
    graph = {module_name(p, package): imports(p, package) for p in package.rglob("*.py")}
    graph = {m: sorted(t for t in targets if t in graph and t != m) for m, targets in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_every_import_flows_downward():
    assert violations() == []


def test_no_import_cycle():
    assert cycles() == []


def test_the_checks_can_fail(tmp_path):
    package = tmp_path / "medilab"
    (package / "models").mkdir(parents=True)
    (package / "data").mkdir()
    (package / "__init__.py").write_text("")
    (package / "models" / "bad.py").write_text(
        "def f():\n    from medilab.data.splits import make_splits\n")
    (package / "data" / "splits.py").write_text("from medilab.data import other\n")
    (package / "data" / "other.py").write_text("from ..data import splits\n")
    (package / "data" / "formats").mkdir()
    (package / "data" / "formats" / "csv.py").write_text("from medilab.data.sources import x\n")
    (package / "data" / "sources").mkdir()
    (package / "data" / "sources" / "x.py").write_text("from medilab.data.formats import csv\n")
    (package / "io.py").write_text("import torch\n")
    (package / "newpart.py").write_text("")
    assert violations(package) == [
        "medilab.data.formats.csv imports medilab.data.sources.x",
        "medilab.data.other: not in the data layer list",
        "medilab.data.splits imports medilab.data.other",
        "medilab.io imports torch (no torch in io)",
        "medilab.models.bad imports medilab.data.splits",
        "medilab.newpart: not in the layer list",
    ]
    assert cycles(package) == [["medilab.data.formats.csv", "medilab.data.sources.x"],
                               ["medilab.data.other", "medilab.data.splits"]]


@pytest.mark.parametrize("part", ["cli", "data", "io"])
def test_every_part_is_listed_once(part):
    assert sum(part in row for row in LAYERS) == 1
