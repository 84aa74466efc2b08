"""Which op failed, on which tensors: recovered from a traceback after the fact.

``explain()`` adds no per-op cost, so when torch raises, the op and its operands are found from
what the traceback still holds:

- the user's frame (the innermost one that is not shapekit, torch, einops or the stdlib) and, from
  its column positions, the exact expression that failed (``h @ W2``, ``x.view(B, C, T)``);
- that expression's operands, evaluated from the frame's variables with a *side-effect-free*
  evaluator (names, attributes, indexing, a few tensor methods such as ``transpose``; never a
  call to user code, never a random draw);
- a module's ``forward`` frame below the user's line (``nn.BatchNorm1d``): the module and its input;
- a torch function's frame (``F.cross_entropy``): its arguments;
- a call recorded by ``detect()``'s function mode, when one is active.

>>> import torch
>>> def fails():
...     h, W2 = torch.ones(32, 200), torch.ones(100, 27)
...     return h @ W2
>>> try:
...     fails()
... except RuntimeError as err:
...     site = locate(err)
>>> site.op, [(o.name, tuple(o.value.shape)) for o in site.operands]
('h @ W2', [('h', (32, 200)), ('W2', (100, 27))])
"""

from __future__ import annotations

import ast
import builtins
import inspect
import linecache
import types
from dataclasses import dataclass, field
from typing import Any

import torch

from .. import _torch_compat as _compat
from ._frames import expression, is_user_file, location, op_text, where

__all__ = ["Operand", "Site", "evaluate", "from_compiled", "locate"]

MISSING = object()  # an operand whose value could not be recovered safely

# Tensor methods the evaluator may call: pure, cheap, and common inside failing expressions.
_METHODS = frozenset({
    "transpose", "permute", "contiguous", "view", "reshape", "t", "float", "long", "double", "int",
    "unsqueeze", "squeeze", "flatten", "detach", "view_as", "reshape_as", "size", "dim", "numel",
    "sum", "mean", "var", "std", "exp", "log", "abs", "sqrt", "tanh", "relu", "softmax",
    "log_softmax", "argmax",
})
_ATTRS = frozenset({"T", "mT", "H", "mH", "data", "shape", "ndim", "dtype", "grad"})
_MODULE_KEYS = (  # attributes that name a torch layer: BatchNorm1d(68), Linear(48, 128)
    ("num_features",), ("in_features", "out_features"), ("num_embeddings", "embedding_dim"),
    ("in_channels", "out_channels"), ("normalized_shape",), ("input_size", "hidden_size"),
)


@dataclass
class Operand:
    """One input of the failing op: its name in the user's source (``logits``, ``Xtr[ix]``) or the
    parameter's name (``input``), and its value (``MISSING`` when unknown)."""

    name: str
    value: Any

    @property
    def tensor(self) -> torch.Tensor | None:
        return self.value if isinstance(self.value, torch.Tensor) else None


@dataclass
class Site:
    """Where and on what an op failed. ``where`` is ``train.py:42``; ``op`` names the failing
    expression (``h @ W2``, ``F.cross_entropy``, ``self.bn BatchNorm1d(68)``)."""

    where: str = ""
    op: str = ""
    operands: list[Operand] = field(default_factory=list)
    module: torch.nn.Module | None = None
    receiver: str = ""  # a method call's object, as written: "y.transpose(1, 2)"
    callee: str = ""  # how the user called the failing module, when they called it directly
    args_text: str = ""  # a call's arguments, as written: "B, T, C"

    @property
    def tensors(self) -> list[Operand]:
        """The operands that are tensors, lists of tensors opened up (``[a, b]`` -> a, b)."""
        out = []
        for op in self.operands:
            if isinstance(op.value, (list, tuple)) and all(
                isinstance(v, torch.Tensor) for v in op.value
            ):
                name = op.name[1:-1] if op.name[:1] in "[(" else ""
                names = [n.strip() for n in name.split(",")] if name else []
                if len(names) != len(op.value):
                    names = [f"{op.name}[{i}]" for i in range(len(op.value))]
                out += [Operand(n, v) for n, v in zip(names, op.value, strict=True)]
            elif isinstance(op.value, torch.Tensor):
                out.append(op)
        return out

    @property
    def label(self) -> str:
        return " ".join(part for part in (self.where, self.op) if part)


def module_label(module: torch.nn.Module) -> str:
    """``BatchNorm1d(68)``, ``Linear(48, 128)``: a torch layer named by its shape arguments."""
    for keys in _MODULE_KEYS:
        if all(hasattr(module, k) for k in keys):
            values = [getattr(module, k) for k in keys]
            values = [v[0] if isinstance(v, tuple) and len(v) == 1 else v for v in values]
            return f"{type(module).__name__}({', '.join(str(v) for v in values)})"
    return type(module).__name__


