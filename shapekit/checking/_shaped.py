"""``@shaped``: jaxtyping annotations checked by beartype, with shapekit's messages and check modes.

beartype + jaxtyping do the checking, as ``jaxtyped(typechecker=beartype)`` does: a jaxtyping memo
is opened for the call, each passed argument is checked once (``beartype.door.is_bearable``, which
lets jaxtyping bind the dims), the body runs inside the memo, then the output is checked. When a
check fails, the arguments are walked once more with :mod:`shapekit.checking._dims` to find the
failing argument, element and axis, and one :class:`ShapeError` is built: expected vs got, the
sizes bound so far and where from, and a fix. A check that fails inside the body is left as it
is, with its own line.

In mode ``"once"`` each passed signature is remembered with the dims it bound (see
:mod:`shapekit.checking._modes` for what the signature holds); a trusted call reopens the memo
with those dims around the body and keys the output.
"""

from __future__ import annotations

import collections
import collections.abc
import functools
import inspect
import os
import re
import types
import typing
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

from .. import _torch_compat as _compat
from . import _dims
from ._errors import ShapeError, shape_text
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
    dtypes: tuple[str, ...] = ()  # the dtype names the annotation allows (() when any goes)


def shaped(fn: F) -> F:
    """Check a function's jaxtyping-annotated arguments and return value at run time.

    A drop-in for ``jaxtyped(typechecker=beartype)`` wherever that goes: functions, methods and
    ``forward``, ``classmethod``, ``staticmethod``, ``property``, ``functools.cached_property``
    and ``abstractmethod`` (above or below them), dataclasses (the fields are checked at
    construction), generators and ``async def``. ``@no_type_check`` on either side turns the
    checks off. A failure raises :class:`ShapeError` with the argument, the expected and actual
    shapes, the sizes bound so far and a fix:

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
    shapekit.ShapeError: pairwise() expected y: (m, 3 = d), got (5, 2)
      bound so far: m=5 n=4 d=3 (from x)
      fix: give y size 3 along axis 1 (d), as bound by x

    How often checks run is set by :func:`shapekit.set_checks` (``"once"`` by default).
    """
    if isinstance(fn, (classmethod, staticmethod)):
        return type(fn)(shaped(fn.__func__))  # type: ignore[return-value]
    if isinstance(fn, property):
        parts = (None if f is None else shaped(f) for f in (fn.fget, fn.fset, fn.fdel))
        return property(*parts, fn.__doc__)  # type: ignore[return-value]
    if isinstance(fn, functools.cached_property):
        cached = functools.cached_property(shaped(fn.func))
        cached.attrname, cached.__doc__ = fn.attrname, fn.__doc__
        return cached  # type: ignore[return-value]
    if inspect.isclass(fn):
        return _shaped_class(fn)  # type: ignore[return-value]
    if getattr(fn, "__no_type_check__", False):
        return fn
    return _shaped_function(fn)  # type: ignore[return-value]


_MARK = "__shapekit_shaped__"
# shapekit.nn's layers: their bodies call torch only (never user code), so a function mode that
# watches user code alone (detect()) may run a trusted call of one unwatched, see _layer_runner.
_NN_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.realpath(__file__))), "nn")


def _layer_runner() -> Callable[..., Any] | None:
    """The active function mode's way of running a shapekit.nn layer body (``detect()``'s runs
    it without watching each op), when it is the only mode; None: call the body as it is."""
    # The mode's method ``shapekit_run_layer(fn, args, kwargs) -> output`` (debug._detect._Mode).
    return getattr(_compat.sole_function_mode(), "shapekit_run_layer", None)


def _is_nn_layer(fn: Callable[..., Any]) -> bool:
    code = getattr(fn, "__code__", None)
    return code is not None and os.path.dirname(os.path.realpath(code.co_filename)) == _NN_DIR


def _shaped_class(cls: type) -> type:
    """A dataclass stays the class; its ``__init__`` is checked, so the fields are checked at
    construction and ``__post_init__`` runs with the bindings. Other classes are unchanged."""
    import dataclasses

    init = cls.__dict__.get("__init__")
    wanted = dataclasses.is_dataclass(cls) and not getattr(cls, "__no_type_check__", False)
    if wanted and init is not None and not getattr(init, _MARK, False):
        cls.__init__ = _shaped_function(init, owner=f"{cls.__name__}()")  # type: ignore[misc]
    return cls


