"""What :func:`shapekit.trace` records while a model's forward runs: the walk of its layers
before the call, then every layer call with its shapes, FLOPs and saved activations.

Two kinds of layers are walked: ``torch.nn.Module``s (their children) and objects written the way
the lecture writes its layers (plain classes with ``__call__``, ``.parameters()`` and, for
containers, a ``.layers`` list; layer-valued attributes). A ``torch.jit.script`` module is one
row with no children. How the calls reach the recorder is :mod:`shapekit.debug._trace_state`'s part.
With ``ops=True`` a ``torch.overrides.TorchFunctionMode`` also records the torch functions a
user's own forward calls (``view``, ``F.softmax``, ``@``, ...).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from .. import _torch_compat as _compat
from ..checking import annotations_of, array_hint
from ..checking import dims as _dims
from ..nn import Sequential

Shape = tuple[int, ...] | str  # a tensor's shape, or the type name of anything else

_MAX_ENTRIES = 32  # shapes recorded per input or output, so a list of 1000 tensors stays readable
_MAX_DEPTH = 3  # how deep nested tuples/lists/dicts are opened

# Torch functions that read a tensor rather than compute one: never an ``ops=True`` row.
_NOT_OPS = frozenset({
    "__get__", "__set__", "size", "dim", "numel", "stride", "__len__", "__iter__", "__bool__",
    "__format__", "__repr__", "__hash__", "__index__", "__int__", "__float__", "item", "tolist",
    "is_floating_point", "is_complex", "is_contiguous", "data_ptr", "element_size", "__reduce_ex__",
    "__setstate__", "__deepcopy__", "requires_grad_", "untyped_storage", "storage_offset",
    "nelement", "ndimension", "type", "get_device", "is_nonzero", "__array__", "__contains__",
})
_OPERATORS = {
    "__matmul__": "@", "__rmatmul__": "@", "__add__": "+", "__radd__": "+", "__iadd__": "+=",
    "__sub__": "-", "__rsub__": "-", "__isub__": "-=", "__mul__": "*", "__rmul__": "*",
    "__imul__": "*=", "__truediv__": "/", "__rtruediv__": "/", "__itruediv__": "/=",
    "__pow__": "**", "__rpow__": "**", "__neg__": "-x", "__invert__": "~", "__getitem__": "x[...]",
    "__setitem__": "x[...]=", "__floordiv__": "//", "__mod__": "%", "__and__": "&", "__or__": "|",
    "__eq__": "==", "__ne__": "!=", "__lt__": "<", "__le__": "<=", "__gt__": ">", "__ge__": ">=",
}


def is_layer(obj: Any) -> bool:
    """True for an object that follows the lecture's layer protocol: callable, with a
    ``parameters()`` method or a ``layers`` list (and not a tensor, class or function)."""
    if isinstance(obj, (torch.Tensor, type)) or not callable(obj) or inspect.isroutine(obj):
        return False
    return callable(getattr(obj, "parameters", None)) or isinstance(getattr(obj, "layers", None),
                                                                      (list, tuple))


@dataclass
class Node:
    """One layer of the model as walked before the forward: its names and its own parameters."""

    obj: Any
    name: str  # torch's dotted name ("blocks.0.attn", "layers.2"), "" for the model
    path: str  # the display path ("layers[2]", "blocks.0.attn")
    depth: int
    own: list[torch.Tensor]  # parameters that belong to this layer and not to a child
    hooked: bool  # an nn.Module seen through hooks; else its class's __call__ is wrapped


@dataclass
class Call:
    """A layer call (or, with ``ops=True``, a torch function call) while the forward runs."""

    node: Node | None  # None for a torch function
    op: str  # the function's name for an op row, "" for a layer
    depth: int
    handling: BaseException | None  # the exception already being handled when the call began
    inputs: list[tuple[str, Shape, torch.Tensor | None]]
    memo: _dims.Memo | None
    arguments: dict[str, Any] | None  # kept only to bind the output's dims, then dropped
    parent: Call | None = None
    flops_before: int = 0
    saved_before: int = 0
    outputs: list[tuple[str, Shape, torch.Tensor | None]] = field(default_factory=list)
    out_info: tuple[int, tuple[str, ...], tuple[str, ...]] = (0, (), ())  # bytes, dtypes, devices
    returned: bool = False
    error: BaseException | None = None
    flops: int | None = None
    saved: int = 0


def _params(obj: Any) -> list[torch.Tensor]:
    if isinstance(obj, torch.nn.Module):
        return list(obj.parameters())
    try:
        found = obj.parameters() if callable(getattr(obj, "parameters", None)) else []
        return [p for p in found if isinstance(p, torch.Tensor)]
    except Exception:  # a broken parameters() is the user's to find; the trace shows no count
        return []


def _plain_children(obj: Any) -> list[tuple[str, str, Any]]:
    """(name, path piece, child) for a plain layer: ``layers[i]``, then layer-valued attributes
    and lists of layers in other attributes (``blocks[0]``)."""
    children: list[tuple[str, str, Any]] = []
    attributes = getattr(obj, "__dict__", {})
    for key, value in attributes.items():
        if key.startswith("_"):
            continue
        if isinstance(value, (list, tuple)) and not isinstance(value, torch.Tensor):
            items = [(f"{key}.{i}", f"{key}[{i}]", v) for i, v in enumerate(value)]
            children += [(n, p, v) for n, p, v in items
                         if isinstance(v, torch.nn.Module) or is_layer(v)]
        elif isinstance(value, torch.nn.Module) or (is_layer(value) and key != "out"):
            children.append((key, key, value))
    return children


class Recorder:
    """The walk of the model and the calls made while its forward runs."""

    def __init__(self, model: Any, *, ops: bool, dims: bool = True) -> None:
        self.nodes: dict[int, Node] = {}  # id(layer) -> its node, in walk order
        self._walk(model, "", "", 0)
        self.calls: list[Call] = []
        self.stack: list[Call] = []
        self.raised: list[BaseException] = []  # errors already attributed to the call that raised
        self.ops = ops
        self.dims = dims  # bind the annotations' named dims (the dims column)
        self.busy = False  # our own hook code runs torch functions the op mode must not record
        self.flop_counter: Any = None
        self.saved_bytes = 0
        self._saved_keys: set[Any] = set()
        self._skip_keys: set[Any] = set()

    def _walk(self, obj: Any, name: str, path: str, depth: int) -> None:
        if id(obj) in self.nodes:  # a shared layer keeps its first name, as in named_modules()
            return
        script = isinstance(obj, torch.jit.ScriptModule)  # one row: hooks are refused, no children
        if isinstance(obj, torch.nn.Module):
            own = [] if script else list(obj.parameters(recurse=False))
            lecture = isinstance(obj, Sequential)  # its children are layers[i], as in its errors
            children = [] if script else [
                (n, f"layers[{n}]" if lecture else n, c) for n, c in obj.named_children()]
        else:
            children = _plain_children(obj)
            inner = {id(p) for _, _, c in children for p in _params(c)}
            own = [p for p in _params(obj) if id(p) not in inner]
        if script:
            own = list(obj.parameters())
        hooked = isinstance(obj, torch.nn.Module) and not script
        node = Node(obj, name, path, depth, own, hooked)
        self.nodes[id(obj)] = node
        for child_name, piece, child in children:
            self._walk(child, _join(name, child_name), _join(path, piece), depth + 1)

    # --- recording ------------------------------------------------------------------------------

    def before(self, obj: Any, args: tuple, kwargs: dict, function: Any) -> None:
        self.busy = True
        try:
            node = self.nodes[id(obj)]
            arguments = _bind(function, obj, args, kwargs)
            inputs: list[tuple[str, Shape, torch.Tensor | None]] = []
            for key, value in arguments.items():
                _flatten(value, key, inputs, 0)
            inputs = [(k, s, None) for k, s, _ in inputs]  # holding tensors keeps activations alive
            memo = _input_dims(function, obj, arguments) if self.dims else None
            call = Call(node, "", len(self.stack), sys.exc_info()[1], inputs, memo,
                        arguments if memo is not None else None)
            self._start(call)
        finally:
            self.busy = False

    def _start(self, call: Call) -> None:
        if self.flop_counter is not None:
            call.flops_before = self.flop_counter.get_total_flops()
        call.saved_before = self.saved_bytes
        call.parent = self.stack[-1] if self.stack else None
        self.calls.append(call)
        self.stack.append(call)

    def after(self, obj: Any, result: Any, function: Any) -> None:
        self.busy = True
        try:
            index = next((i for i in range(len(self.stack) - 1, -1, -1)
                          if self.stack[i].node is not None and self.stack[i].node.obj is obj),
                         None)
            if index is None:  # another pre-hook raised before ours ran: nothing was recorded
                return
            call = self.stack[index]
            del self.stack[index:]
            arguments, call.arguments = call.arguments, None
            if self._finish(call, result) and call.memo is not None and arguments is not None:
                _output_dims(function, obj, call.memo, arguments, result)
        finally:
            self.busy = False

    def _finish(self, call: Call, result: Any) -> bool:
        """Record how ``call`` ended; True when it returned."""
        if self.flop_counter is not None:
            call.flops = self.flop_counter.get_total_flops() - call.flops_before
        call.saved = self.saved_bytes - call.saved_before
        error = sys.exc_info()[1]
        if error is not None and error is not call.handling:
            # The first call to see an error raised it; the calls it was made from only pass it on.
            if not any(error is seen for seen in self.raised):
                call.error = error
                self.raised.append(error)
            return False
        call.returned = True
        outputs: list[tuple[str, Shape, torch.Tensor | None]] = []
        _flatten(result, "", outputs, 0)
        tensors = [t for _, _, t in outputs if t is not None]
        call.out_info = (
            sum(t.numel() * t.element_size() for t in tensors),
            tuple(dict.fromkeys(str(t.dtype).removeprefix("torch.") for t in tensors)),
            tuple(dict.fromkeys(str(t.device) for t in tensors)),
        )
        call.outputs = [(k, s, None) for k, s, _ in outputs]
        return True

    # --- torch functions (ops=True) -------------------------------------------------------------

    def op(self, func: Any, args: tuple, kwargs: dict) -> Any:
        name = getattr(func, "__name__", "")
        parent = self.stack[-1] if self.stack else None
        private = name.startswith("_") and name not in _OPERATORS  # torch's own bookkeeping
        if (self.busy or parent is None or parent.node is None or name in _NOT_OPS or private
                or _library_layer(parent.node.obj)):
            return func(*args, **kwargs)
        inputs: list[tuple[str, Shape, torch.Tensor | None]] = []
        for i, value in enumerate(args):
            _flatten(value, f"[{i}]", inputs, 1)
        inputs = [(k, s, None) for k, s, _ in inputs if isinstance(s, tuple)]
        call = Call(None, _OPERATORS.get(name, name), len(self.stack), sys.exc_info()[1], inputs,
                    None, None)
        self._start(call)
        try:
            result = func(*args, **kwargs)
        except BaseException:
            self.stack.pop()
            self._finish(call, None)
            raise
        self.stack.pop()
        self._finish(call, result)
        return result

    # --- memory kept for backward ---------------------------------------------------------------

    def skip_saved(self, tensors: list[torch.Tensor]) -> None:
        """Tensors already allocated before the forward (weights, inputs): not activations."""
        self._skip_keys.update(_storage_key(t) for t in tensors)

    def pack(self, tensor: torch.Tensor) -> torch.Tensor:
        key = _storage_key(tensor)
        if key not in self._skip_keys and key not in self._saved_keys:
            self._saved_keys.add(key)
            if tensor.device.type == "meta":  # no storage: the size of the tensor it views
                base = _compat.storage_owner(tensor)
                self.saved_bytes += base.numel() * base.element_size()
            else:
                self.saved_bytes += tensor.untyped_storage().nbytes()
        return tensor


class OpMode(TorchFunctionMode):
    """Sends every torch function call to :meth:`Recorder.op` (``trace(..., ops=True)``)."""

    def __init__(self, recorder: Recorder) -> None:
        super().__init__()
        self.recorder = recorder

    def __torch_function__(self, func, types, args=(), kwargs=None):
        return self.recorder.op(func, args, kwargs or {})


def _library_layer(obj: Any) -> bool:
    """torch's and shapekit's own layers: their internals are not the user's ops."""
    module = type(obj).__module__
    return module.startswith(("torch.", "shapekit.")) or module == "torch"


