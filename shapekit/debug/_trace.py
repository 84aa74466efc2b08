"""``trace(model, *inputs)``: run one forward with hooks and tabulate every module's shapes.

Unlike a summary that only works when the model runs, a trace of a *failing* forward still shows
every layer up to the failing one, then the failing layer with its inputs and the error:

>>> import torch
>>> from shapekit import nn
>>> model = nn.Sequential([nn.Embedding(27, 10), nn.Linear(30, 200), nn.Tanh()])  # no flatten
>>> t = trace(model, torch.zeros(32, 3, dtype=torch.long))
>>> t.failed, [row.output_shapes for row in t.rows]
(True, [(), ((32, 3, 10),), ()])
>>> print(t)  # doctest: +ELLIPSIS
   layer                  input        output             params  dims
   Sequential             (32, 3)      (raised)                -
     layers[0] Embedding  (32, 3)      (32, 3, 10)           270  batch=32 time=3
>>   layers[1] Linear     (32, 3, 10)  raised ShapeError   6,200  batch=32 time=3
<BLANKLINE>
total params: 6,470 | input (32, 3) -> failed in layers[1] Linear
error: ShapeError: layers[1] Linear expected x: (batch, *time, 30 = fan_in), got (32, 3, 10)
  bound so far: batch=32 time=3 (from layers[0] Embedding output)
  fix: the time axis is not flattened: put FlattenConsecutive(3) before this Linear, turning...
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, Any

import torch

from ._trace_record import Call, OpMode, Recorder, Shape, dims_text, is_layer
from ._trace_state import instrument, restore_state_on_exit, to_meta

__all__ = ["COLUMNS", "Memory", "Row", "Trace", "print_trace", "trace"]

# Every column a table can show, and the ones it shows unless told otherwise. FLOPs and memory
# cost a counting mode during the forward, so they are measured only when asked for.
COLUMNS = ("input", "output", "params", "share", "trainable", "dims", "kernel", "dtype",
           "device", "flops", "macs", "memory")
DEFAULT_COLUMNS = ("input", "output", "params", "dims")


@dataclass(frozen=True)
class Row:
    """One call of one layer (or, with ``ops=True``, one torch function) during the forward.

    ``path`` is the display path: ``layers[2]`` for the children of a ``Sequential`` with a
    ``.layers`` list (as in the lecture and in shapekit's errors), torch's dotted name elsewhere
    (``blocks.0.attn``), and ``""`` for the model itself; ``name`` is torch's own name
    (``model.get_submodule(row.name)``). ``input_shapes`` and ``output_shapes`` hold one entry per
    tensor: its shape as a tuple, or the type name of a non-tensor (``"None"``), keyed by
    ``input_keys``/``output_keys`` (``"x"``, ``"targets"``, ``"[0]"``, ``"logits"``).
    ``params`` counts the layer's own parameters (not its children's, unless they are hidden below
    ``depth=``); ``shared`` is how many of them an earlier row already counted (tied weights, a
    layer called twice), ``shared_with`` that row's path, so ``sum(r.params - r.shared)`` never
    exceeds the total. ``dims`` shows the named dims its annotation bound (``"batch=32 time=4"``).
    ``error`` is set on the failing call (``"ShapeError: ..."``, its first line) and
    ``diagnosis`` holds ``explain()``'s message for a torch error; ``returned`` is False for the
    failing call and for the calls it was made from. ``kind`` is ``"layer"`` or ``"op"`` (an op
    row's ``name`` is the layer that called it);
    ``trainable`` counts the parameters that require grad, ``flops`` what torch's FLOP counter
    counted inside the call (children included; None unless asked for), ``output_bytes``,
    ``dtypes`` and ``devices`` describe the output tensors, ``kernel`` is a convolution's
    ``kernel_size`` or the shape of the layer's ``weight`` (when the kernel column is shown).

    >>> row = Row("layers[0]", "Embedding", ((32, 8),), ((32, 8, 24),), 648, "batch=32 time=8")
    >>> row.output_shape, row.failed
    ((32, 8, 24), False)
    """

    path: str
    type: str
    input_shapes: tuple[Shape, ...]
    output_shapes: tuple[Shape, ...]
    params: int
    dims: str = ""
    error: str | None = None
    name: str = ""
    depth: int = 0
    input_keys: tuple[str, ...] = ()
    output_keys: tuple[str, ...] = ()
    returned: bool = True
    kind: str = "layer"
    trainable: int = 0
    shared: int = 0
    shared_with: str = ""
    flops: int | None = None  # None when not counted; multiply-adds are flops // 2
    output_bytes: int = 0
    dtypes: tuple[str, ...] = ()
    devices: tuple[str, ...] = ()
    kernel: tuple[int, ...] | None = None
    diagnosis: str | None = None
    share: float = 0.0  # the fraction of the total parameters this row counts (not shared ones)

    @property
    def failed(self) -> bool:
        """True for the call where the error was raised."""
        return self.error is not None

    @property
    def output_shape(self) -> tuple[int, ...] | None:
        """The shape of the first tensor output (``None`` when there is none), e.g. ``(32, 27)``."""
        return next((s for s in self.output_shapes if isinstance(s, tuple)), None)


@dataclass(frozen=True)
class Memory:
    """Bytes a forward/backward of the traced model needs: ``params`` and ``buffers`` (held
    anyway), ``gradients`` (one per trainable parameter), ``saved`` (the activations autograd keeps
    for backward, measured during the traced forward), ``output``, and ``largest`` (the largest
    layer output: its gradient is in flight during backward). ``forward_backward`` estimates the
    peak a training step adds on top of the weights and inputs, the sum of the last four; against
    the allocator's measured peak it came within 30% on the models in the tests.

    >>> m = Memory(params=400, buffers=0, gradients=400, saved=1000, output=80, largest=200)
    >>> m.forward_backward
    1680
    """

    params: int
    buffers: int
    gradients: int
    saved: int
    output: int
    largest: int = 0

    @property
    def forward_backward(self) -> int:
        return self.saved + self.gradients + self.output + self.largest


@dataclass(eq=False)
class Trace:
    """What :func:`trace` saw: ``rows`` in call order, the ``error`` if the forward failed, and the
    model's ``output`` otherwise. ``str(trace)`` is a plain-text table; ``to_markdown()``,
    ``to_csv()``, ``to_json()`` and ``to_html()`` export it; rich renders it as a rich table and a
    notebook as HTML; ``print()`` picks rich in a terminal. ``total_params`` counts every
    parameter once (tied ones too), ``trainable_params`` those that require grad; ``flops``
    (None unless the flops or macs column was asked for), ``memory`` (a :class:`Memory`, with the
    memory column), ``device`` (``"meta"`` for a meta trace) and ``explanation`` (what
    ``shapekit.explain()`` says about a torch error) complete the footer.

    >>> import torch
    >>> t = trace(torch.nn.Linear(3, 2), torch.ones(4, 3))
    >>> t.failed, t.total_params, t.rows[0].output_shapes
    (False, 8, ((4, 2),))
    """

    rows: list[Row]
    model: str  # the model's class name
    total_params: int
    error: BaseException | None = None
    output: Any = None
    trainable_params: int = 0
    columns: tuple[str, ...] = DEFAULT_COLUMNS
    explanation: BaseException | None = None  # explain()'s ShapeError for a torch error
    memory: Memory | None = None
    flops: int | None = None
    device: str | None = None

    @property
    def failed(self) -> bool:
        return self.error is not None

    @property
    def failed_row(self) -> Row | None:
        """The row of the call that raised (the innermost one), or None."""
        return next((row for row in self.rows if row.failed), None)

    def __str__(self) -> str:
        from ._trace_format import plain

        return plain(self)

    __repr__ = __str__  # the table is what one wants to see at a prompt, as with a DataFrame

    def to_markdown(self) -> str:
        """The trace as a Markdown table with the footer below it (used by the docs)."""
        from ._trace_format import markdown

        return markdown(self)

    def to_csv(self) -> str:
        """One CSV line per row with the trace's columns (numbers unformatted), header first."""
        from ._trace_format import csv_text

        return csv_text(self)

    def to_dict(self) -> dict[str, Any]:
        """Everything in the trace as plain Python values (what ``to_json()`` writes)."""
        from ._trace_format import as_dict

        return as_dict(self)

    def to_json(self) -> str:
        """The trace as JSON: the model, totals, memory, error, and every row's fields."""
        import json

        return json.dumps(self.to_dict(), indent=1)

    def to_html(self) -> str:
        """An HTML ``<table>`` with the footer; notebooks show it through ``_repr_html_``."""
        from ._trace_format import html

        return html(self)

    def _repr_html_(self) -> str:
        return self.to_html()

    def __rich_console__(self, console: Any, options: Any) -> Any:
        from ._trace_format import rich_renderables

        yield from rich_renderables(self)

    def print(self, file: IO[str] | None = None) -> None:
        """Print as a rich table when ``file`` (default stdout) is a terminal, else plain text."""
        print_trace(self, file)


def print_trace(trace: Trace, file: IO[str] | None = None) -> None:
    """Print ``trace``: a rich table when ``file`` (default stdout) is a terminal, else plain text.

    >>> import torch
    >>> print_trace(trace(torch.nn.Tanh(), torch.ones(2, 3)))
       layer  input   output  params
       Tanh   (2, 3)  (2, 3)       -
    <BLANKLINE>
    total params: 0 | input (2, 3) -> output (2, 3)
    """
    file = sys.stdout if file is None else file
    if file.isatty():
        from rich.console import Console

        Console(file=file).print(trace)
    else:
        print(trace, file=file)


def trace(
    model: Any,
    *inputs: Any,
    input_size: Sequence[int] | Sequence[Sequence[int]] | None = None,
    dtypes: Sequence[torch.dtype] | None = None,
    device: str | torch.device | None = None,
    depth: int | None = None,
    columns: Sequence[str] | None = None,
    ops: bool = False,
    grad: bool = False,
    **kwargs: Any,
) -> Trace:
    """Run ``model(*inputs, **kwargs)`` once and record every layer call: path, type, input and
    output shapes, own parameter count, and the named dims a shapekit layer bound.

    ``model`` is a ``torch.nn.Module`` or an object written the lecture's way (a plain class with
    ``__call__`` and ``.parameters()``, containers holding a ``.layers`` list). ``input_size=``
    (one size, or a list of sizes) with ``dtypes=`` builds the inputs instead of passing tensors.
    ``device="meta"`` runs the forward on the meta device: weights, inputs and activations have
    shapes and no storage, so a model larger than memory is traced; build such a model under
    ``with torch.device("meta"):`` (a real model's weights are swapped for meta copies during the
    trace and put back). ``depth=`` hides rows nested deeper (their parameters are counted on the
    row above them); ``columns=`` picks from :data:`COLUMNS` (``"flops"``, ``"macs"`` and
    ``"memory"`` are measured only when asked for); ``ops=True`` adds a row for every torch
    function a user's own forward calls (``view``, ``softmax``, ``@``).

    Never raises for an error inside the forward: the returned trace has ``.failed`` True,
    ``.error`` the exception, ``.explanation`` what ``shapekit.explain()`` makes of a torch
    error, and rows up to and including the failing call. Tracing leaves the model as it was:
    hooks removed, buffers and a plain layer's attributes (``.out``, running statistics) restored,
    train/eval mode untouched. The forward runs under ``torch.no_grad()`` unless ``grad=True`` or
    the memory column is asked for.

    >>> import torch
    >>> from shapekit import nn
    >>> model = nn.Sequential([nn.Embedding(27, 24), nn.FlattenConsecutive(2), nn.Linear(48, 128)])
    >>> t = trace(model, torch.zeros(32, 8, dtype=torch.long))
    >>> [(row.path, row.output_shape) for row in t.rows]  # doctest: +NORMALIZE_WHITESPACE
    [('', (32, 4, 128)), ('layers[0]', (32, 8, 24)), ('layers[1]', (32, 4, 48)),
     ('layers[2]', (32, 4, 128))]
    >>> t.rows[3].dims
    'batch=32 time=4'
    >>> trace(model, input_size=(32, 8), dtypes=[torch.long], depth=0).rows[0].params
    6920
    """
    if not (isinstance(model, torch.nn.Module) or is_layer(model)):
        raise TypeError(
            f"trace() expected a torch.nn.Module or a layer object with __call__ and .parameters() "
            f"(as the lecture writes them) as model, got {type(model).__name__}; "
            "fix: pass the model first, then its inputs: trace(model, x)"
        )
    shown = _columns(columns)
    meta = device is not None and torch.device(device).type == "meta"
    if input_size is not None:
        if inputs:
            raise TypeError("trace() expected either inputs or input_size=, got both; "
                            "fix: drop input_size= or the input tensors")
        inputs = _make_inputs(input_size, dtypes, device)
    elif dtypes is not None:
        raise TypeError("trace() got dtypes= without input_size=; "
                        "fix: trace(model, input_size=(32, 8), dtypes=[torch.long])")
    recorder = Recorder(model, ops=ops, dims="dims" in shown)
    # Every parameter once: the layers' own, then any the model's parameters() adds.
    params = _unique([*(p for node in recorder.nodes.values() for p in node.own),
                      *_all_params(model)])
    measure_memory = "memory" in shown
    error = output = None
    with contextlib.ExitStack() as undo:
        try:
            restore_state_on_exit(recorder, params, undo)
            instrument(recorder, undo)
            if meta:
                inputs, kwargs, copies = to_meta(recorder, inputs, kwargs, undo)
                recorder.skip_saved(copies)  # the weights' meta copies are not activations
                undo.enter_context(torch.device("meta"))  # tensors made inside forward, too
            if "flops" in shown or "macs" in shown:
                from torch.utils.flop_counter import FlopCounterMode

                recorder.flop_counter = undo.enter_context(FlopCounterMode(display=False))
            if measure_memory:
                recorder.skip_saved([*params, *_tensors((inputs, kwargs))])
                undo.enter_context(torch.autograd.graph.saved_tensors_hooks(
                    recorder.pack, _unpack))
            if ops:
                undo.enter_context(OpMode(recorder))
            undo.enter_context(torch.set_grad_enabled(
                (grad or measure_memory) and torch.is_grad_enabled()))
            output = model(*inputs, **kwargs)
        except Exception as err:
            error = err
    total = sum(p.numel() for p in params)
    rows = _rows(recorder, depth, kernels="kernel" in shown, total=total)
    explanation = _explanation(error) if error is not None else None
    if explanation is not None:
        rows = [r if not r.failed else _with(r, diagnosis=str(explanation)) for r in rows]
    trainable = sum(p.numel() for p in params if p.requires_grad)
    return Trace(
        rows=rows, model=_type_name(model), total_params=total, error=error, output=output,
        trainable_params=trainable, columns=shown, explanation=explanation,
        memory=_memory(recorder, params, output) if measure_memory else None,
        flops=recorder.flop_counter.get_total_flops() if recorder.flop_counter else None,
        device="meta" if meta else None,
    )


def _columns(columns: Sequence[str] | None) -> tuple[str, ...]:
    if columns is None:
        return DEFAULT_COLUMNS
    if isinstance(columns, str):
        columns = [c.strip() for c in columns.split(",") if c.strip()]
    unknown = [c for c in columns if c not in COLUMNS]
    if unknown:
        raise ValueError(
            f"trace() expected columns from {', '.join(COLUMNS)}; got {unknown[0]!r}; "
            "fix: e.g. columns=['input', 'output', 'params', 'flops']"
        )
    return tuple(dict.fromkeys(columns))


def _make_inputs(sizes: Any, dtypes: Any, device: Any) -> tuple[torch.Tensor, ...]:
    """Inputs built from ``input_size=``: random floats, zeros for integer dtypes (valid indices
    for any Embedding), storage-less tensors on the meta device."""
    single = all(isinstance(s, int) for s in sizes)
    shapes = [tuple(sizes)] if single else [tuple(s) for s in sizes]
    if any(not isinstance(n, int) or n < 0 for shape in shapes for n in shape):
        raise ValueError(f"trace() expected input_size= as sizes like (32, 8) or [(32, 8), "
                         f"(32,)], got {sizes!r}; fix: pass whole numbers >= 0")
    kinds = [torch.float32] * len(shapes) if dtypes is None else list(dtypes)
    if len(kinds) != len(shapes):
        example = ", ".join(["torch.float32"] * len(shapes))
        raise ValueError(f"trace() expected one dtype per input size ({len(shapes)}), got "
                         f"{len(kinds)} dtypes; fix: dtypes=[{example}]")
    generator = torch.Generator().manual_seed(0)
    made = []
    for shape, dtype in zip(shapes, kinds, strict=True):
        if torch.device(device or "cpu").type == "meta":
            made.append(torch.empty(shape, dtype=dtype, device="meta"))
        elif dtype.is_floating_point or dtype.is_complex:
            made.append(torch.randn(shape, generator=generator).to(dtype=dtype, device=device))
        else:
            made.append(torch.zeros(shape, dtype=dtype, device=device))
    return tuple(made)


def _unique(tensors: Any) -> list[torch.Tensor]:
    return list({id(t): t for t in tensors}.values())


def _all_params(model: Any) -> list[torch.Tensor]:
    from ._trace_record import _params

    return _params(model)


def _tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in _tensors(v)]
    return []


