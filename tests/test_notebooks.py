"""Every lesson as a notebook (``docs/hooks/notebooks.py``, jupytext) runs in a real kernel.

    python -m pytest tests/test_notebooks.py            two representative lessons
    python -m pytest -m docs tests/test_notebooks.py    every lesson (part of the docs checks)

The notebook is generated from the lesson's percent-format script, exactly as the docs build
publishes it, and executed with nbclient in a fresh ipykernel with torch on one thread; a lesson's
asserts run as cells, so a notebook that drifts from its script fails here. Skipped when the
notebooks extra is not installed (``pip install -e '.[notebooks]'``).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LESSONS = sorted((ROOT / "lessons").glob("[0-9][0-9]_*.py"))
# Fast, and between them markdown, code, printed output, a caught torch error and a ShapeError.
DEFAULT = {"01_indexing.py", "03_flatten_consecutive.py"}

pytestmark = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None
        for m in ("jupytext", "nbclient", "nbformat", "ipykernel")),
    reason="the notebooks extra is not installed; fix: pip install -e '.[notebooks]'",
)


def notebook(script: Path):
    sys.path.insert(0, str(ROOT / "docs" / "hooks"))
    try:
        from notebooks import to_notebook
    finally:
        sys.path.remove(str(ROOT / "docs" / "hooks"))
    return to_notebook(script)


def execute(nb) -> None:
    """Run ``nb`` from the checkout's root in a fresh kernel; raises on the first failing cell."""
    import nbclient

    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg",
           "PYTHONPATH": str(ROOT)}
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(ROOT)}}).execute(env=env)


def check(script: Path) -> None:
    nb = notebook(script)
    source = script.read_text(encoding="utf-8")
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    assert code[0].source == "%load_ext shapekit"
    assert all(c.source in source for c in code[1:]), "a code cell is not the script's"
    execute(nb)
    printed = "".join(o.get("text", "") for c in code for o in c.outputs)
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    if "print(" in source:
        assert printed.strip(), f"{script.name}: its notebook printed nothing"


@pytest.mark.parametrize("script", [s for s in LESSONS if s.name in DEFAULT], ids=lambda s: s.stem)
def test_lesson_notebook_runs(script: Path) -> None:
    check(script)


@pytest.mark.docs
@pytest.mark.parametrize("script", [s for s in LESSONS if s.name not in DEFAULT],
                         ids=lambda s: s.stem)
def test_every_lesson_notebook_runs(script: Path) -> None:
    check(script)