def _shaped_function(fn: Callable[..., Any], owner: str = "") -> Callable[..., Any]:
    checker = _Checker(fn, owner)
    memory = _OnceMemory()
    trusted = memory.keys  # cleared in place, never replaced
    memo_stack, arguments, tensor = _compat.memo_stack, checker.arguments, torch.Tensor
    compiling = _compat.is_compiling
    mode_active, unwatched = _compat.function_mode_active, _compat.no_torch_function
    layer = _is_nn_layer(fn)

    def checked_call(args: tuple, kwargs: dict, mode: str) -> Any:
        """The call with a full check of its arguments and return value (beartype + jaxtyping)."""
        out, bindings, after = checker.full(args, kwargs)
        if mode == "once":
            objects: list = []  # what the key holds by identity, for the memory to watch
            key = checker.key(args, kwargs, objects)
            if key is not None:
                memory.remember(key, bindings, checker.output_key(out, after), objects)
        return out

    def check_new_output(args: tuple, kwargs: dict, out: Any, memo: tuple, entry: list,
                         okey: Any) -> None:
        """A trusted call returned an output of a new key: check it, in the memo as the body
        left it, and trust that key from now on (bounded: a value-dependent shape is rechecked)."""
        _compat.enter_bindings(memo[:3], memo[3])
        try:
            checker.check_output(args, kwargs, out)
        finally:
            _compat.exit_bindings()
        if okey is not None and len(entry[2]) < _CONTAINER_LIMIT:
            entry[2].add(okey)
            _note_output(entry, okey)

    def check_output(args: tuple, kwargs: dict, out: Any, entry: list) -> None:
        """The output of a trusted call checked on its own, with the bindings of its signature."""
        _compat.enter_bindings(entry[1], checker.arguments(args, kwargs))
        try:
            checker.check_output(args, kwargs, out)
        finally:
            _compat.exit_bindings()
        okey = checker.output_key(out, None)
        if okey is not None and len(entry[2]) < _CONTAINER_LIMIT:
            entry[2].add(okey)
            _note_output(entry, okey)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if getattr(wrapper, "__no_type_check__", False):
            return fn(*args, **kwargs)
        if compiling():
            # torch.compile is tracing this call. beartype and jaxtyping cannot be traced, so a
            # check runs outside the graph, eagerly, on the real tensors (a graph break). What
            # "once" trusted is known while tracing (dynamo guards on it): a trusted signature
            # compiles into the graph with no check and no break, and only a trusted one can
            # reach that graph, whose inputs dynamo guards to the traced shapes.
            mode = current_mode()  # dynamo guards on it: a graph runs only in its own mode
            if mode == "off":
                return fn(*args, **kwargs)
            entry = None
            if mode == "once" and checker.ready:
                entry = memory.entry(checker.key(args, kwargs, []))
            if entry is None:
                return _compat.run_outside_graph(checked_call)(args, kwargs, mode)
            out = fn(*args, **kwargs)
            # The output is keyed as in eager mode; a new one (the graph of another
            # `self.training`, say) is checked outside the graph, on the real output.
            if checker.returns and checker.output_key(out, None) not in entry[2]:
                _compat.run_outside_graph(check_output)(args, kwargs, out, entry)
            return out
        mode = current_mode() if _State.open_blocks else _State.mode  # current_mode(), inlined
        if mode == "off":
            return fn(*args, **kwargs)
        if mode != "once" or not checker.ready:
            return checked_call(args, kwargs, mode)
        watched = mode_active()
        if watched:
            # Under a TorchFunctionMode (detect(), a user's own) each x.shape of the key would
            # be a call into the mode: "once" reads its metadata unwatched, as it reads the
            # output's below (a look-up computes nothing for a mode to see).
            with unwatched():
                entry = trusted.get(checker.key(args, kwargs, []))
        else:
            entry = trusted.get(checker.key(args, kwargs, []))  # memory.entry(), inlined
        if entry is None or entry[0] != _State.generation:
            return checked_call(args, kwargs, mode)
        # A trusted call (the hot path, kept inline): the body runs with the bindings the full
        # check made, in a memo of its own; the output is checked unless its key (class, shape,
        # dtype, and the dims the body bound) passed with this signature before.
        single, variadic, pytree = entry[1]
        stack = memo_stack()
        if checker.simple and not kwargs:  # checker.arguments(), inlined
            named = dict(zip(checker.names, args, strict=False))
        else:
            named = arguments(args, kwargs)
        # Copies: the body's own checks add to them. (Most calls bind no variadic dims and no
        # tree structures, and a new empty dict is cheaper than a copy of one.)
        stack.append((single.copy(), variadic.copy() if variadic else {},
                      pytree.copy() if pytree else {}, named))
        try:
            runner = _layer_runner() if layer and watched else None
            if runner is not None:
                out = runner(fn, args, kwargs)
            else:
                out = fn(*args, **kwargs) if kwargs else fn(*args)
        finally:
            memo = stack.pop()  # jaxtyping may have replaced the tuple: take what is on top
        if checker.returns:
            after = None  # below: the body bound dims or tree structures of its own
            if len(memo[0]) != entry[3] or len(memo[1]) != entry[4] or len(memo[2]) != entry[6]:
                after = _compat.bindings_key(memo)
            if type(out) is tensor:  # the common case, keyed inline
                if watched:  # read without the TorchFunctionMode, as the key is
                    with unwatched():
                        shape, dtype = out.shape, out.dtype
                else:
                    shape, dtype = out.shape, out.dtype
                last = entry[5]  # the last plain tensor output accepted (a hash saved)
                if after is None and last is not None and dtype is last[1] and shape == last[0]:
                    return out
                okey = (shape, dtype, after)
            else:
                okey = checker.output_key(out, after)
            if okey is None or okey not in entry[2]:
                check_new_output(args, kwargs, out, memo, entry, okey)
        return out

    if inspect.iscoroutinefunction(fn):
        wrapper = _async_wrapper(fn, checker)
    setattr(wrapper, _MARK, True)
    return wrapper