def _unpack(tensor: torch.Tensor) -> torch.Tensor:
    return tensor


def _rows(recorder: Recorder, depth: int | None, kernels: bool, total: int) -> list[Row]:
    """Rows from the recorded calls: calls below ``depth`` folded into the visible row above
    them, and every parameter counted on the first row that shows it."""
    own: dict[int, list[torch.Tensor]] = {}
    failing: dict[int, Call] = {}
    visible: list[Call] = []
    for call in recorder.calls:
        target = call
        while depth is not None and target.depth > depth and target.parent is not None:
            target = target.parent
        own.setdefault(id(target), [])
        if call.node is not None:
            own[id(target)] += call.node.own
        if call.error is not None:
            failing[id(target)] = call
        if target is call:
            visible.append(call)
    counted: dict[int, str] = {}
    rows = []
    for call in visible:
        params = _unique(own[id(call)])
        node = call.node
        path = node.path if node is not None else ""
        shared = [p for p in params if id(p) in counted]
        count, shared_count = sum(p.numel() for p in params), sum(p.numel() for p in shared)
        error = failing.get(id(call))
        rows.append(Row(
            path=path,
            type=call.op if node is None else _type_name(node.obj),
            input_shapes=tuple(shape for _, shape, _ in call.inputs),
            output_shapes=tuple(shape for _, shape, _ in call.outputs),
            params=count,
            dims=dims_text(call.memo),
            error=None if error is None else _error_line(error.error),
            name=node.name if node is not None else (call.parent.node.name
                                                      if call.parent and call.parent.node else ""),
            depth=call.depth,
            input_keys=tuple(key for key, _, _ in call.inputs),
            output_keys=tuple(key for key, _, _ in call.outputs),
            returned=call.returned,
            kind="layer" if node is not None else "op",
            trainable=sum(p.numel() for p in params if p.requires_grad),
            shared=shared_count,
            shared_with=counted[id(shared[0])] if shared else "",
            flops=call.flops,
            output_bytes=call.out_info[0],
            dtypes=call.out_info[1],
            devices=call.out_info[2],
            kernel=_kernel(node.obj) if kernels and node is not None else None,
            share=(count - shared_count) / total if total else 0.0,
        ))
        for p in params:
            counted.setdefault(id(p), path or rows[-1].type)
    return rows


