"""``@shaped``: jaxtyping annotations checked by beartype, with shapekit's messages and check modes.

beartype + jaxtyping do the checking. When a check fails, the arguments are walked once more with
:mod:`shapekit._dims` to find the failing argument and axis, and one :class:`ShapeError` is built:
expected vs got, the sizes bound so far and where from, and a fix.
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

from . import _dims
from . import _torch_compat as _compat
from ._errors import ShapeError
from ._modes import _State, current_mode

__all__ = ["Failure", "shaped"]

F = TypeVar("F", bound=Callable[..., Any])

_ONCE_LIMIT = 4096  # shape signatures remembered per function before the memory is cleared


@dataclass
class Failure:
    """What a failed check found, handed to a layer's ``_shape_fix`` to word the fix."""

    param: str  # "x", or "the output"
    kind: str  # "size", "rank", "batch-missing", "dtype", "type"
    mismatch: _dims.Mismatch | None
    value: Any
    expected_dtype: str  # "float", "integer", ... ("" when any dtype goes)
    expected_type: str = ""  # a non-tensor argument's annotation ("float"); "" for tensors
    # A layer's fix may rule out "or change <the layer before>": that layer is not at fault.
    blame_previous: bool = True


def shaped(fn: F) -> F:
    """Check a function's jaxtyping-annotated arguments and return value at run time.

    Works on plain functions and on ``forward`` methods. A failure raises :class:`ShapeError` with
    the argument, the expected and actual shapes, the sizes bound so far and a fix:

    >>> import torch
    >>> from torch import Tensor
    >>> from jaxtyping import Float
    >>> @shaped
    ... def pairwise(x: Float[Tensor, "n d"], y: Float[Tensor, "m d"]) -> Float[Tensor, "n m"]:
    ...     return x @ y.T
    >>> pairwise(torch.ones(4, 3), torch.ones(5, 3)).shape
    torch.Size([4, 5])
    >>> pairwise(torch.ones(4, 3), torch.ones(5, 2))
    Traceback (most recent call last):
    ...
    shapekit._errors.ShapeError: pairwise() expected y: (m, 3 = d), got (5, 2)
      bound so far: m=5 n=4 d=3 (from x)
      fix: give y size 3 along axis 1 (d), as bound by x

    How often checks run is set by :func:`shapekit.set_checks` (``"once"`` by default).
    """
    checked: Callable[..., Any] | None = None
    memory = _OnceMemory()

    def checked_call(args: tuple, kwargs: dict, mode: str) -> Any:
        """The call with a full check of its arguments and return value (beartype + jaxtyping)."""
        nonlocal checked
        if checked is None:
            checked = _typechecked(fn)
        try:
            out = checked(*args, **kwargs)
        except _check_errors() as err:
            raise _explain(fn, args, kwargs, err) from None
        if mode == "once":
            memory.remember(_signature(args, kwargs), args, kwargs)
        return out

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if _compat.is_compiling():
            # torch.compile is tracing this call. beartype and jaxtyping cannot be traced, so a
            # check runs outside the graph, eagerly, on the real tensors (a graph break). What
            # "once" trusted is known while tracing (dynamo guards on it): a trusted signature
            # compiles into the graph with no check and no break, and only a trusted one can
            # reach that graph, whose inputs dynamo guards to the traced shapes.
            mode = current_mode()  # dynamo guards on it: a graph runs only in its own mode
            if mode == "off" or (mode == "once" and memory.trusts(_signature(args, kwargs))):
                return fn(*args, **kwargs)
            return _compat.run_outside_graph(checked_call)(args, kwargs, mode)
        mode = current_mode()
        if mode == "off":
            return fn(*args, **kwargs)
        if mode == "once" and memory.trusts(_signature(args, kwargs)):
            return fn(*args, **kwargs)
        return checked_call(args, kwargs, mode)

    wrapper.__shapekit_shaped__ = True  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]


def _signature(args: tuple, kwargs: dict) -> tuple:
    """What "once" remembers: tensor shapes and dtypes, object identity for everything else."""
    key = tuple(
        (a.shape, a.dtype) if isinstance(a, torch.Tensor) else _plain(a) for a in args
    )
    if kwargs:
        key += tuple(
            (k, (v.shape, v.dtype) if isinstance(v, torch.Tensor) else _plain(v))
            for k, v in kwargs.items()
        )
    return key


_PLAIN = (int, float, str, bool, type(None))
_KEYED_BY_VALUE = (torch.Tensor, *_PLAIN)


def _call_context(fn, args: tuple, kwargs: dict) -> tuple[dict, dict, str, Any]:
    """The bound arguments, the annotations, how to name the function, and its module (if any)."""
    bound = inspect.signature(fn).bind(*args, **kwargs)
    bound.apply_defaults()
    owner = args[0] if args and isinstance(args[0], torch.nn.Module) else None
    where = type(owner).__name__ if owner is not None else f"{fn.__name__}()"
    if owner is not None and fn.__name__ != "forward":
        where += f".{fn.__name__}()"
    return dict(bound.arguments), _hints(fn), where, owner


