"""shapekit in IPython and Jupyter: ``%load_ext shapekit``.

Once loaded, every cell runs as if inside ``shapekit.explain()``: a shape error torch raises out
of a cell (and any ``ShapeError``) is shown as a short block, the message shapekit builds, instead
of a wall of traceback; ``%tb`` still shows the full traceback. Errors that are not shape errors
are shown as IPython always shows them. The line magic switches the mode:

    %shapekit explain          the default: explain shape errors
    %shapekit detect           also run each cell under shapekit.detect(): silent-bug warnings
    %shapekit detect strict    ... that raise instead (detect(strict=True))
    %shapekit off              IPython's own tracebacks, no detectors
    %shapekit                  print the current mode

A ``shapekit.Trace`` shows as an HTML table (its ``_repr_html_`` when it has one, else a table
built here from its rows). Nothing here imports torch until a cell needs it.
"""

from __future__ import annotations

import html
import re
import sys
from typing import Any

from ..checking import ShapeError

__all__ = ["load_ipython_extension", "unload_ipython_extension"]

MODES = ("explain", "detect", "off")
# The exception types torch raises for shape problems (as explain() catches them).
_CAUGHT = (RuntimeError, ValueError, IndexError)
_RED, _BOLD, _RESET = "\x1b[31m", "\x1b[1m", "\x1b[0m"

_extensions: dict[int, _Extension] = {}


class _Extension:
    """The state of the extension in one IPython shell: the mode and the open detect() block."""

    def __init__(self, shell: Any) -> None:
        self.shell = shell
        self.mode = "explain"
        self.strict = False
        self.block: Any = None  # the detect() block of the running cell

    def pre_run_cell(self, info: Any = None) -> None:
        if self.mode == "detect" and self.block is None:
            from ._detect import detect

            self.block = detect(strict=self.strict)
            self.block.__enter__()

    def post_run_cell(self, result: Any = None) -> None:
        block, self.block = self.block, None
        if block is not None:
            block.__exit__(None, None, None)

    def show_error(self, shell: Any, etype: type, value: BaseException, tb: Any,
                   tb_offset: int | None = None) -> list[str] | None:
        """IPython's custom exception handler: a ShapeError (or a shape error torch raised,
        explained) as a short block; anything else as IPython shows it."""
        error = None
        if self.mode != "off":
            if isinstance(value, ShapeError):
                error = value
            else:
                from ._explain import explain_error

                error = explain_error(value)
        if error is None:
            shell.showtraceback((etype, value, tb), tb_offset=tb_offset)
            return None
        sys.last_type, sys.last_value, sys.last_traceback = etype, value, tb  # for %tb
        lines = short_block(error, None if error is value else value, _cells(shell, tb))
        shell._showtraceback(ShapeError, error, lines)
        return lines

    def magic(self, line: str) -> None:
        """``%shapekit [explain | detect [strict] | off]``: switch the mode, or print it."""
        words = line.split()
        if not words:
            print(f"shapekit: {self.describe()}")
            return
        mode, rest = words[0], words[1:]
        if mode not in MODES or rest not in ([], ["strict"]) or (rest and mode != "detect"):
            print(f"%shapekit {line.strip()}: expected one of: explain, detect, detect strict, "
                  f"off; got {line.strip()!r}; the mode stays {self.describe()}",
                  file=sys.stderr)
            return
        self.mode, self.strict = mode, bool(rest)
        print(f"shapekit: {self.describe()}")

    def describe(self) -> str:
        if self.mode == "off":
            return "off (IPython's own tracebacks, no detectors)"
        if self.mode == "detect":
            how = "detect(strict=True)" if self.strict else "detect()"
            return f"every cell runs under shapekit.{how} (silent-bug detectors and explain())"
        return "every cell runs under shapekit.explain() (shape errors explained)"


def _cells(shell: Any, tb: Any) -> dict[str, str]:
    """The file names of the cells in traceback ``tb`` -> how IPython names them (``In[3]``)."""
    numbers = getattr(getattr(shell, "compile", None), "_filename_map", {})
    found = {}
    while tb is not None:
        name = tb.tb_frame.f_code.co_filename
        if name in numbers:
            found[name] = f"In[{numbers[name]}]"
        tb = tb.tb_next
    return found