def _storage_key(tensor: torch.Tensor) -> Any:
    if tensor.device.type == "meta":  # every meta tensor has data_ptr 0
        base = _compat.storage_owner(tensor)
        return ("meta", id(base))
    return (tensor.device.type, tensor.untyped_storage().data_ptr())


def _join(head: str, tail: str) -> str:
    return f"{head}.{tail}" if head else tail


@functools.lru_cache(maxsize=512)
def _signature(function: Any) -> inspect.Signature | None:
    try:
        return inspect.signature(function)
    except (TypeError, ValueError):
        return None


@functools.lru_cache(maxsize=512)
def _function_hints(function: Any) -> dict[str, Any]:
    try:
        return annotations_of(function)
    except Exception:
        return {}


@functools.lru_cache(maxsize=512)
def _positional(function: Any) -> tuple[str, ...] | None:
    """The names of the leading plain positional parameters, when they are all there is besides
    ones with defaults (the common ``forward(self, x)``): a call can be bound without inspect."""
    signature = _signature(function)
    if signature is None:
        return None
    plain = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    names = []
    for parameter in signature.parameters.values():
        if parameter.kind not in plain:
            return None
        names.append(parameter.name)
    return tuple(names)


def _bind(function: Any, obj: Any, args: tuple, kwargs: dict) -> dict[str, Any]:
    """The call's arguments by parameter name (``x``, ``targets``), as the forward sees them."""
    method = not isinstance(obj, torch.nn.Module) or function is not obj.forward
    names = None if kwargs else _positional(function)
    if names is not None and len(args) + method <= len(names):
        return dict(zip(names[method:], args, strict=False))  # defaults left out, as bind does
    signature = _signature(function)
    bound = None
    if signature is not None:
        try:
            bound = signature.bind(*((obj, *args) if method else args), **kwargs)
        except TypeError:
            bound = None
    if bound is None:  # the call does not fit the signature; the forward will say why
        return {**{f"args[{i}]": a for i, a in enumerate(args)}, **kwargs}
    arguments: dict[str, Any] = {}
    for i, (name, value) in enumerate(bound.arguments.items()):
        kind = signature.parameters[name].kind  # type: ignore[union-attr]
        if i == 0 and method:  # self
            continue
        if kind is inspect.Parameter.VAR_POSITIONAL:
            arguments.update({f"{name}[{j}]": v for j, v in enumerate(value)})
        elif kind is inspect.Parameter.VAR_KEYWORD:
            arguments.update(value)
        else:
            arguments[name] = value
    return arguments


