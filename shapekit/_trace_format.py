"""Render a :class:`~shapekit._trace.Trace` as plain text, Markdown or a rich table.

All three show the same columns (layer, input, output, params, dims), mark the failing row, and end
with a footer: the total parameter count, input -> output, and the error when the forward failed.
Plain text stays ASCII so it survives any terminal encoding and log file.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ._shaped import shape_text

if TYPE_CHECKING:
    from ._trace import Row, Shape, Trace

_SHOWN = 4  # entries shown per cell before "(+N more)"
_ERROR_LINES = 8  # lines of the error message shown in the footer
_HEADERS = ("layer", "input", "output", "params", "dims")


def shapes_text(keys: tuple[str, ...], shapes: tuple[Shape, ...]) -> str:
    """``(32, 8)`` for one entry; ``idx=(2, 16) targets=None`` or ``[0]=(2, 65) [1]=()`` for more.

    >>> shapes_text(("x",), ((32, 8),)), shapes_text(("logits", "loss"), ((2, 65), ()))
    ('(32, 8)', 'logits=(2, 65) loss=()')
    """
    texts = [_shape(s) for s in shapes]
    if len(texts) > 1:
        texts = [f"{key}={text}" if key else text for key, text in zip(keys, texts, strict=True)]
    if len(texts) > _SHOWN:
        texts = [*texts[:_SHOWN], f"(+{len(texts) - _SHOWN} more)"]
    return " ".join(texts)


def _shape(shape: Shape) -> str:
    return shape if isinstance(shape, str) else shape_text(shape)


def layer_text(row: Row) -> str:
    """``layers[2] Linear``: where the module sits and what it is."""
    return f"{row.path} {row.type}" if row.path else row.type


def output_text(row: Row) -> str:
    if row.error is not None:
        return f"raised {row.error.split(':')[0]}"
    if not row.returned:
        return "(raised)"  # the error came from a call inside this one
    return shapes_text(row.output_keys, row.output_shapes)


def params_text(row: Row) -> str:
    return f"{row.params:,}" if row.params else "-"


def footer_lines(trace: Trace) -> list[str]:
    """``total params: 76,579 | input (32, 8) -> output (32, 27)``, then the error, if any."""
    root = trace.rows[0] if trace.rows else None
    given = shapes_text(root.input_keys, root.input_shapes) if root else "?"
    if trace.failed:
        row = trace.failed_row
        result = f"failed in {layer_text(row)}" if row is not None else "failed"
    else:
        result = "output " + (shapes_text(root.output_keys, root.output_shapes) if root else "?")
    lines = [f"total params: {trace.total_params:,} | input {given or '()'} -> {result}"]
    if trace.error is not None:
        message = str(trace.error).strip().splitlines()[:_ERROR_LINES] or [""]
        lines.append(f"error: {type(trace.error).__name__}: {message[0]}".rstrip(": "))
        lines += message[1:]
    return lines


def _cells(row: Row, indent: str) -> list[str]:
    return [
        indent * row.depth + layer_text(row),
        shapes_text(row.input_keys, row.input_shapes),
        output_text(row),
        params_text(row),
        row.dims,
    ]


def plain(trace: Trace) -> str:
    """An aligned ASCII table; the failing row starts with ``>>``."""
    table = [list(_HEADERS)] + [_cells(row, "  ") for row in trace.rows]
    columns = [c for c in range(len(_HEADERS)) if any(line[c] for line in table[1:])]
    columns = columns if 0 in columns else [0, *columns]
    widths = {c: max(len(line[c]) for line in table) for c in columns}
    lines = []
    for i, line in enumerate(table):
        row = trace.rows[i - 1] if i else None
        marker = ">> " if row is not None and row.failed else "   "
        cells = [line[c].rjust(widths[c]) if _HEADERS[c] == "params" else line[c].ljust(widths[c])
                 for c in columns]
        lines.append((marker + "  ".join(cells)).rstrip())
    return "\n".join([*lines, "", *footer_lines(trace)])


def markdown(trace: Trace) -> str:
    """A Markdown table (depth shown with non-breaking spaces), then the footer."""
    lines = ["| " + " | ".join(_HEADERS) + " |", "|---|---|---|---:|---|"]
    for row in trace.rows:
        cells = [_escape(c) for c in _cells(row, "")]
        layer = _escape(f"`{row.path}` {row.type}" if row.path else row.type)
        if row.failed:
            layer, cells[2] = f"**✗ {layer}**", f"**{cells[2]}**"
        cells[0] = "&nbsp;&nbsp;" * row.depth + layer
        lines.append("| " + " | ".join(cells) + " |")
    footer = footer_lines(trace)
    lines += ["", footer[0].replace("->", "→")]
    if len(footer) > 1:
        lines += ["", "```text", *footer[1:], "```"]
    return "\n".join(lines) + "\n"


def _escape(cell: str) -> str:
    return cell.replace("|", "\\|")


def rich_renderables(trace: Trace) -> Iterator[Any]:
    """A rich ``Table`` (the failing row in red), then the footer."""
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, pad_edge=False, header_style="bold")
    for header in _HEADERS:
        table.add_column(header, justify="right" if header == "params" else "left",
                         style="dim" if header == "dims" else None, overflow="fold")
    for row in trace.rows:
        cells = _cells(row, "  ")
        if row.failed:
            cells[0] = "  " * row.depth + "✗ " + layer_text(row)
        style = "bold red" if row.failed else ("red" if not row.returned else None)
        table.add_row(*(Text(cell) for cell in cells), style=style)
    yield table
    footer = footer_lines(trace)
    yield Text("")
    yield Text(footer[0])
    if len(footer) > 1:
        yield Text("\n".join(footer[1:]), style="red")