def short_block(error: ShapeError, cause: BaseException | None = None,
                cells: dict[str, str] | None = None) -> list[str]:
    """The lines a notebook shows for ``error``: its message, and what it explains. A cell's file
    name (a key of ``cells``, or its base name) followed by ``:N`` reads ``Cell In[3], line N``.

    >>> err = ShapeError(expected="x: (batch, 3)", got="(4, 5)", fix="pass 3 features", where="f()")
    >>> print("\\n".join(short_block(err)).replace("\\x1b[31m", "").replace("\\x1b[1m", "")
    ...       .replace("\\x1b[0m", ""))
    ShapeError: f() expected x: (batch, 3), got (4, 5)
      fix: pass 3 features
    (shapekit: %tb shows the full traceback, %shapekit off IPython's own)
    """
    message = str(error)
    for name, label in (cells or {}).items():
        for shown in {name, name.replace("\\", "/").rsplit("/", 1)[-1]}:
            message = re.sub(rf"(?<![\w/.-]){re.escape(shown)}:(\d+)", rf"Cell {label}, line \1",
                             message)
    first, *rest = message.splitlines() or [""]
    lines = [f"{_RED}{_BOLD}ShapeError{_RESET}: {first}", *rest]
    if cause is not None:
        torch_first = (str(cause).splitlines() or [""])[0]
        lines.append(f"explains torch's {type(cause).__name__}: {torch_first}")
    lines.append("(shapekit: %tb shows the full traceback, %shapekit off IPython's own)")
    return lines


def trace_html(trace: Any) -> str:
    """A ``Trace`` as HTML: its own ``_repr_html_`` when it has one, else a table of its rows
    (layer, type, input and output shapes, params, dims) with the total below."""
    own = getattr(type(trace), "_repr_html_", None)
    if own is not None:
        return own(trace)

    def shapes(values: tuple) -> str:
        return ", ".join(str(v) for v in values)

    head = "".join(f"<th>{h}</th>" for h in ("layer", "type", "input", "output", "params", "dims"))
    body = []
    for row in trace.rows:
        cells = [row.path or "(model)", row.type, shapes(row.input_shapes),
                 row.error or shapes(row.output_shapes), f"{row.params:,}", row.dims]
        style = ' style="color:#c62828"' if row.error else ""
        body.append(f"<tr{style}>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells)
                    + "</tr>")
    foot = f"{html.escape(trace.model)}: {trace.total_params:,} parameters"
    return (f"<table class=\"shapekit-trace\"><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table><p>{foot}</p>")


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext shapekit``: explain shape errors in every cell, ``%shapekit`` to switch, and
    ``Trace`` as HTML. Loading twice keeps the first state."""
    if id(ipython) in _extensions:
        return
    ext = _Extension(ipython)
    _extensions[id(ipython)] = ext
    ipython.events.register("pre_run_cell", ext.pre_run_cell)
    ipython.events.register("post_run_cell", ext.post_run_cell)
    ipython.set_custom_exc(_CAUGHT, ext.show_error)
    ipython.register_magic_function(ext.magic, "line", "shapekit")
    formatter = ipython.display_formatter.formatters["text/html"]
    formatter.for_type_by_name("shapekit.debug._trace", "Trace", trace_html)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext shapekit``: IPython's own tracebacks again, no detectors."""
    ext = _extensions.pop(id(ipython), None)
    if ext is None:
        return
    ext.post_run_cell()
    ipython.events.unregister("pre_run_cell", ext.pre_run_cell)
    ipython.events.unregister("post_run_cell", ext.post_run_cell)
    ipython.set_custom_exc((), None)
    ipython.display_formatter.formatters["text/html"].deferred_printers.pop(
        ("shapekit.debug._trace", "Trace"), None)
    ipython.display_formatter.formatters["text/html"].type_printers.pop(
        _trace_type(), None)


def _trace_type() -> type | None:
    module = sys.modules.get("shapekit.debug._trace")
    return getattr(module, "Trace", None)