def _type_name(obj: Any) -> str:
    """``Linear``; a ``torch.jit.script`` module by the class it was scripted from."""
    if isinstance(obj, torch.jit.ScriptModule):
        return getattr(obj, "original_name", type(obj).__name__)
    return type(obj).__name__


def _kernel(obj: Any) -> tuple[int, ...] | None:
    """A convolution's ``kernel_size``, else the shape of the layer's own ``weight``."""
    if isinstance(obj, torch.jit.ScriptModule):
        return None
    size = getattr(obj, "kernel_size", None)
    if isinstance(size, int):
        return (size,)
    if isinstance(size, tuple) and all(isinstance(n, int) for n in size):
        return size
    weight = obj.__dict__.get("weight") if not isinstance(obj, torch.nn.Module) else getattr(
        obj, "_parameters", {}).get("weight")
    return tuple(weight.shape) if isinstance(weight, torch.Tensor) else None


def _error_line(error: BaseException | None) -> str:
    """``"ShapeError: layers[2] Linear expected ..."``: the type and the message's first line."""
    if error is None:
        return ""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def _with(row: Row, **changes: Any) -> Row:
    import dataclasses

    return dataclasses.replace(row, **changes)


def _explanation(error: BaseException) -> BaseException | None:
    """What ``shapekit.explain()`` says about a torch error (None for anything else)."""
    from ._explain import explain_error

    return explain_error(error)


def _memory(recorder: Recorder, params: list[torch.Tensor], output: Any) -> Memory:
    buffers = _unique(b for node in recorder.nodes.values() if isinstance(node.obj, torch.nn.Module)
                      for b in node.obj.buffers(recurse=False))
    size = lambda t: t.numel() * t.element_size()  # noqa: E731
    return Memory(
        params=sum(size(p) for p in params),
        buffers=sum(size(b) for b in buffers),
        gradients=sum(size(p) for p in params if p.requires_grad),
        saved=recorder.saved_bytes,
        output=sum(size(t) for t in _tensors(output)),
        largest=max((call.out_info[0] for call in recorder.calls), default=0),
    )