def _plain(value: Any) -> Any:
    if isinstance(value, _PLAIN):
        return (type(value), value)
    return id(value)



class _OnceMemory:
    """The signatures whose full check passed, for mode ``"once"``: a hit means the same verdict.

    A signature holds the ids of non-tensor arguments (``self``). Each such object is referenced
    weakly, and its death forgets every signature that names it, so an object that later reuses
    the id (a freshly built layer of another width) is never trusted. An argument that cannot be
    referenced weakly (a list, whose contents may change anyway) is never remembered.
    """

    def __init__(self) -> None:
        self.keys: dict[tuple, int] = {}  # signature -> the generation it was checked in
        self._refs: dict[tuple, list[weakref.ref]] = {}

    def trusts(self, key: tuple) -> bool:
        return self.keys.get(key) == _State.generation

    def remember(self, key: tuple, args: tuple, kwargs: dict) -> None:
        def forget(_ref: weakref.ref, key: tuple = key) -> None:
            self.keys.pop(key, None)
            self._refs.pop(key, None)

        objects = [v for v in (*args, *kwargs.values()) if not isinstance(v, _KEYED_BY_VALUE)]
        try:
            refs = [weakref.ref(v, forget) for v in objects]
        except TypeError:
            return
        if len(self.keys) >= _ONCE_LIMIT:  # a bounded memory: a long run of new shapes starts over
            self.keys.clear()
            self._refs.clear()
        self.keys[key] = _State.generation
        self._refs[key] = refs

def _typechecked(fn: Callable[..., Any]) -> Callable[..., Any]:
    from beartype import beartype
    from jaxtyping import jaxtyped

    return jaxtyped(typechecker=beartype)(fn)


@functools.cache
def _check_errors() -> tuple[type[BaseException], ...]:
    from beartype.roar import BeartypeCallHintViolation
    from jaxtyping import TypeCheckError

    return (TypeCheckError, BeartypeCallHintViolation)


def _is_array_hint(hint: Any) -> bool:
    return hasattr(hint, "dim_str") and hasattr(hint, "dtypes")


def _hints(fn: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn, include_extras=True)
    except Exception:
        return dict(getattr(fn, "__annotations__", {}))


def _array_hint(hint: Any, value: Any) -> Any:
    """The jaxtyping array type inside ``hint`` (unwrapping ``X | None``), or None."""
    if _is_array_hint(hint):
        return hint
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        arrays = [h for h in typing.get_args(hint) if _is_array_hint(h)]
        if len(arrays) == 1 and value is not None:
            return arrays[0]
    return None


def _dtype_kind(hint: Any) -> str:
    """``"float"`` for ``Float[...]``, ``"integer"`` for ``Int[...]``; ``""`` if any dtype goes."""
    if isinstance(hint.dtypes, tuple):
        name = getattr(hint.dtype, "__name__", "")
        kinds = {"Int": "integer", "UInt": "unsigned integer", "Bool": "bool"}
        return kinds.get(name, name.lower())
    return ""


def _dtype_ok(hint: Any, value: torch.Tensor) -> bool:
    return not isinstance(hint.dtypes, tuple) or str(value.dtype).split(".")[-1] in hint.dtypes


def shape_text(shape: tuple[int, ...] | torch.Size) -> str:
    """``(32, 4, 40)``: a shape as people write it (``(8,)`` for one axis).

    >>> shape_text((32, 4, 40)), shape_text((8,))
    ('(32, 4, 40)', '(8,)')
    """
    sizes = [str(int(s)) for s in shape]
    return "(" + ", ".join(sizes) + ("," if len(sizes) == 1 else "") + ")"


def _explain(fn: Callable[..., Any], args: tuple, kwargs: dict, err: BaseException) -> ShapeError:
    """Find the failing argument (or the return value) and build one ShapeError."""
    arguments, hints, where, owner = _call_context(fn, args, kwargs)
    memo = _dims.Memo()
    candidates = [(name, value, hints.get(name)) for name, value in arguments.items()]
    violation = err.__cause__ or err.__context__ or err
    culprits = getattr(violation, "culprits", ())
    if "return" in hints and "return" in type(violation).__name__.lower() and culprits:
        candidates.append(("the output", culprits[-1], hints["return"]))
    for name, value, hint in candidates:
        if hint is None:
            continue
        inner = isinstance(value, torch.Tensor) and not _array_hint(hint, value)
        if name == "the output" and inner:
            return _output_element_error(value, hint, memo, where)
        error = _check_one(name, value, hint, memo, arguments, where, owner)
        if error is not None:
            return error
    reason = str(err).strip().splitlines()
    return ShapeError(
        expected="arguments matching the annotations",
        got=reason[0] if reason else type(err).__name__,
        where=where,
        fix="compare the annotation with the value the check names above",
        note="; ".join(line.strip() for line in reason[1:4]),
    )


