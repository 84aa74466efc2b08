"""Every lesson as a Jupyter notebook, generated from its percent-format script with jupytext.

    python docs/hooks/notebooks.py OUT_DIR      write lessons/NN_topic.py as OUT_DIR/NN_topic.ipynb

The docs build publishes one beside each lesson's page (``docs/hooks/lessons.py``), and the tests
execute them in a real kernel (``tests/test_notebooks.py``), so no notebook is committed and none
can drift from its script. The script's docstring becomes the first markdown cell (its first line
the title); the ``# %%`` cells become the notebook's cells, unchanged. A second cell loads
shapekit's IPython extension (``%load_ext shapekit``), so a shape error in any later cell shows
shapekit's explanation.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import jupytext
import nbformat

LECTURE = "https://www.youtube.com/watch?v=t2HOvZ8jFXM"

EXTENSION_NOTE = (
    "This notebook was generated from `lessons/{name}` (run it as a script with "
    "`python lessons/{name}`). The next cell loads shapekit's IPython extension: from then on "
    "every cell runs under `shapekit.explain()`, so torch's shape errors come back as short "
    "`ShapeError` messages that name the operands and a fix (`%shapekit detect` also turns the "
    "silent-bug detectors on, `%shapekit off` turns it all off)."
)


def _docstring(source: str) -> str | None:
    """The docstring a cell consists of, else None."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    if len(tree.body) == 1 and isinstance(getattr(tree.body[0], "value", None), ast.Constant):
        value = tree.body[0].value.value
        return value.strip() if isinstance(value, str) else None
    return None


def to_notebook(script: Path) -> nbformat.NotebookNode:
    """The notebook of ``script`` (a ``lessons/NN_topic.py`` in percent format), not executed.

    >>> nb = to_notebook(Path("lessons/03_flatten_consecutive.py"))  # doctest: +SKIP
    >>> nb.cells[0].cell_type, nb.cells[1].source
    ('markdown', '%load_ext shapekit')
    """
    nb = jupytext.reads(script.read_text(encoding="utf-8"), fmt="py:percent")
    cells = list(nb.cells)
    doc = _docstring(cells[0].source) if cells and cells[0].cell_type == "code" else None
    head = []
    if doc is not None:
        cells = cells[1:]
        title, _, rest = doc.partition("\n")
        head.append(nbformat.v4.new_markdown_cell(f"# {title.strip().rstrip('.')}\n\n{rest.strip()}"
                                                  .strip()))
    note = EXTENSION_NOTE.format(name=script.name) + f" The lecture: [makemore part 5]({LECTURE})."
    head.append(nbformat.v4.new_markdown_cell(note))
    head.append(nbformat.v4.new_code_cell("%load_ext shapekit"))
    nb.cells = head + cells
    # Headings in the script's markdown cells go one level below the title cell (not in fences).
    for cell in nb.cells[len(head):]:
        if cell.cell_type == "markdown":
            lines, in_fence = [], False
            for line in cell.source.splitlines():
                if line.lstrip().startswith(("```", "~~~")):
                    in_fence = not in_fence
                lines.append("#" + line if not in_fence and re.match(r"#{1,5} ", line) else line)
            cell.source = "\n".join(lines)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.metadata.pop("jupytext", None)
    return nb


def notebook_bytes(script: Path) -> bytes:
    """``to_notebook(script)`` as the bytes of an ``.ipynb`` file."""
    return jupytext.writes(to_notebook(script), fmt="ipynb").encode("utf-8")


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "notebooks")
    out.mkdir(parents=True, exist_ok=True)
    for script in sorted(Path("lessons").glob("[0-9][0-9]_*.py")):
        (out / f"{script.stem}.ipynb").write_bytes(notebook_bytes(script))
        print(out / f"{script.stem}.ipynb")