def locate(err: BaseException) -> Site:
    """Find the failing op and its operands for an exception that torch raised."""
    frames = []
    tb = err.__traceback__
    while tb is not None:
        frames.append((tb.tb_frame, tb.tb_lasti))
        tb = tb.tb_next
    users = [i for i, (f, _) in enumerate(frames) if is_user_file(f.f_code.co_filename)]
    site = Site()
    node: ast.expr | None = None
    frame = None
    if users:
        frame, lasti = frames[users[-1]]
        site.where = where(frame, lasti)
        text, node = expression(frame, lasti)
        site.op = op_text(text, node)
        _describe_call(site, node)
        site.operands = _node_operands(node, frame)
    below = frames[users[-1] + 1:] if users else frames
    recorded = getattr(err, "_shapekit_call", None)
    forward = next((f for f, _ in reversed(below) if _is_forward(f)), None)
    if forward is not None:
        _from_module(site, forward, node, frame)
    elif recorded is not None:
        _from_recorded(site, *recorded)
    else:
        functional = next((f for f, _ in below
                           if f.f_globals.get("__name__") in _compat.TORCH_FUNCTION_MODULES), None)
        if functional is not None:
            _from_function(site, functional)
    return site


def from_compiled(err: BaseException) -> tuple[BaseException, Site] | None:
    """For dynamo's ``TorchRuntimeError`` (a shape error inside a ``torch.compile``d function):
    the torch error it wraps, and the site in the user's compiled code, with the traced (fake)
    operands named as the user's line names them. None for any other error."""
    failure = _compat.compiled_failure(err)
    if failure is None:
        return None
    site = Site()
    node = None
    if failure.filename is not None:
        site.where = location(failure.filename, failure.lineno)
        line = linecache.getline(failure.filename, failure.lineno)
        col, end = failure.colno, failure.end_colno
        text = line[col:end].strip() if col is not None and end is not None else line.strip()
        try:
            node = ast.parse(text, mode="eval").body
        except SyntaxError:
            node = None
        site.op = f"{op_text(text, node)} (in torch.compile'd {failure.function})"
    traced = failure.traced_args
    names = [o.name for o in _node_operands(node, None)] if node is not None else []
    if len(names) != len(traced):
        names = [f"operand {i}" for i in range(len(traced))]
    site.operands = [Operand(n, v) for n, v in zip(names, traced, strict=True)]
    return failure.error, site


def _is_forward(frame: types.FrameType) -> bool:
    return frame.f_code.co_name == "forward" and isinstance(
        frame.f_locals.get("self"), torch.nn.Module
    )


def _parameters(frame: types.FrameType, skip_self: bool) -> list[Operand]:
    code = frame.f_code
    names = code.co_varnames[int(skip_self):code.co_argcount + code.co_kwonlyargcount]
    return [Operand(n, frame.f_locals[n]) for n in names if n in frame.f_locals]


def _from_module(site: Site, forward: types.FrameType, node: ast.expr | None, frame) -> None:
    """The innermost module whose forward failed (``nn.BatchNorm1d``): it and its inputs."""
    module = forward.f_locals["self"]
    site.module = module
    inputs = _parameters(forward, skip_self=True)
    label = module_label(module)
    called = None
    if isinstance(node, ast.Call) and frame is not None:
        called = _try_evaluate(node.func, frame)
    if called is module:
        # The user called this module directly: keep their names for its inputs.
        for given, param in zip(site.operands, inputs, strict=False):
            param.name = given.name
        site.callee = ast.unparse(node.func)
        site.op = f"{site.callee} {label}"
    elif isinstance(called, torch.nn.Module):
        path = next((n for n, m in called.named_modules() if m is module), "")
        site.op = f"{ast.unparse(node.func)}.{path} {label}" if path else label
    else:
        site.op = label
    site.operands = inputs


def _from_recorded(site: Site, func: Any, args: tuple, kwargs: dict) -> None:
    """The call ``detect()``'s function mode saw fail: exact values, named as the user wrote them
    (matched by identity, else by position), else by the function's parameter names."""
    try:
        items = list(inspect.signature(func).bind(*args, **kwargs).arguments.items())
    except (TypeError, ValueError):  # C functions have no signature
        items = [(f"operand {i}", v) for i, v in enumerate(args)] + list(kwargs.items())
    known = {_identity(o.value): o.name for o in site.operands if o.value is not MISSING}
    given = [o.name for o in site.operands]
    if len(given) != len(items):
        given = [name for name, _ in items]
    site.operands = [Operand(known.get(_identity(v), name), v)
                     for name, (_, v) in zip(given, items, strict=True)]


def _from_function(site: Site, frame: types.FrameType) -> None:
    """A torch function written in Python (``F.cross_entropy``): its arguments by name."""
    params = _parameters(frame, skip_self=False)
    if not params:  # def einsum(*args): keep the operands as the user's line names them
        return
    known = {_identity(o.value): o.name for o in site.operands if o.value is not MISSING}
    for p in params:
        p.name = known.get(_identity(p.value), p.name)
    site.operands = params


