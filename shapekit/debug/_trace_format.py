"""Render a :class:`~shapekit.debug._trace.Trace` as plain text, Markdown, a rich table, CSV, a dict
(for JSON) or HTML.

Every form shows the trace's columns (``trace(..., columns=...)``; layer first), marks the failing
row, and ends with the same footer: the total parameter count, input -> output, FLOPs and memory
when they were measured, and the error (explained when ``shapekit.explain()`` knows it). Plain
text stays ASCII so it survives any terminal encoding and log file.
"""

from __future__ import annotations

import csv
import html as _html
import io
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..checking import shape_text

if TYPE_CHECKING:
    from ._trace import Row, Shape, Trace

_SHOWN = 4  # entries shown per cell before "(+N more)"
_ERROR_LINES = 8  # lines of the error message shown in the footer
_RIGHT = frozenset({"params", "share", "trainable", "flops", "macs", "memory"})  # right-aligned
_META_HINT = (
    "on the meta device tensors have shapes but no values, so a forward that reads values "
    "(.item(), if x.any(), printing a tensor) cannot run there; fix: trace a smaller config of "
    "the model without device='meta'"
)


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


def bytes_text(n: int) -> str:
    """``512 B``, ``4.0 KiB``, ``12.6 GiB``: a byte count as people read it.

    >>> bytes_text(512), bytes_text(4096), bytes_text(13_476_839_424)
    ('512 B', '4.0 KiB', '12.6 GiB')
    """
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def count_text(n: int) -> str:
    """``76,579``; ``6.74 G`` / ``2.1 M`` above a million, as FLOP counts are read.

    >>> count_text(76_579), count_text(2_100_000), count_text(6_738_415_616)
    ('76,579', '2.10 M', '6.74 G')
    """
    for scale, unit in ((1e12, "T"), (1e9, "G"), (1e6, "M")):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n:,}"


def layer_text(row: Row) -> str:
    """``layers[2] Linear``: where the layer sits and what it is (an op row: its function)."""
    return f"{row.path} {row.type}" if row.path and row.kind == "layer" else row.type


def output_text(row: Row) -> str:
    if row.error is not None:
        return f"raised {row.error.split(':')[0]}"
    if not row.returned:
        return "(raised)"  # the error came from a call inside this one
    return shapes_text(row.output_keys, row.output_shapes)


def params_text(row: Row) -> str:
    """``4,256``; a row whose parameters an earlier row counted says so: ``4,256 (tied: wte)``."""
    if not row.params:
        return "-"
    text = f"{row.params:,}"
    if row.shared:
        part = "" if row.shared == row.params else f"{row.shared:,} "
        where = "counted above" if row.shared_with == row.path else f"tied: {row.shared_with}"
        text += f" ({part}{where})"
    return text


def cell(row: Row, column: str) -> str:
    """The text of one cell (``column`` from ``shapekit.debug._trace.COLUMNS``)."""
    if column == "input":
        return shapes_text(row.input_keys, row.input_shapes)
    if column == "output":
        return output_text(row)
    if column == "params":
        return params_text(row)
    if column == "share":
        return f"{row.share:.1%}" if row.share else "-"
    if column == "trainable":
        return f"{row.trainable:,}" if row.trainable else "-"
    if column == "dims":
        return row.dims
    if column == "kernel":
        return shape_text(row.kernel) if row.kernel else ""
    if column == "dtype":
        return " ".join(row.dtypes)
    if column == "device":
        return " ".join(row.devices)
    if column in ("flops", "macs"):
        if row.flops is None:
            return ""
        n = row.flops if column == "flops" else row.flops // 2
        return count_text(n) if n else "-"
    if column == "memory":
        return bytes_text(row.output_bytes) if row.output_bytes else "-"
    raise ValueError(f"unknown column {column!r}")


