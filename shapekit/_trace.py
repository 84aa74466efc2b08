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

import dataclasses
import functools
import inspect
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import IO, Any

import torch

from . import _dims
from ._shaped import _array_hint, _hints
from .nn import Sequential

__all__ = ["Row", "Trace", "print_trace", "trace"]

Shape = tuple[int, ...] | str  # a tensor's shape, or the type name of anything else

_MAX_ENTRIES = 32  # shapes recorded per input or output, so a list of 1000 tensors stays readable
_MAX_DEPTH = 3  # how deep nested tuples/lists/dicts are opened


@dataclass(frozen=True)
class Row:
    """One call of one module during the traced forward.

    ``path`` is the display path: ``layers[2]`` for the children of a shapekit ``Sequential`` (as
    in the lecture and in shapekit's errors), torch's dotted name elsewhere (``blocks.0.attn``), and
    ``""`` for the model itself; ``name`` is torch's own name (``model.get_submodule(row.name)``).
    ``input_shapes`` and ``output_shapes`` hold one entry per tensor: its shape as a tuple, or the
    type name of a non-tensor (``"None"``), keyed by ``input_keys``/``output_keys`` (``"x"``,
    ``"targets"``, ``"[0]"``, ``"logits"``). ``params`` counts the module's own parameters (not its
    children's); ``dims`` shows the named dims its annotation bound (``"batch=32 time=4"``).
    ``error`` is set on the failing call (``"ShapeError: ..."``, its first line); ``returned`` is
    False for it and for the calls it was made from.

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

    @property
    def failed(self) -> bool:
        """True for the call where the error was raised."""
        return self.error is not None

    @property
    def output_shape(self) -> tuple[int, ...] | None:
        """The shape of the first tensor output (``None`` when there is none), e.g. ``(32, 27)``."""
        return next((s for s in self.output_shapes if isinstance(s, tuple)), None)


@dataclass(eq=False)
class Trace:
    """What :func:`trace` saw: ``rows`` in call order, the ``error`` if the forward failed, and the
    model's ``output`` otherwise. ``str(trace)`` is a plain-text table, ``to_markdown()`` a Markdown
    one, and rich renders it as a rich table; ``print()`` picks rich in a terminal.

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