def _async_wrapper(fn: Callable[..., Any], checker: _Checker) -> Callable[..., Any]:
    """``async def``: the arguments are checked at the call, the awaited result when it comes
    (jaxtyping + beartype would compare the coroutine object with the return annotation)."""

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        if getattr(wrapper, "__no_type_check__", False) or current_mode() == "off":
            return await fn(*args, **kwargs)
        if not checker.ready:
            checker.setup()
        checker.passed(args, kwargs)
        _compat.enter_bindings(_NO_BINDINGS, checker.arguments(args, kwargs))
        try:
            bindings = checker.check_arguments(args, kwargs)
        finally:
            _compat.exit_bindings()
        out = await fn(*args, **kwargs)  # the memo is not held across an await
        if checker.returns:
            _compat.enter_bindings(bindings, checker.arguments(args, kwargs))
            try:
                checker.check_output(args, kwargs, out)
            finally:
                _compat.exit_bindings()
        return out

    return wrapper


class _Unkeyable(Exception):
    """A value "once" cannot key (too big): the call is checked in full."""


_CONTAINER_LIMIT = 64  # elements keyed per container; a bigger one is checked in full each call
# A tuple, not a frozenset: torch.compile traces `type(v) in _PLAIN_TYPES` on a tuple, while
# torch 2.6's dynamo cannot trace `in` on a frozenset (a graph break, an error under fullgraph).
_PLAIN_TYPES = (int, float, str, bool, type(None), complex, bytes)
_FSTRING_PATH = re.compile(r"\s*([A-Za-z_]\w*)((?:\s*\.\s*[A-Za-z_]\w*)*)\s*$")


def _value_key(value: Any, objects: list) -> Any:
    """What a full check's verdict on ``value`` can depend on, as a hashable key.

    A tensor: its class (``Parameter`` is not ``Tensor``), shape and dtype; an array-like (numpy):
    class, shape and dtype; a list, tuple, deque, dict or dataclass: its class and the keys of
    its contents; a scalar: its type and value; anything else: its class and identity (the
    object goes to ``objects``, so the memory can forget it when it dies).
    """
    if isinstance(value, torch.Tensor):
        return (type(value), value.shape, value.dtype)
    kind = type(value)
    if kind in _PLAIN_TYPES:
        return (kind, value)
    if isinstance(value, (list, tuple, collections.deque)):
        if len(value) > _CONTAINER_LIMIT:
            raise _Unkeyable
        return (kind, *[_value_key(v, objects) for v in value])
    if isinstance(value, dict):
        if len(value) > _CONTAINER_LIMIT:
            raise _Unkeyable
        return (kind, *[(_value_key(k, objects), _value_key(v, objects)) for k, v in value.items()])
    fields = getattr(kind, "__dataclass_fields__", None)
    if fields is not None:
        return (kind, *[_value_key(getattr(value, f, None), objects) for f in fields])
    shape, dtype = getattr(value, "shape", None), getattr(value, "dtype", None)
    if isinstance(shape, tuple) and dtype is not None:
        return (kind, shape, str(dtype))
    objects.append(value)
    return (kind, id(value))