def footer_lines(trace: Trace) -> list[str]:
    """``total params: 76,579 | input (32, 8) -> output (32, 27)``, then FLOPs, memory and the
    error, if any."""
    root = trace.rows[0] if trace.rows else None
    given = shapes_text(root.input_keys, root.input_shapes) if root else "?"
    if trace.failed:
        row = trace.failed_row
        result = f"failed in {layer_text(row)}" if row is not None else "failed"
    else:
        result = "output " + (shapes_text(root.output_keys, root.output_shapes) if root else "?")
    lines = [f"total params: {trace.total_params:,} | input {given or '()'} -> {result}"]
    frozen = trace.total_params - trace.trainable_params
    if "trainable" in trace.columns or (frozen and trace.trainable_params):
        lines.append(f"trainable params: {trace.trainable_params:,} | frozen params: {frozen:,}")
    if trace.flops is not None:
        lines.append(f"FLOPs: {count_text(trace.flops)} | multiply-adds: "
                     f"{count_text(trace.flops // 2)} (torch.utils.flop_counter)")
    if trace.memory is not None:
        m = trace.memory
        lines.append(f"memory: params {bytes_text(m.params)}, buffers {bytes_text(m.buffers)} | "
                     f"forward/backward adds {bytes_text(m.forward_backward)} (saved activations "
                     f"{bytes_text(m.saved)} + gradients {bytes_text(m.gradients)} + output "
                     f"{bytes_text(m.output)} + largest activation {bytes_text(m.largest)})")
    if trace.device == "meta":
        lines.append("device: meta (shapes only: no weights or activations were allocated)")
    if trace.error is not None:
        shown = trace.explanation if trace.explanation is not None else trace.error
        message = str(shown).strip().splitlines()[:_ERROR_LINES] or [""]
        lines.append(f"error: {type(shown).__name__}: {message[0]}".rstrip(": "))
        lines += message[1:]
        if trace.explanation is not None:
            raw = str(trace.error).strip().splitlines()
            lines.append(f"  torch said: {type(trace.error).__name__}: {raw[0] if raw else ''}")
        elif trace.device == "meta" and "meta" in str(trace.error):
            lines.append(f"  {_META_HINT}")
    return lines


def _shown(trace: Trace) -> list[str]:
    """The trace's columns that have something in some row (a plain torch model has no dims)."""
    return [c for c in trace.columns if any(cell(row, c) for row in trace.rows)]


def _columns(trace: Trace) -> list[str]:
    return ["layer", *_shown(trace)]


def _cells(headers: list[str], row: Row, indent: str) -> list[str]:
    return [indent * row.depth + layer_text(row), *(cell(row, c) for c in headers[1:])]


def plain(trace: Trace) -> str:
    """An aligned ASCII table; the failing row starts with ``>>``; empty columns are left out."""
    headers = _columns(trace)
    table = [headers] + [_cells(headers, row, "  ") for row in trace.rows]
    shown = range(len(headers))
    widths = {c: max(len(line[c]) for line in table) for c in shown}
    lines = []
    for i, line in enumerate(table):
        row = trace.rows[i - 1] if i else None
        marker = ">> " if row is not None and row.failed else "   "
        cells = [line[c].rjust(widths[c]) if headers[c] in _RIGHT else line[c].ljust(widths[c])
                 for c in shown]
        lines.append((marker + "  ".join(cells)).rstrip())
    return "\n".join([*lines, "", *footer_lines(trace)])


def markdown(trace: Trace) -> str:
    """A Markdown table (depth shown with non-breaking spaces), then the footer."""
    headers = _columns(trace)
    align = ["---:" if h in _RIGHT else "---" for h in headers]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(align) + "|"]
    for row in trace.rows:
        cells = [_escape(c) for c in _cells(headers, row, "")]
        layer = _escape(f"`{row.path}` {row.type}" if row.path and row.kind == "layer"
                        else row.type)
        if row.failed:
            layer = f"**✗ {layer}**"
            if "output" in headers:
                out = headers.index("output")
                cells[out] = f"**{cells[out]}**"
        cells[0] = "&nbsp;&nbsp;" * row.depth + layer
        lines.append("| " + " | ".join(cells) + " |")
    footer = footer_lines(trace)
    error_at = next((i for i, line in enumerate(footer) if line.startswith("error:")), len(footer))
    lines += ["", *(line.replace("->", "→") for line in footer[:error_at])]
    if error_at < len(footer):
        lines += ["", "```text", *footer[error_at:], "```"]
    return "\n".join(lines) + "\n"