def trace(model: torch.nn.Module, *inputs: Any, grad: bool = False, **kwargs: Any) -> Trace:
    """Run ``model(*inputs, **kwargs)`` once and record every module call: path, type, input and
    output shapes, own parameter count, and the named dims a shapekit layer bound.

    Never raises for an error inside the forward: the returned trace has ``.failed`` True,
    ``.error`` the exception, and rows up to and including the failing call. Hooks are removed
    afterwards and buffers (BatchNorm running statistics) restored, so tracing leaves the model as
    it was; its train/eval mode is not touched. The forward runs under ``torch.no_grad()``
    unless ``grad=True``.

    >>> import torch
    >>> from shapekit import nn
    >>> model = nn.Sequential([nn.Embedding(27, 24), nn.FlattenConsecutive(2), nn.Linear(48, 128)])
    >>> t = trace(model, torch.zeros(32, 8, dtype=torch.long))
    >>> [(row.path, row.output_shape) for row in t.rows]  # doctest: +NORMALIZE_WHITESPACE
    [('', (32, 4, 128)), ('layers[0]', (32, 8, 24)), ('layers[1]', (32, 4, 48)),
     ('layers[2]', (32, 4, 128))]
    >>> t.rows[3].dims
    'batch=32 time=4'
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(
            f"trace() expected a torch.nn.Module as model, got {type(model).__name__}; "
            "fix: pass the model first, then its inputs: trace(model, x)"
        )
    recorder = _Recorder(model)
    saved = [(m, name, b, b.detach().clone())
             for m in recorder.modules for name, b in m._buffers.items() if b is not None]
    handles = []
    error = output = None
    try:
        for module in recorder.modules:
            handles.append(module.register_forward_pre_hook(recorder.before, with_kwargs=True))
            # always_call: the hook also runs when forward raises, which is how the failing
            # call is found (torch runs it inside its except block, so sys.exc_info() is the error).
            handles.append(
                module.register_forward_hook(recorder.after, with_kwargs=True, always_call=True)
            )
        with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
            output = model(*inputs, **kwargs)
    except Exception as err:
        error = err
    finally:
        for handle in handles:
            handle.remove()
        with torch.no_grad():
            for module, name, buffer, values in saved:
                module._buffers[name] = buffer
                if buffer.shape == values.shape:
                    buffer.copy_(values)
    total = sum(p.numel() for p in model.parameters())
    return Trace(recorder.rows(), type(model).__name__, total, error, output)


@dataclass
class _Call:
    """A module call while the forward runs; becomes a :class:`Row` at the end."""

    module: torch.nn.Module
    depth: int
    handling: BaseException | None  # the exception already being handled when the call began
    inputs: list[tuple[str, Shape]]
    memo: _dims.Memo | None
    arguments: dict[str, Any] | None  # kept only to bind the output's dims, then dropped
    outputs: list[tuple[str, Shape]] = field(default_factory=list)
    returned: bool = False
    error: BaseException | None = None


class _Recorder:
    """The hooks' shared state: the calls in order and the stack of calls still running."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.names: dict[int, tuple[str, str]] = {}  # id(module) -> (torch name, display path)
        self.modules: list[torch.nn.Module] = []
        self._walk(model, "", "")
        self.calls: list[_Call] = []
        self.stack: list[_Call] = []
        self.raised: list[BaseException] = []  # errors already attributed to the call that raised

    def _walk(self, module: torch.nn.Module, name: str, path: str) -> None:
        if id(module) in self.names:  # a shared module keeps its first name, as in named_modules()
            return
        self.names[id(module)] = (name, path)
        self.modules.append(module)
        lecture = isinstance(module, Sequential)  # its children are layers[i], as in its errors
        for child_name, child in module.named_children():
            piece = f"layers[{child_name}]" if lecture else child_name
            self._walk(child, _join(name, child_name), _join(path, piece))

    def before(self, module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        arguments = _bind(module, args, kwargs)
        inputs: list[tuple[str, Shape]] = []
        for key, value in arguments.items():
            _flatten(value, key, inputs, 0)
        memo = _input_dims(module, arguments)
        # Holding every module's inputs until the end would keep all activations alive.
        call = _Call(module, len(self.stack), sys.exc_info()[1], inputs, memo,
                     arguments if memo is not None else None)
        self.calls.append(call)
        self.stack.append(call)

    def after(self, module: torch.nn.Module, args: tuple, kwargs: dict, result: Any) -> None:
        index = next((i for i in range(len(self.stack) - 1, -1, -1)
                      if self.stack[i].module is module), None)
        if index is None:  # another pre-hook raised before ours ran: nothing was recorded
            return
        call = self.stack[index]
        del self.stack[index:]
        arguments, call.arguments = call.arguments, None
        error = sys.exc_info()[1]
        if error is not None and error is not call.handling:
            # The first call to see an error raised it; the calls it was made from only pass it on.
            if not any(error is seen for seen in self.raised):
                call.error = error
                self.raised.append(error)
            return
        call.returned = True
        _flatten(result, "", call.outputs, 0)
        if call.memo is not None and arguments is not None:
            _output_dims(module, call.memo, arguments, result)

    def rows(self) -> list[Row]:
        rows = []
        for call in self.calls:
            name, path = self.names[id(call.module)]
            rows.append(Row(
                path=path,
                type=type(call.module).__name__,
                input_shapes=tuple(shape for _, shape in call.inputs),
                output_shapes=tuple(shape for _, shape in call.outputs),
                params=sum(p.numel() for p in call.module.parameters(recurse=False)),
                dims=_dims_text(call.memo),
                error=None if call.error is None else _error_line(call.error),
                name=name,
                depth=call.depth,
                input_keys=tuple(key for key, _ in call.inputs),
                output_keys=tuple(key for key, _ in call.outputs),
                returned=call.returned,
            ))
        return rows


def _dims_text(memo: _dims.Memo | None) -> str:
    """``batch=32 time=4``; a variadic axis that matched no axes (``time=()``) is left out."""
    if memo is None:
        return ""
    sizes = {name: size for name, size in memo.sizes.items() if size != ()}
    return _dims.Memo(sizes, {name: memo.sources[name] for name in sizes}).render()


def _join(head: str, tail: str) -> str:
    return f"{head}.{tail}" if head else tail


def _error_line(error: BaseException) -> str:
    """``"ShapeError: layers[2] Linear expected ..."``: the type and the message's first line."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def _forward_function(module: torch.nn.Module) -> Any:
    forward = module.forward
    return getattr(forward, "__func__", forward)


@functools.lru_cache(maxsize=512)
def _signature(function: Any) -> inspect.Signature | None:
    try:
        return inspect.signature(function)
    except (TypeError, ValueError):
        return None


@functools.lru_cache(maxsize=512)
def _forward_hints(function: Any) -> dict[str, Any]:
    return _hints(function)


def _bind(module: torch.nn.Module, args: tuple, kwargs: dict) -> dict[str, Any]:
    """The call's arguments by parameter name (``x``, ``targets``), as the forward sees them."""
    function = _forward_function(module)
    signature = _signature(function)
    bound = None
    if signature is not None:
        bound_self = function is not module.forward  # a method: bind self too, then drop it
        try:
            bound = signature.bind(*((module, *args) if bound_self else args), **kwargs)
        except TypeError:
            bound = None
    if bound is None:  # the call does not fit the signature; the forward will say why
        return {**{f"args[{i}]": a for i, a in enumerate(args)}, **kwargs}
    arguments: dict[str, Any] = {}
    for i, (name, value) in enumerate(bound.arguments.items()):
        kind = signature.parameters[name].kind  # type: ignore[union-attr]
        if i == 0 and bound_self:
            continue
        if kind is inspect.Parameter.VAR_POSITIONAL:
            arguments.update({f"{name}[{j}]": v for j, v in enumerate(value)})
        elif kind is inspect.Parameter.VAR_KEYWORD:
            arguments.update(value)
        else:
            arguments[name] = value
    return arguments


def _flatten(value: Any, key: str, out: list[tuple[str, Shape]], depth: int) -> None:
    """Append ``(key, shape)`` for every tensor in ``value``, opening tuples, lists, dicts,
    named tuples, dataclasses and objects with tensor attributes (a HuggingFace-style output)."""
    if len(out) >= _MAX_ENTRIES:
        return
    if isinstance(value, torch.Tensor):
        out.append((key, tuple(value.shape)))
        return
    items = _items(value, key) if depth < _MAX_DEPTH else None
    if not items:
        out.append((key, "None" if value is None else type(value).__name__))
        return
    for item_key, item in items:
        _flatten(item, item_key, out, depth + 1)


def _items(value: Any, key: str) -> list[tuple[str, Any]] | None:
    if isinstance(value, torch.nn.Module):
        return None
    if isinstance(value, Mapping):
        return [(_join(key, str(k)), v) for k, v in value.items()]
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a named tuple
        return [(_join(key, f), getattr(value, f)) for f in value._fields]
    if isinstance(value, (tuple, list)):
        return [(f"{key}[{i}]", v) for i, v in enumerate(value)]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [(_join(key, f.name), getattr(value, f.name)) for f in dataclasses.fields(value)]
    attributes = getattr(value, "__dict__", None)
    if isinstance(attributes, dict):
        tensors = [(_join(key, k), v) for k, v in attributes.items()
                   if not k.startswith("_") and isinstance(v, (torch.Tensor, tuple, list, dict))]
        if any(_has_tensor(v) for _, v in tensors):
            return tensors
    return None


def _has_tensor(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return True
    if isinstance(value, Mapping):
        value = list(value.values())
    return isinstance(value, (tuple, list)) and any(isinstance(v, torch.Tensor) for v in value)


def _input_dims(module: torch.nn.Module, arguments: dict[str, Any]) -> _dims.Memo | None:
    """Bind the forward annotation's named dims to the inputs; None when it has no array hints."""
    hints = _forward_hints(_forward_function(module))
    arrays = [(name, _array_hint(hints.get(name), value), value)
              for name, value in arguments.items()]
    arrays = [(name, hint, value) for name, hint, value in arrays if hint is not None]
    if not arrays and _array_hint(hints.get("return"), True) is None:
        return None
    memo = _dims.Memo()
    context = {"self": module, **arguments}
    for name, hint, value in arrays:
        if not _match(hint, value, memo, name, context):
            break  # the sizes bound before the mismatch are what a failing call shows
    return memo


def _output_dims(module: torch.nn.Module, memo: _dims.Memo, arguments: dict, result: Any) -> None:
    hint = _array_hint(_forward_hints(_forward_function(module)).get("return"), result)
    if hint is not None:
        _match(hint, result, memo, "the output", {"self": module, **arguments})


def _match(hint: Any, value: Any, memo: _dims.Memo, name: str, context: dict) -> bool:
    if not isinstance(value, torch.Tensor):
        return False
    try:
        dims = _dims.parse(hint.dim_str)
    except ValueError:  # an annotation this parser does not know; show no dims rather than fail
        return False
    return _dims.match(dims, tuple(value.shape), memo, name, context) is None