def _output_element_error(
    value: torch.Tensor, hint: Any, memo: _dims.Memo, where: str
) -> ShapeError:
    """A tensor inside a returned container (a tuple, say) failed; beartype names the tensor but
    not its place, so show it with the container's annotation."""
    return ShapeError(
        expected=f"the output: {_hint_text(hint)}",
        got=f"a tensor of shape {shape_text(value.shape)} inside it",
        where=where,
        bound=_bound_text(memo, ""),
        fix="return tensors whose shapes match the annotation with the sizes bound so far",
    )


def _check_one(name, value, hint, memo, arguments, where, owner) -> ShapeError | None:
    array = _array_hint(hint, value)
    if array is None:
        if _bearable(value, hint):
            return None
        failure = Failure(name, "type", None, value, "", _hint_text(hint))
        return _error(failure, f"{name}: {_hint_text(hint)}", type(value).__name__, "", where,
                      owner, memo, "")
    dims = _dims.parse(array.dim_str)
    expected = _dims.render(dims, memo, arguments)
    kind = _dtype_kind(array)
    expected_text = f"{name}: {expected}"
    if not isinstance(value, torch.Tensor):
        failure = Failure(name, "type", None, value, kind)
        return _error(failure, expected_text, type(value).__name__, "", where, owner, memo, "")
    got = shape_text(value.shape)
    if not _dtype_ok(array, value):
        dtype = str(value.dtype).split(".")[-1]
        failure = Failure(name, "dtype", None, value, kind)
        return _error(failure, f"{name}: {kind} {expected}", f"{dtype} {got}",
                      f"{kind} dtype needed", where, owner, memo, name)
    mismatch = _dims.match(dims, tuple(value.shape), memo, name, arguments)
    if mismatch is None:
        return None
    failure = Failure(name, mismatch.kind, mismatch, value, kind)
    note = "" if mismatch.kind == "size" else mismatch.reason
    return _error(failure, expected_text, got, note, where, owner, memo, name)


def _bearable(value: Any, hint: Any) -> bool:
    from beartype.door import is_bearable

    try:
        return is_bearable(value, hint)
    except Exception:
        return True


def _hint_text(hint: Any) -> str:
    """``float``, ``int | None``, ``tuple[Float[Tensor, 'n'], ...]``: an annotation as written."""
    if typing.get_origin(hint) is None and hasattr(hint, "__name__"):
        return hint.__name__
    return str(hint).replace("jaxtyping.", "").replace("typing.", "")


def _error(failure, expected, got, note, where, owner, memo, param) -> ShapeError:
    fix = None
    if owner is not None and hasattr(owner, "_shape_fix"):
        fix = owner._shape_fix(failure)
    error = ShapeError(
        expected=expected,
        got=got,
        where=where,
        fix=fix or generic_fix(failure, memo),
        bound=_bound_text(memo, param),
        note=note,
    )
    error.kind = failure.kind
    if owner is not None and failure.kind == "size" and failure.blame_previous:
        error.fix_previous = getattr(owner, "_fix_previous", "")
    return error


def _bound_text(memo: _dims.Memo, param: str) -> str:
    """``batch=32 time=4 n=5 (from y)``: sizes bound by the failing argument, then the others."""
    parts = [memo.render(param)] if param else []
    others = dict.fromkeys(s for s in memo.sources.values() if s != param)
    parts += [f"{memo.render(source)} (from {source})" for source in others]
    return " ".join(p for p in parts if p)


def generic_fix(failure: Failure, memo: _dims.Memo) -> str:
    """One concrete fix for a failure in a function that has no fix of its own."""
    name, m = failure.param, failure.mismatch
    if failure.kind == "type" and failure.expected_type:
        return f"pass {name} as {failure.expected_type}, not {type(failure.value).__name__}"
    if failure.kind == "type":
        return f"pass a torch.Tensor as {name} (torch.as_tensor(...) converts lists and arrays)"
    if failure.kind == "dtype":
        cast = {"float": ".float()", "integer": ".long()", "bool": ".bool()"}.get(
            failure.expected_dtype, f".to(<a {failure.expected_dtype} dtype>)"
        )
        return f"convert {name} with {name}{cast}"
    if failure.kind == "batch-missing":
        return (
            f"keep the batch axis when picking one example: Xtr[[7]] or Xtr[7:8], not Xtr[7] "
            f"(or add it back with {name}[None])"
        )
    if failure.kind == "rank":
        return f"reshape {name} to the annotated number of axes, or fix the annotation"
    assert m is not None
    if isinstance(m.expected, tuple):  # a variadic run such as *batch, bound by an earlier argument
        want = f"the axes {shape_text(m.expected)} for *{m.name}, starting at axis {m.axis}"
    else:
        label = m.name.split(" = ")[-1]  # "48 = fan_in" -> "fan_in"; a fixed size needs no label
        want = f"size {m.expected} along axis {m.axis}" + (
            f" ({label})" if label != str(m.expected) else ""
        )
    source = memo.sources.get(m.name)
    if source and source != name:
        return f"give {name} {want}, as bound by {source}"
    return f"give {name} {want}"
