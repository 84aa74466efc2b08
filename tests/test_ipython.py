"""``%load_ext shapekit`` in a real IPython kernel: shape errors as a short ShapeError block, the
``%shapekit`` modes, and a Trace rendered as HTML.

A small notebook is executed with nbclient in a fresh ipykernel (torch on one thread); skipped when
the notebooks extra is not installed (``pip install -e '.[notebooks]'``).
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ANSI = re.compile(r"\x1b\[[0-9;]*m")

needs_kernel = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("nbclient", "nbformat", "ipykernel")),
    reason="the notebooks extra is not installed; fix: pip install -e '.[notebooks]'",
)

CELLS = [
    "%load_ext shapekit",
    "import sys\nprint('torch' in sys.modules)",  # loading the extension imports no torch
    "import torch\nh, W2 = torch.randn(32, 200), torch.randn(27, 200)\nlogits = h @ W2",
    "%shapekit detect",
    "import torch.nn.functional as F\nprobs = F.softmax(torch.randn(32, 27), dim=0)",
    "%shapekit off",
    "logits = h @ W2",
    "%shapekit explain\nimport shapekit\nshapekit.trace(torch.nn.Linear(3, 2), torch.ones(4, 3))",
    "raise ValueError('not a shape problem')",
    "%shapekit sideways",
]


def run_notebook(cells: list[str]) -> list:
    """Execute ``cells`` in a fresh kernel, errors allowed; each cell's outputs."""
    import nbclient
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg",
           "PYTHONPATH": str(ROOT)}
    client = nbclient.NotebookClient(nb, timeout=120, allow_errors=True, kernel_name="python3",
                                     resources={"metadata": {"path": str(ROOT)}})
    client.execute(env=env)
    return [cell.outputs for cell in nb.cells]


def text(outputs: list) -> str:
    parts = []
    for out in outputs:
        if out.output_type == "stream":
            parts.append(out.text)
        elif out.output_type == "error":
            parts.append("\n".join(out.traceback))
        elif "data" in out:
            parts.append(out.data.get("text/plain", ""))
    return ANSI.sub("", "\n".join(parts))


@needs_kernel
def test_load_ext_shapekit_in_a_real_kernel() -> None:
    outs = run_notebook(CELLS)
    assert text(outs[1]).strip() == "False"

    # a shape error torch raised: one short ShapeError block, not torch's traceback
    (error,) = [o for o in outs[2] if o.output_type == "error"]
    assert error.ename == "ShapeError"
    shown = ANSI.sub("", "\n".join(error.traceback))
    assert shown.splitlines()[0] == (
        "ShapeError: Cell In[3], line 3 h @ W2 expected h's last axis == W2's first axis, got h: "
        "(32, 200) float32, W2: (27, 200) float32: 200 != 27; matmul contracts the last axis of "
        "the left operand with the first axis of the right one (leading axes ride along)")
    assert "  fix: W2 looks stored as (out, in), torch's nn.Linear layout: use h @ W2.T" in shown
    assert ("explains torch's RuntimeError: mat1 and mat2 shapes cannot be multiplied "
            "(32x200 and 27x200)") in shown
    assert len(shown.splitlines()) <= 5 and "Traceback" not in shown

    # %shapekit detect: the cell runs under detect(), the silent bug warns
    assert "every cell runs under shapekit.detect()" in text(outs[3])
    warned = text(outs[4])
    assert "PitfallWarning" in warned and "F.softmax(torch.randn(32, 27), dim=0)" in warned
    assert "docs: https://shapekit.readthedocs.io/en/latest/pitfalls/softmax-dim0/" in warned

    # %shapekit off: IPython's own traceback, torch's own error
    (raw,) = [o for o in outs[6] if o.output_type == "error"]
    assert raw.ename == "RuntimeError"
    assert raw.evalue == "mat1 and mat2 shapes cannot be multiplied (32x200 and 27x200)"

    # a Trace as an HTML table
    (result,) = [o for o in outs[7] if o.output_type == "execute_result"]
    page = result.data["text/html"]
    assert "<table" in page and "(4, 3)" in page and "(4, 2)" in page

    # errors that are not shape errors: untouched
    (other,) = [o for o in outs[8] if o.output_type == "error"]
    assert (other.ename, other.evalue) == ("ValueError", "not a shape problem")

    # a mode that does not exist: says what is valid, keeps the mode
    assert ("%shapekit sideways: expected one of: explain, detect, detect strict, off; got "
            "'sideways'; the mode stays every cell runs under shapekit.explain()") in text(outs[9])


def test_import_shapekit_and_loading_hook_import_no_torch() -> None:
    code = ("import sys, shapekit\nassert callable(shapekit.load_ipython_extension)\n"
            "import shapekit.debug._ipython\nprint('torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.stdout.strip() == "False", proc.stderr