class _Checker:
    """How to check one function in full, and what its "once" key is made of.

    Set up at the first call: annotations may name classes defined after the function.
    """

    def __init__(self, fn: Callable[..., Any], owner: str) -> None:
        self.fn = fn
        self.owner = owner
        self.ready = False
        self.returns = False

    def setup(self) -> None:
        fn = self.fn
        self.signature = inspect.signature(fn)
        self.hints = annotations_of(fn)
        params = list(self.signature.parameters.values())
        positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        self.names = [p.name for p in params if p.kind in positional]
        kinds = {p.kind: p.name for p in params}
        self.var_args = kinds.get(inspect.Parameter.VAR_POSITIONAL)
        self.var_kwargs = kinds.get(inspect.Parameter.VAR_KEYWORD)
        self.defaults = {p.name: p.default for p in params if p.default is not p.empty}
        generator = inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn)
        self.returns = "return" in self.hints and not generator
        self.return_hint = self.hints.get("return")
        self.return_tree = self.returns and _has_pytree(self.return_hint)
        # What the verdict reads: the annotated parameters (by value; by class alone when the
        # annotation is a plain class), and the attributes that f-string dims ("{self.fan_in}")
        # read (by their values).
        self.keyed = {n for n in self.hints if n != "return"}
        self.plain_typed = {n for n in self.keyed if _plain_class(self.hints[n])}
        self.paths: list[tuple[str, tuple[str, ...]]] = []
        self.keyable = True
        for expr in _fstring_exprs(self.hints.values()):
            found = _FSTRING_PATH.match(expr)
            if found is None or found.group(1) not in self.signature.parameters:
                self.keyable = False  # an expression "once" cannot key: checked at every call
                continue
            attrs = tuple(a.strip() for a in found.group(2).split(".")[1:])
            if (found.group(1), attrs) not in self.paths:
                self.paths.append((found.group(1), attrs))
        self.positions = {n: i for i, n in enumerate(self.names)}
        self.params = {p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
        self.simple = not self.defaults and self.var_args is None
        # Per positional parameter: 0 not keyed, 1 keyed by class, 2 keyed by value.
        # Keyed by its tree (structure and leaves) when the annotation holds a PyTree.
        self.trees = {n for n in self.keyed if _has_pytree(self.hints[n])}
        self.modes = [
            (3 if n in self.trees else 2 if n not in self.plain_typed else 1)
            if n in self.keyed else 0
            for n in self.names
        ]
        self.key = self._make_key()
        self.ready = True

    def _bound(self, name: str, args: tuple, kwargs: dict) -> Any:
        index = self.positions.get(name, len(args))
        if index < len(args):
            return args[index]
        if name in kwargs:
            return kwargs[name]
        return self.defaults[name]

    def _make_key(self) -> Callable[..., tuple | None]:
        """The "once" key of a call (None when a value in it cannot be keyed), as a closure over
        what setup found: this runs on every call, so positional calls take a short path."""
        if not self.keyable:
            return lambda args, kwargs, objects: None
        modes, slow = tuple(self.modes), self._full_key
        paths = [(self.positions[h], attrs, self.defaults.get(h)) for h, attrs in self.paths]
        tensor, plain, value_key, tree_key = torch.Tensor, _PLAIN_TYPES, _value_key, _tree_key

        # The key is flat (a nested tuple costs a tuple and a hash per argument) yet reads one
        # way only: after the count of arguments, a keyed-by-value slot holds a torch.Size then a
        # dtype for a plain tensor (a Size holds ints), else one _value_key tuple (which starts
        # with a class); a keyed-by-class slot holds a class; the f-string values come last.
        fast = _tensor_key(modes, paths)

        def key(args: tuple, kwargs: dict, objects: list) -> tuple | None:
            if fast is not None and not kwargs and len(args) == len(modes):
                found = fast(args)
                if found is not _NOT_PLAIN:
                    return found
            if kwargs or len(args) > len(modes):
                return slow(args, kwargs, objects)
            parts: list = [len(args)]
            append = parts.append
            for mode, value in zip(modes, args, strict=False):
                if mode == 2:
                    if type(value) is tensor:  # the common case, keyed inline
                        append(value.shape)
                        append(value.dtype)
                        continue
                    try:
                        append(value_key(value, objects))
                    except _Unkeyable:
                        return None
                elif mode == 1:
                    append(type(value))
                elif mode == 3:
                    try:
                        append(tree_key(value, objects))
                    except _Unkeyable:
                        return None
            for index, attrs, default in paths:
                value = args[index] if index < len(args) else default
                try:
                    for attr in attrs:
                        value = getattr(value, attr)
                except AttributeError:
                    return None
                kind = type(value)
                if kind not in plain:
                    return None
                parts.append((kind, value))
            return tuple(parts)

        return key

    def _full_key(self, args: tuple, kwargs: dict, objects: list) -> tuple | None:
        """The key of any call: keyword arguments, ``*args`` and ``**kwargs`` included."""
        try:
            parts = [len(args), tuple(kwargs)]
            for i, value in enumerate(args):
                name = self.names[i] if i < len(self.names) else self.var_args
                if name in self.keyed:
                    parts.append(self._param_key(name, value, objects))
            for name, value in kwargs.items():
                name = name if name in self.params else self.var_kwargs
                if name in self.keyed:
                    parts.append(self._param_key(name, value, objects))
            for head, attrs in self.paths:
                value = self._bound(head, args, kwargs)
                for attr in attrs:
                    value = getattr(value, attr)
                parts.append(_value_key(value, objects))
            key = tuple(parts)
            hash(key)
        except Exception:  # _Unkeyable, an unhashable value, a missing attribute or argument
            return None
        return key

    def _param_key(self, name: str, value: Any, objects: list) -> Any:
        if name in self.trees:
            return _tree_key(value, objects)
        return type(value) if name in self.plain_typed else _value_key(value, objects)

    def output_key(self, out: Any, bindings: tuple | None) -> Any:
        """What the return check's verdict depends on: the output's key, and the dims the body's
        own isinstance checks bound (None when they bound none)."""
        if type(out) is torch.Tensor:
            return (out.shape, out.dtype, bindings)
        try:
            tree = self.return_tree
            key = (_tree_key(out, []) if tree else _value_key(out, []), bindings)
            hash(key)
        except Exception:
            return None
        return key

    def arguments(self, args: tuple, kwargs: dict) -> dict:
        """The call's arguments by name, as jaxtyping's memo holds them (for f-string dims)."""
        if self.simple:
            arguments = dict(zip(self.names, args, strict=False))
            if kwargs:
                arguments.update(kwargs)
            return arguments
        arguments = dict(self.defaults)
        arguments.update(zip(self.names, args, strict=False))
        if self.var_args is not None:
            arguments[self.var_args] = args[len(self.names):]
        arguments.update(kwargs)
        return arguments

    def passed(self, args: tuple, kwargs: dict) -> list[tuple[str, Any]]:
        """The passed arguments as ``(name, value)``, one per element of ``*args``/``**kwargs``;
        a call Python would refuse raises its ``TypeError``."""
        if not kwargs and self.var_args is None and len(args) == len(self.names):
            return list(zip(self.names, args, strict=True))
        bound = self.signature.bind(*args, **kwargs)
        pairs = []
        for name, value in bound.arguments.items():
            if name == self.var_args:
                pairs += [(name, v) for v in value]
            elif name == self.var_kwargs:
                pairs += [(name, v) for v in value.values()]
            else:
                pairs.append((name, value))
        return pairs

    def check_arguments(self, args: tuple, kwargs: dict) -> tuple[dict, dict, dict]:
        """Check each passed argument once, in the jaxtyping memo open now; the dims they bound."""
        bearable = _is_bearable()
        for name, value in self.passed(args, kwargs):
            hint = self.hints.get(name)
            if hint is not None and not bearable(value, hint):
                raise _explain(self.fn, args, kwargs, None, self.owner)
        return _compat.current_bindings()

    def full(self, args: tuple, kwargs: dict) -> tuple[Any, tuple, tuple | None]:
        """Call with a full check: the arguments, the body with the dims they bound, then the
        output. Returns the output, those dims, and the dims the body bound on top (None when
        it bound none)."""
        if not self.ready:
            self.setup()
        self.passed(args, kwargs)  # a bad call raises Python's TypeError before any check
        _compat.enter_bindings(_NO_BINDINGS, self.arguments(args, kwargs))
        try:
            bindings = self.check_arguments(args, kwargs)
            out = self.fn(*args, **kwargs)
            grew = _compat.bindings_size() != tuple(map(len, bindings))
            after = _compat.bindings_key(None) if grew else None
            if self.returns:
                self.check_output(args, kwargs, out)
        finally:
            _compat.exit_bindings()
        return out, bindings, after

    def check_output(self, args: tuple, kwargs: dict, out: Any) -> None:
        """Check ``out`` against the return annotation, in the jaxtyping memo open now."""
        if not _is_bearable()(out, self.return_hint):
            raise _explain(self.fn, args, kwargs, None, self.owner, output=(out,))


_NO_BINDINGS: tuple[dict, dict, dict] = ({}, {}, {})


@functools.cache
def _is_bearable() -> Callable[[Any, Any], bool]:
    from beartype.door import is_bearable

    return is_bearable


def _has_pytree(hint: Any, depth: int = 0) -> bool:
    """Whether ``hint`` holds a PyTree annotation anywhere (``PyTree[...] | None``, say)."""
    if _compat.pytree_parts(hint) is not None:
        return True
    return depth < 8 and any(_has_pytree(h, depth + 1) for h in typing.get_args(hint))


def _tree_key(value: Any, objects: list) -> tuple:
    """The key of a value under a PyTree annotation: its structure as jax sees it (containers,
    registered nodes and their static data) and the key of every leaf (a tensor by class,
    shape and dtype), for the verdict reads both: ``{"a": torch.ones(2)}`` keys as (its treedef,
    ``(torch.Tensor, torch.Size([2]), torch.float32)``). Needs jax, as PyTree annotations do.
    """
    import jax

    leaves, structure = jax.tree_util.tree_flatten(value)
    if len(leaves) > _CONTAINER_LIMIT:
        raise _Unkeyable
    return (structure, *[_value_key(leaf, objects) for leaf in leaves])


_NOT_PLAIN = object()  # what _tensor_key's function returns when an argument is no plain tensor


def _tensor_key(modes: tuple, paths: list) -> Callable[[tuple], Any] | None:
    """The key of a call that passes every parameter positionally, each keyed one a plain
    ``torch.Tensor``, as one generated expression: equal to the general loop's key, at a third
    of its cost (this runs on every "once" call). The function returns ``_NOT_PLAIN`` when an
    argument is no plain tensor, None when an f-string value cannot be keyed. None (no such
    function) when a parameter is keyed by class alone or by its tree.

    >>> key = _tensor_key((0, 2), [])
    >>> key((None, torch.ones(2, 3)))
    (2, torch.Size([2, 3]), torch.float32)
    """
    if 1 in modes or 3 in modes:
        return None
    slots = [i for i, mode in enumerate(modes) if mode == 2]
    lines = ["def key(args):"]
    lines += [f"    a{i} = args[{i}]" for i in slots]
    if slots:
        test = " or ".join(f"type(a{i}) is not tensor" for i in slots)
        lines.append(f"    if {test}:\n        return not_plain")
    parts = [str(len(modes))] + [f"a{i}.shape, a{i}.dtype" for i in slots]
    if paths:
        lines.append("    try:")
        for n, (index, attrs, _default) in enumerate(paths):
            lines.append(f"        p{n} = args[{index}]" + "".join(f".{a}" for a in attrs))
        lines.append("    except AttributeError:\n        return None")
        for n in range(len(paths)):
            lines.append(f"    if type(p{n}) not in plain:\n        return None")
            parts.append(f"(type(p{n}), p{n})")
    lines.append(f"    return ({', '.join(parts)},)")
    namespace = {"tensor": torch.Tensor, "plain": _PLAIN_TYPES, "not_plain": _NOT_PLAIN}
    exec("\n".join(lines), namespace)  # the attribute names are identifiers (_FSTRING_PATH)
    return namespace["key"]


def _plain_class(hint: Any) -> bool:
    """A class whose instances beartype checks by ``isinstance`` alone."""
    return (
        isinstance(hint, type)
        and not is_array_hint(hint)
        and _compat.pytree_parts(hint) is None  # isinstance(tree, PyTree[...]) reads the leaves
        and not issubclass(hint, (list, tuple, dict, set, frozenset))
        and not getattr(hint, "_is_protocol", False)
    )


def _fstring_exprs(hints: Any) -> list[str]:
    """The ``{...}`` expressions in the dims of the jaxtyping types in ``hints``."""
    found: list[str] = []

    def walk(hint: Any, depth: int) -> None:
        if is_array_hint(hint):
            found.extend(_dims._FSTRING.findall(hint.dim_str))
        elif depth < 8:
            for arg in typing.get_args(hint):
                walk(arg, depth + 1)

    for hint in hints:
        walk(hint, 0)
    return found


class _OnceMemory:
    """The signatures whose full check passed, for mode ``"once"``: a hit means the same verdict.

    An entry is ``[generation, bindings, accepted output keys, how many single and variadic
    dims the arguments bound (more after the body means the body bound some), the last accepted
    plain-tensor output key as (shape, dtype), how many tree structures the arguments bound]``.
    A signature may hold the ids of objects keyed by identity; each is referenced weakly, and its
    death forgets every signature that names it, so an object that later reuses the id is never
    trusted. A signature naming an object that cannot be referenced weakly is never remembered.
    """

    def __init__(self) -> None:
        self.keys: dict[tuple, list] = {}
        self._refs: dict[tuple, list[weakref.ref]] = {}

    def entry(self, key: tuple | None) -> list | None:
        """The entry a full check left for ``key`` in this generation, or None."""
        entry = self.keys.get(key) if key is not None else None
        if entry is None or entry[0] != _State.generation:
            return None
        return entry

    def remember(self, key: tuple, bindings: tuple, output_key: Any, objects: list) -> None:
        def forget(_ref: weakref.ref, key: tuple = key) -> None:
            self.keys.pop(key, None)
            self._refs.pop(key, None)

        try:
            refs = [weakref.ref(v, forget) for v in objects]
        except TypeError:
            return
        if len(self.keys) >= _ONCE_LIMIT:  # a bounded memory: a long run of new shapes starts over
            self.keys.clear()
            self._refs.clear()
        outputs = {output_key} if output_key is not None else set()
        entry = [_State.generation, bindings, outputs, len(bindings[0]), len(bindings[1]), None,
                 len(bindings[2])]
        if output_key is not None:
            _note_output(entry, output_key)
        self.keys[key] = entry
        self._refs[key] = refs


def _note_output(entry: list, okey: Any) -> None:
    """Keep an accepted output key ``(shape, dtype, None)`` of a plain tensor where a trusted
    call compares it first (``okey in entry[2]`` would hash it)."""
    if len(okey) == 3 and okey[2] is None and isinstance(okey[0], torch.Size):
        entry[5] = okey[:2]


def _call_context(fn, args: tuple, kwargs: dict, name: str = "") -> tuple[dict, dict, str, Any]:
    """The bound arguments, the annotations, how to name the function, and its module (if any)."""
    bound = inspect.signature(fn).bind(*args, **kwargs)
    bound.apply_defaults()
    owner = args[0] if args and isinstance(args[0], torch.nn.Module) else None
    where = type(owner).__name__ if owner is not None else name or f"{fn.__name__}()"
    if owner is not None and fn.__name__ != "forward":
        where += f".{fn.__name__}()"
    return dict(bound.arguments), annotations_of(fn), where, owner


def is_array_hint(hint: Any) -> bool:
    return hasattr(hint, "dim_str") and hasattr(hint, "dtypes")


def annotations_of(fn: Callable[..., Any]) -> dict[str, Any]:
    """The annotations of ``fn``, strings (PEP 563) evaluated. When one cannot be (a name
    imported only under ``TYPE_CHECKING``), the others are still used and that one is left
    unchecked, as beartype and jaxtyping cannot check it either."""
    try:
        return typing.get_type_hints(fn, include_extras=True)
    except Exception:
        pass
    namespace = dict(getattr(fn, "__globals__", {}))
    hints = {}
    for name, hint in getattr(fn, "__annotations__", {}).items():
        if not isinstance(hint, str):
            hints[name] = hint
            continue
        try:
            hints[name] = eval(hint, namespace)  # what get_type_hints does, one at a time
        except Exception:
            continue
    return hints


def array_hint(hint: Any, value: Any) -> Any:
    """The jaxtyping array type inside ``hint`` (unwrapping ``X | None``), or None."""
    if is_array_hint(hint):
        return hint
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        arrays = [h for h in typing.get_args(hint) if is_array_hint(h)]
        if len(arrays) == 1 and value is not None:
            return arrays[0]
    return None


def _dtype_kind(hint: Any) -> str:
    """``"float"`` for ``Float[...]``, ``"integer"`` for ``Int[...]``; ``""`` if any dtype goes."""
    if isinstance(hint.dtypes, tuple):
        name = getattr(hint.dtype, "__name__", "")
        kinds = {"Int": "integer", "UInt": "unsigned integer", "Bool": "bool", "Num": "numeric",
                 "Inexact": "float or complex", "Real": "float or integer"}
        return kinds.get(name, name.lower())
    return ""


def _dtype_ok(hint: Any, value: Any) -> bool:
    return not isinstance(hint.dtypes, tuple) or str(value.dtype).split(".")[-1] in hint.dtypes


def _explain(
    fn: Callable[..., Any],
    args: tuple,
    kwargs: dict,
    err: BaseException | None,
    name: str = "",
    output: tuple = (),
) -> ShapeError:
    """Find the failing argument (or the return value) and build one ShapeError.

    ``err`` is what jaxtyping + beartype raised (None when the caller checked itself); ``output``
    is ``(value,)`` when the return value is known to be the culprit.
    """
    arguments, hints, where, owner = _call_context(fn, args, kwargs, name)
    memo = _dims.Memo()
    candidates = []
    kinds = {p.name: p.kind for p in inspect.signature(fn).parameters.values()}
    for param, value in arguments.items():
        if kinds.get(param) == inspect.Parameter.VAR_POSITIONAL:
            candidates += [(f"{param}[{i}]", v, hints.get(param)) for i, v in enumerate(value)]
        elif kinds.get(param) == inspect.Parameter.VAR_KEYWORD:
            candidates += [(f"{param}[{k!r}]", v, hints.get(param)) for k, v in value.items()]
        else:
            candidates.append((param, value, hints.get(param)))
    culprits, about_return = _compat.checker_violation(err)
    if output and "return" in hints:
        candidates.append(("the output", _culprit(output[0], hints["return"]), hints["return"]))
    elif "return" in hints and about_return and culprits:
        candidates.append(("the output", culprits[-1], hints["return"]))
    for param, value, hint in candidates:
        if hint is None:
            continue
        inner = isinstance(value, torch.Tensor) and not array_hint(hint, value)
        if param == "the output" and inner:
            return _output_element_error(value, hint, memo, where)
        error = _check_one(param, value, hint, memo, arguments, where, owner)
        if error is not None:
            return error
    reason = str(err).strip().splitlines() if err is not None else []
    return ShapeError(
        expected="arguments matching the annotations",
        got=reason[0] if reason else "a value the annotations reject",
        where=where,
        fix="compare the annotation with the value the check names above",
        note="; ".join(line.strip() for line in reason[1:4]),
    )


def _culprit(out: Any, hint: Any) -> Any:
    """The innermost value beartype rejects in ``out`` (a tensor inside a returned tuple), or
    ``out`` itself."""
    if array_hint(hint, out) is not None or not typing.get_args(hint):
        return out
    from beartype.door import die_if_unbearable
    from beartype.roar import BeartypeDoorHintViolation

    try:
        die_if_unbearable(out, hint)
    except BeartypeDoorHintViolation as violation:
        culprits = getattr(violation, "culprits", ())
        return culprits[-1] if culprits and _array_like(culprits[-1]) else out
    return out


def _output_element_error(
    value: torch.Tensor, hint: Any, memo: _dims.Memo, where: str
) -> ShapeError:
    """A tensor inside a returned container (a tuple, say) failed; beartype names the tensor but
    not its place, so show it with the container's annotation."""
    return ShapeError(
        expected=f"the output: {_hint_text(hint)}",
        got=f"a tensor of shape {shape_text(value.shape)} inside it",
        where=where,
        bound=_dims.bound_text(memo, ""),
        fix="return tensors whose shapes match the annotation with the sizes bound so far",
    )


def _check_one(name, value, hint, memo, arguments, where, owner, leaf="") -> ShapeError | None:
    """The error for ``value`` under ``hint``, or None when it passes. ``leaf`` (``T1``) is set
    for a leaf of a named PyTree structure: its ``?name`` dims are its own there."""
    tree = _compat.pytree_parts(hint)
    if tree is not None:
        return _check_tree(name, value, tree, memo, arguments, where, owner)
    array = array_hint(hint, value)
    if array is None:
        if _bearable(value, hint):
            return None
        inner = _check_elements(name, value, hint, memo, arguments, where, owner)
        if inner is not None:
            return inner
        members = _array_members(hint)
        if members and _array_like(value):  # Float[Tensor, "n"] | Float[Tensor, "n n"]
            shapes = " or ".join(_dims.render(_dims.parse(m.dim_str), memo, arguments)
                                 for m in members)
            failure = Failure(name, "type", None, value, "", shapes)
            error = _error(failure, f"{name}: {shapes}", shape_text(value.shape), "", where,
                           owner, memo, "")
            error.fix = f"give {name} one of the annotated shapes: {shapes}"
            return error
        failure = Failure(name, "type", None, value, "", _hint_text(hint))
        return _error(failure, f"{name}: {_hint_text(hint)}", type(value).__name__, "", where,
                      owner, memo, "")
    dims = _dims.parse(array.dim_str)
    if leaf:
        dims = _dims.at_leaf(dims, leaf)
    expected = _dims.render(dims, memo, arguments)
    kind = _dtype_kind(array)
    expected_text = f"{name}: {expected}"
    if not _array_like(value):
        failure = Failure(name, "type", None, value, kind)
        return _error(failure, expected_text, type(value).__name__, "", where, owner, memo, "")
    got = shape_text(value.shape)
    if not _dtype_ok(array, value):
        dtype = str(value.dtype).split(".")[-1]
        failure = Failure(name, "dtype", None, value, kind, dtypes=tuple(array.dtypes))
        return _error(failure, f"{name}: {kind} {expected}", f"{dtype} {got}",
                      f"{kind} dtype needed", where, owner, memo, name)
    mismatch = _dims.match(dims, tuple(value.shape), memo, name, arguments)
    if mismatch is None:
        return None
    failure = Failure(name, mismatch.kind, mismatch, value, kind)
    note = "" if mismatch.kind == "size" else mismatch.reason
    return _error(failure, expected_text, got, note, where, owner, memo, name)


def _check_tree(name, value, parts, memo, arguments, where, owner) -> ShapeError | None:
    """A PyTree argument, as jaxtyping checks it: its structure against the one its name
    (``"T"``) bound first, then each leaf, named by its tree path (``batch['x'][0]``)."""
    import jax

    leaftype, structure = parts
    simple_leaf = leaftype is Any or is_array_hint(leaftype)
    is_leaf = None if simple_leaf else (lambda v: _bearable(v, leaftype))
    pairs, treedef = jax.tree_util.tree_flatten_with_path(value, is_leaf=is_leaf)
    named = bool(structure) and structure.isidentifier()
    if named:
        seen = memo.trees.setdefault(structure, (treedef, name))
        if seen[0] != treedef:
            return ShapeError(
                expected=f"{name}: the tree structure {structure}, as {seen[1]} has it: "
                f"{_tree_text(seen[0])}",
                got=_tree_text(treedef),
                where=where,
                bound=_dims.bound_text(memo, ""),
                fix=f"give {name} the same containers, keys and number of leaves as {seen[1]} "
                f"(both are annotated with the structure {structure})",
            )
    if leaftype is Any:
        return None
    for index, (path, item) in enumerate(pairs):
        error = _check_one(name + jax.tree_util.keystr(path), item, leaftype, memo, arguments,
                           where, owner, f"{structure}{index}" if named else "")
        if error is not None:
            return error
    return None


def _tree_text(treedef: Any) -> str:
    """``{'a': *, 'b': *}``: a jax tree structure as it reads, a ``*`` per leaf."""
    text = str(treedef)
    return text[len("PyTreeDef("):-1] if text.startswith("PyTreeDef(") else text


def _array_members(hint: Any) -> list:
    """The jaxtyping array types of a Union annotation (``[]`` for anything else)."""
    if typing.get_origin(hint) not in (typing.Union, types.UnionType):
        return []
    return [h for h in typing.get_args(hint) if is_array_hint(h)]


def _check_elements(name, value, hint, memo, arguments, where, owner) -> ShapeError | None:
    """The first element of a list, tuple or dict that fails its part of ``hint``, named
    ``xs[1]`` or ``batch['mask']``; None when ``hint`` is no such container or none fails."""
    origin, parts = typing.get_origin(hint), typing.get_args(hint)
    sequence = origin in (list, collections.abc.Sequence, collections.deque) and len(parts) == 1
    if sequence or (origin is tuple and len(parts) == 2 and parts[1] is Ellipsis):
        items = [(f"{name}[{i}]", v, parts[0]) for i, v in enumerate(value)]
    elif origin is tuple and isinstance(value, tuple) and len(parts) == len(value):
        items = [(f"{name}[{i}]", v, h) for i, (v, h) in enumerate(zip(value, parts, strict=True))]
    elif origin in (dict, collections.abc.Mapping) and len(parts) == 2 and isinstance(value, dict):
        items = [(f"{name}[{k!r}]", v, parts[1]) for k, v in value.items()]
    else:
        return None
    if not isinstance(value, (list, tuple, dict, collections.deque)):
        return None
    for item, v, h in items:
        error = _check_one(item, v, h, memo, arguments, where, owner)
        if error is not None:
            return error
    return None


def _array_like(value: Any) -> bool:
    """A tensor, or an array with a shape and a dtype (numpy) that jaxtyping checks alike."""
    if isinstance(value, torch.Tensor):
        return True
    return isinstance(getattr(value, "shape", None), tuple) and hasattr(value, "dtype")


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
        bound=_dims.bound_text(memo, param),
        note=note,
    )
    error.kind = failure.kind
    if owner is not None and failure.kind == "size" and failure.blame_previous:
        error.fix_previous = getattr(owner, "_fix_previous", "")
    return error