def _flatten(value: Any, key: str, out: list, depth: int) -> None:
    """Append ``(key, shape, tensor)`` for every tensor in ``value``, opening tuples, lists,
    dicts, named tuples, dataclasses and objects with tensor attributes (HuggingFace outputs)."""
    if len(out) >= _MAX_ENTRIES:
        return
    if isinstance(value, torch.Tensor):
        out.append((key, tuple(value.shape), value))
        return
    items = _items(value, key) if depth < _MAX_DEPTH else None
    if not items:
        out.append((key, "None" if value is None else type(value).__name__, None))
        return
    for item_key, item in items:
        _flatten(item, item_key, out, depth + 1)


def _items(value: Any, key: str) -> list[tuple[str, Any]] | None:
    if isinstance(value, torch.nn.Module) or is_layer(value):
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


def _input_dims(function: Any, obj: Any, arguments: dict[str, Any]) -> _dims.Memo | None:
    """Bind the forward annotation's named dims to the inputs; None when it has no array hints."""
    hints = _function_hints(function)
    if not hints:
        return None
    arrays = [(name, array_hint(hints.get(name), value), value)
              for name, value in arguments.items()]
    arrays = [(name, hint, value) for name, hint, value in arrays if hint is not None]
    if not arrays and array_hint(hints.get("return"), True) is None:
        return None
    memo = _dims.Memo()
    context = {"self": obj, **arguments}
    for name, hint, value in arrays:
        if not _match(hint, value, memo, name, context):
            break  # the sizes bound before the mismatch are what a failing call shows
    return memo


