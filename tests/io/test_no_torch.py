"""The io layer never imports torch (DESIGN: "io never imports torch")."""

from __future__ import annotations

import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import medilab.io

HEAVY = ("torch", "lightning", "pytorch_lightning", "torchvision", "monai", "timm")
MODULES = ["medilab.io"] + sorted(
    f"medilab.io.{m.name}" for m in pkgutil.iter_modules(medilab.io.__path__)
)

# Imports each module in turn in a fresh interpreter and names the first that pulls in torch.
CHECK = """
import importlib, sys
for module in sys.argv[1].split(","):
    importlib.import_module(module)
    heavy = sorted(m for m in sys.modules if m.split(".")[0] in sys.argv[2].split(","))
    if heavy:
        sys.exit(f"{module} imports {heavy[:3]}")
"""


def test_every_io_module_is_checked() -> None:
    assert {"medilab.io.convert", "medilab.io.dicom", "medilab.io.tables",
            "medilab.io.reader", "medilab.io.messages"} <= set(MODULES)


def test_io_modules_import_no_torch() -> None:
    src = str(Path(medilab.io.__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(
        [sys.executable, "-c", CHECK, ",".join(MODULES), ",".join(HEAVY)],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert result.returncode == 0, result.stderr.strip()
    planted = subprocess.run(  # the check itself can fail
        [sys.executable, "-c", CHECK, "json", "json"], capture_output=True, text=True, env=env,
        timeout=60,
    )
    assert planted.returncode == 1 and planted.stderr.startswith("json imports ['json'")