# The dtype a fix suggests when an annotation allows several: the usual one of its category.
_PREFERRED_DTYPES = ("float32", "int64", "complex64", "uint8", "bool")


def _torch_dtype_name(dtypes: tuple[str, ...]) -> str:
    """A torch dtype the annotation allows: ``float32`` for ``Float``, ``uint8`` for ``UInt``.

    >>> _torch_dtype_name(("uint2", "uint8", "uint16")), _torch_dtype_name(("bfloat16",))
    ('uint8', 'bfloat16')
    """
    names = [d for d in dtypes if isinstance(getattr(torch, d, None), torch.dtype)]
    preferred = [d for d in _PREFERRED_DTYPES if d in names]
    return (preferred or names or ["float32"])[0]


def generic_fix(failure: Failure, memo: _dims.Memo) -> str:
    """One concrete fix for a failure in a function that has no fix of its own."""
    name, m = failure.param, failure.mismatch
    if failure.kind == "type" and failure.expected_type:
        return f"pass {name} as {failure.expected_type}, not {type(failure.value).__name__}"
    if failure.kind == "type":
        return f"pass a torch.Tensor as {name} (torch.as_tensor(...) converts lists and arrays)"
    if failure.kind == "dtype":
        cast = {"float": ".float()", "integer": ".long()", "int": ".long()", "bool": ".bool()"}.get(
            failure.expected_dtype
        ) or f".to(torch.{_torch_dtype_name(failure.dtypes)})"
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
