"""Shared by the model/train/sample/CLI tests: the names file, the plain-torch oracle, the bug."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
NAMES = Path(os.environ.get("SHAPEKIT_NAMES") or ROOT.parent / "shared/data/names.txt")


@pytest.fixture(autouse=True)
def one_thread():
    """Run each test with one torch thread, as training does: this model's matmuls are tiny, and
    two threads on a busy 2-core machine spin in OpenMP barriers (a forward can take 100x longer).
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def names_path() -> Path:
    """names.txt, or skip: CI sets SHAPEKIT_NAMES; a checkout finds ../shared/data/names.txt."""
    if not NAMES.is_file():
        pytest.skip(f"names.txt not found at {NAMES}; set SHAPEKIT_NAMES=/path/to/names.txt")
    return NAMES


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def reference():
    """benchmarks/lecture_reference.py: the lecture's loop in plain torch."""
    return _load(ROOT / "benchmarks" / "lecture_reference.py", "lecture_reference")


def buggy_batchnorm() -> type:
    """lessons/lecture_bug.py's BuggyBatchNorm1d."""
    return _load(ROOT / "lessons" / "lecture_bug.py", "lecture_bug").BuggyBatchNorm1d