def _output_dims(function: Any, obj: Any, memo: _dims.Memo, arguments: dict, result: Any) -> None:
    hint = array_hint(_function_hints(function).get("return"), result)
    if hint is not None:
        _match(hint, result, memo, "the output", {"self": obj, **arguments})


def _match(hint: Any, value: Any, memo: _dims.Memo, name: str, context: dict) -> bool:
    if not isinstance(value, torch.Tensor):
        return False
    try:
        dims = _parse(hint.dim_str)
    except ValueError:  # an annotation this parser does not know; show no dims rather than fail
        return False
    return _dims.match(dims, tuple(value.shape), memo, name, context) is None


@functools.lru_cache(maxsize=512)
def _parse(dim_str: str) -> tuple[_dims.Dim, ...]:
    return _dims.parse(dim_str)


def dims_text(memo: _dims.Memo | None) -> str:
    """``batch=32 time=4``; a variadic axis that matched no axes (``time=()``) is left out."""
    if memo is None:
        return ""
    sizes = {name: size for name, size in memo.sizes.items() if size != ()}
    return _dims.Memo(sizes, {name: memo.sources[name] for name in sizes}).render()


def forward_function(obj: Any) -> Any:
    """The function a call of ``obj`` runs: a module's ``forward``, a plain layer's ``__call__``."""
    if isinstance(obj, torch.nn.Module) and not isinstance(obj, torch.jit.ScriptModule):
        forward = obj.forward
        return getattr(forward, "__func__", forward)
    return type(obj).__call__
