"""Run a percent-format script (or a list of code cells) cell by cell; report each cell's output.

    python docs/hooks/cell_runner.py lessons/03_flatten_consecutive.py OUT_DIR
    python docs/hooks/cell_runner.py --cells cells.json OUT_DIR

The docs build runs each lesson through this in ONE subprocess: the cells are executed in order in
one namespace (``__name__ == "__main__"``, ``sys.argv == [script]``, so a lesson that accepts
``--full`` runs in its quick default mode), as ``python lessons/NN_topic.py`` would run them. For
each code cell the runner captures what it writes to stdout and stderr, merged in order at the
file descriptor level (so subprocesses and C code are captured too), and saves every matplotlib
figure the cell left open as ``OUT_DIR/cell<i>-<k>.svg`` (vector: sharp at any width).
``OUT_DIR/cells.json`` gets the cells::

    [{"kind": "markdown", "source": "..."},
     {"kind": "code", "source": "...", "output": "...", "figures": ["cell3-1.svg"], "seconds": 0.1}]

plus, when a cell raises, ``"error": "<traceback>"`` on that cell and exit status 1; later cells are
not run. Standard library only, so it can run in any environment that has the script's own imports.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import time
import traceback
from pathlib import Path

_CELL = re.compile(r"^# %%(.*)$")


def split_cells(text: str) -> list[dict]:
    """Split percent-format ``text`` into cells ``{"kind", "source", "line"}`` (1-based).

    Whatever comes before the first ``# %%`` marker (the module docstring) is a ``"preamble"`` cell;
    it is executed too, so ``__doc__`` is set as in a real run. Markdown cells lose their ``# ``.
    """
    cells: list[dict] = []
    kind, start, lines = "preamble", 1, []
    for number, line in enumerate(text.splitlines(), 1):
        marker = _CELL.match(line)
        if marker:
            cells.append({"kind": kind, "source": "\n".join(lines), "line": start})
            kind = "markdown" if "[markdown]" in marker.group(1) else "code"
            start, lines = number + 1, []
        else:
            lines.append(line)
    cells.append({"kind": kind, "source": "\n".join(lines), "line": start})
    for cell in cells:
        if cell["kind"] == "markdown":
            cell["source"] = "\n".join(
                re.sub(r"^# ?", "", line) for line in cell["source"].splitlines()
            )
        cell["source"] = cell["source"].strip("\n")
    return [c for c in cells if c["source"].strip() or c["kind"] == "preamble"]


class _Capture:
    """Redirect fds 1 and 2 into one temporary file for the duration of a cell."""

    def __enter__(self) -> _Capture:
        sys.stdout.flush()
        sys.stderr.flush()
        self.file = tempfile.TemporaryFile()
        self.saved = (os.dup(1), os.dup(2))
        os.dup2(self.file.fileno(), 1)
        os.dup2(self.file.fileno(), 2)
        return self

    def __exit__(self, *exc: object) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(self.saved[0], 1)
        os.dup2(self.saved[1], 2)
        for fd in self.saved:
            os.close(fd)
        self.file.seek(0)
        self.text = self.file.read().decode("utf-8", errors="replace")
        self.file.close()


def _save_figures(out_dir: Path, index: int) -> list[str]:
    """Save and close every open matplotlib figure; nothing if the cell never imported pyplot."""
    if "matplotlib.pyplot" not in sys.modules:
        return []
    plt = sys.modules["matplotlib.pyplot"]
    names = []
    for k, number in enumerate(plt.get_fignums(), 1):
        name = f"cell{index}-{k}.svg"
        plt.figure(number).savefig(out_dir / name, bbox_inches="tight", metadata={"Date": None})
        names.append(name)
    plt.close("all")
    return names


def run_cells(cells: list[dict], script: Path, out_dir: Path) -> bool:
    """Execute the code cells of ``cells`` in order, filling in output; False if one raised."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    try:  # figures are saved by the runner; plt.show() under Agg would only warn
        import matplotlib.pyplot as plt

        plt.show = lambda *args, **kwargs: None
    except ImportError:
        pass
    namespace = {"__name__": "__main__", "__file__": str(script), "__builtins__": __builtins__}
    sys.argv = [str(script)]
    sys.path[0] = str(script.parent)  # as `python script.py` sets it (not this runner's folder)
    for index, cell in enumerate(cells):
        if cell["kind"] == "markdown":
            continue
        # Pad with blank lines so tracebacks and warnings show the script's own line numbers.
        code = compile("\n" * (cell["line"] - 1) + cell["source"], str(script), "exec")
        start = time.perf_counter()
        error = None
        with _Capture() as captured:
            try:
                exec(code, namespace)
            except BaseException:  # SystemExit and KeyboardInterrupt included: report, then stop
                error = traceback.format_exc()
        cell["seconds"] = round(time.perf_counter() - start, 3)
        cell["output"] = captured.text
        cell["figures"] = _save_figures(out_dir, index)
        if error is not None:
            cell["error"] = error
            return False
    return True


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "--cells":
        cells = json.loads(Path(argv[1]).read_text(encoding="utf-8"))
        script = Path(cells[0].get("script", "<docs>")) if cells else Path("<docs>")
        out_dir = Path(argv[2])
    elif len(argv) == 2:
        script = Path(argv[0]).resolve()
        cells = split_cells(script.read_text(encoding="utf-8"))
        out_dir = Path(argv[1])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    out_dir.mkdir(parents=True, exist_ok=True)
    # Line-buffered streams keep prints and warnings in the order a terminal would show them.
    sys.stdout.reconfigure(line_buffering=True, write_through=True)
    sys.stderr.reconfigure(line_buffering=True, write_through=True)
    ok = run_cells(cells, script, out_dir)
    (out_dir / "cells.json").write_text(json.dumps(cells, indent=1), encoding="utf-8")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
