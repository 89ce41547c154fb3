"""The layer rules of DESIGN.md: imports flow downward only (checked on the source text)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "medilab"

# layer → medilab modules it must never import
FORBIDDEN = {
    "io": ("medilab.data", "medilab.models", "medilab.tasks", "medilab.run", "medilab.reports",
           "medilab.api", "medilab.cli", "torch", "lightning", "torchvision", "monai", "timm"),
    "models": ("medilab.data", "medilab.tasks", "medilab.run", "medilab.reports", "medilab.api",
               "medilab.cli"),
    "data": ("medilab.models", "medilab.tasks", "medilab.run", "medilab.reports", "medilab.api",
             "medilab.cli"),
    "tasks": ("medilab.run", "medilab.reports", "medilab.api", "medilab.cli"),
    "reports": ("medilab.run", "medilab.tasks", "medilab.api", "medilab.cli"),
    "explain": ("medilab.data", "medilab.tasks", "medilab.run", "medilab.api", "medilab.cli"),
}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def violations(layer: str) -> list[str]:
    found = []
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        for name in sorted(imported_modules(path)):
            for banned in FORBIDDEN[layer]:
                if name == banned or name.startswith(banned + "."):
                    found.append(f"{path.relative_to(PACKAGE)} imports {name}")
    return found


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_flow_downward(layer):
    assert violations(layer) == []


def test_the_check_can_fail(tmp_path, monkeypatch):
    fake = tmp_path / "models"
    fake.mkdir()
    (fake / "bad.py").write_text("from medilab.data.splits import make_splits\n")
    monkeypatch.setattr(f"{__name__}.PACKAGE", tmp_path)
    assert violations("models") == ["models/bad.py imports medilab.data.splits",
                                     "models/bad.py imports medilab.data.splits.make_splits"]