def _identity(value: Any) -> Any:
    """Tensors re-made by the evaluator (``logits.T``) are new objects viewing the same memory."""
    if isinstance(value, torch.Tensor):
        return (value.data_ptr(), tuple(value.shape), value.stride(), value.dtype)
    return id(value)


def _describe_call(site: Site, node: ast.expr | None) -> None:
    if isinstance(node, ast.Call):
        if isinstance(node.func, ast.Attribute):
            site.receiver = ast.unparse(node.func.value)
        site.args_text = ", ".join(ast.unparse(a) for a in [*node.args, *node.keywords])


def _node_operands(node: ast.expr | None, frame: types.FrameType | None) -> list[Operand]:
    if isinstance(node, ast.BinOp):
        children = [node.left, node.right]
    elif isinstance(node, ast.Compare):
        children = [node.left, node.comparators[0]]
    elif isinstance(node, ast.Subscript):
        children = [node.value, node.slice]
    elif isinstance(node, ast.Call):
        children = list(node.args) + [k.value for k in node.keywords]
        if isinstance(node.func, ast.Attribute):
            receiver = _try_evaluate(node.func.value, frame)
            if isinstance(receiver, torch.Tensor):
                children.insert(0, node.func.value)
    else:
        return []
    return [Operand(ast.unparse(c), _try_evaluate(c, frame)) for c in children]


class _Unsafe(Exception):
    """The expression may have side effects (or failed): leave the operand unknown."""


def _try_evaluate(node: ast.expr, frame: types.FrameType | None) -> Any:
    if frame is None:
        return MISSING
    try:
        with _compat.no_torch_function():  # no detectors on shapekit's own look-ups
            return evaluate(node, frame.f_locals, frame.f_globals)
    except Exception:
        return MISSING


def evaluate(node: ast.expr, local: dict, globals_: dict, depth: int = 0) -> Any:
    """Evaluate ``node`` without side effects, or raise: variables, constants, attribute look-ups
    on modules and plain objects, indexing, integer arithmetic and pure tensor methods.

    >>> import ast, torch
    >>> x = torch.ones(2, 3, 4)
    >>> evaluate(ast.parse("x.transpose(1, 2)[0]", mode="eval").body, {"x": x}, {}).shape
    torch.Size([4, 3])
    """
    if depth > 12:
        raise _Unsafe
    ev = lambda n: evaluate(n, local, globals_, depth + 1)  # noqa: E731
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        for scope in (local, globals_, vars(builtins)):
            if node.id in scope:
                return scope[node.id]
        raise _Unsafe
    if isinstance(node, ast.Attribute):
        return _attribute(ev(node.value), node.attr)
    if isinstance(node, ast.Subscript):
        base, index = ev(node.value), ev(node.slice)
        if not isinstance(base, (torch.Tensor, list, tuple, dict, torch.Size)):
            raise _Unsafe
        return base[index]
    if isinstance(node, ast.Slice):
        parts = (node.lower, node.upper, node.step)
        return slice(*(None if p is None else ev(p) for p in parts))
    if isinstance(node, (ast.Tuple, ast.List)):
        items = [ev(e) for e in node.elts]
        return tuple(items) if isinstance(node, ast.Tuple) else items
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = ev(node.operand)
        if not isinstance(value, (int, float)):
            raise _Unsafe
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp):
        left, right = ev(node.left), ev(node.right)
        if not all(isinstance(v, int) for v in (left, right)):
            raise _Unsafe
        op = {ast.Add: int.__add__, ast.Sub: int.__sub__, ast.Mult: int.__mul__,
              ast.FloorDiv: int.__floordiv__}.get(type(node.op))
        if op is None:
            raise _Unsafe
        return op(left, right)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        receiver = ev(node.func.value)
        if not isinstance(receiver, torch.Tensor) or node.func.attr not in _METHODS:
            raise _Unsafe
        args = [ev(a) for a in node.args]
        kwargs = {k.arg: ev(k.value) for k in node.keywords if k.arg}
        return getattr(receiver, node.func.attr)(*args, **kwargs)
    raise _Unsafe


def _attribute(obj: Any, name: str) -> Any:
    if isinstance(obj, torch.Tensor):
        if name in _ATTRS:
            return getattr(obj, name)
        raise _Unsafe
    if isinstance(obj, types.ModuleType):
        return getattr(obj, name)
    if isinstance(obj, torch.nn.Module):
        for store in ("_parameters", "_buffers", "_modules"):
            if name in obj.__dict__.get(store, {}):
                return obj.__dict__[store][name]
    if name in getattr(obj, "__dict__", {}):
        return obj.__dict__[name]
    raise _Unsafe