def _escape(text: str) -> str:
    return text.replace("|", "\\|")


def csv_text(trace: Trace) -> str:
    """Header, then one line per row: path, type, depth, the columns (numbers as plain integers),
    and the error."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["path", "type", "depth", *trace.columns, "error"])
    for row in trace.rows:
        writer.writerow([row.path, row.type, row.depth,
                         *(_raw(row, c) for c in trace.columns), row.error or ""])
    return out.getvalue()


def _raw(row: Row, column: str) -> Any:
    """A cell as a number where it is one (params, FLOPs, bytes); else its text."""
    numbers = {"params": row.params, "share": round(row.share, 6),
               "trainable": row.trainable, "memory": row.output_bytes,
               "flops": row.flops, "macs": None if row.flops is None else row.flops // 2}
    if column in numbers:
        value = numbers[column]
        return "" if value is None else value
    return cell(row, column)


def as_dict(trace: Trace) -> dict[str, Any]:
    """The trace as JSON-ready values: totals, memory, error, and every row's fields."""
    import dataclasses

    memory = None
    if trace.memory is not None:
        memory = {**dataclasses.asdict(trace.memory),
                  "forward_backward": trace.memory.forward_backward}
    return {
        "model": trace.model,
        "total_params": trace.total_params,
        "trainable_params": trace.trainable_params,
        "flops": trace.flops,
        "memory": memory,
        "device": trace.device,
        "columns": list(trace.columns),
        "failed": trace.failed,
        "error": None if trace.error is None else f"{type(trace.error).__name__}: {trace.error}",
        "explanation": None if trace.explanation is None else str(trace.explanation),
        "rows": [{**dataclasses.asdict(row), "failed": row.failed} for row in trace.rows],
    }


def html(trace: Trace) -> str:
    """A ``<table>`` (the failing row in red) and the footer in a ``<pre>``."""
    headers = _columns(trace)
    esc = _html.escape
    parts = ['<div class="shapekit-trace"><table>', "<thead><tr>"]
    parts += [f'<th style="text-align:{"right" if h in _RIGHT else "left"}">{esc(h)}</th>'
              for h in headers]
    parts.append("</tr></thead><tbody>")
    for row in trace.rows:
        style = ' style="color:#c00;font-weight:bold"' if row.failed else ""
        parts.append(f"<tr{style}>")
        for header, text in zip(headers, _cells(headers, row, ""), strict=True):
            if header == "layer":
                mark = "✗ " if row.failed else ""
                text = "&nbsp;&nbsp;" * row.depth + mark + esc(text)
            else:
                text = esc(text)
            align = "right" if header in _RIGHT else "left"
            parts.append(f'<td style="text-align:{align};font-family:monospace">{text}</td>')
        parts.append("</tr>")
    parts.append("</tbody></table>")
    parts.append(f"<pre>{esc(chr(10).join(footer_lines(trace)))}</pre></div>")
    return "".join(parts)


def rich_renderables(trace: Trace) -> Iterator[Any]:
    """A rich ``Table`` (the failing row in red), then the footer."""
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, pad_edge=False, header_style="bold")
    headers = _columns(trace)
    for header in headers:
        table.add_column(header, justify="right" if header in _RIGHT else "left",
                         style="dim" if header == "dims" else None, overflow="fold")
    for row in trace.rows:
        cells = _cells(headers, row, "  ")
        if row.failed:
            cells[0] = "  " * row.depth + "✗ " + layer_text(row)
        style = "bold red" if row.failed else ("red" if not row.returned else None)
        table.add_row(*(Text(c) for c in cells), style=style)
    yield table
    footer = footer_lines(trace)
    error_at = next((i for i, line in enumerate(footer) if line.startswith("error:")), len(footer))
    yield Text("")
    yield Text("\n".join(footer[:error_at]))
    if error_at < len(footer):
        yield Text("\n".join(footer[error_at:]), style="red")
