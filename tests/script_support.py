"""Loads a repository script that is not a package module (``benchmarks/*.py``, ``scripts/*.py``) by its
path, for tests of its functions: ``load_script("benchmarks/demo_seeds.py")``."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def load_script(relative: str, name: str | None = None) -> ModuleType:
    """The module at ``ROOT / relative``, executed afresh on each call (a test's changes to its globals
    stay with that copy); ``name`` defaults to the file's stem."""
    path = ROOT / relative
    spec = importlib.util.spec_from_file_location(name or f"script_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
