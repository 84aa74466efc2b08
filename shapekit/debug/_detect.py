"""``detect()``: ``explain()`` plus detectors for *silent* shape bugs, code that runs but almost
certainly computes the wrong thing.

>>> import warnings, torch
>>> x = torch.randn(32, 8, 24)  # (B, T, C)
>>> with warnings.catch_warnings(record=True) as caught, detect():  # shapekit.detect()
...     warnings.simplefilter("always")
...     y = x.view(32, 24, 8)  # meant (B, C, T): a view cannot move axes
>>> print(caught[0].message)  # doctest: +ELLIPSIS
<doctest ...>:3 x.view(32, 24, 8) expected a view/reshape that merges or splits neighbouring axes, got (32, 8, 24) -> (32, 24, 8): the new sizes are the old axes in another order; ...
  fix: move axes with transpose/permute: x.transpose(1, 2)
  docs: https://shapekit.readthedocs.io/en/latest/pitfalls/view-transposes/

Each finding is a :class:`PitfallWarning` (``.rule`` is the rule id, see :data:`RULES`) reported at
the user's file:line, once per rule and line per block; ``detect(strict=True)`` raises
:class:`ShapeError` instead. Inside the block a ``torch.overrides.TorchFunctionMode`` sees every
torch call (the per-op detectors in :mod:`shapekit.debug._detectors`, looked up by function: a
call without a rule, tensor attribute reads included, costs one dictionary look-up; a rule that
only reports skips the calls a library's own code makes; frames are walked only once a rule's
cheap precondition holds; a shapekit.nn layer call that ``@shaped`` trusts runs unwatched when
this mode is the only one, as none of a library's ops are reported). It also sees
``torch.nn.BatchNorm1d`` and ``torch.nn.Conv1d`` inputs (``F.batch_norm``, ``conv1d``), and
torch's global buffer and parameter registration hooks see buffers being replaced; no hook runs
per forward, so modules keep torch's fast call path. All of it is removed on exit.
Shape errors torch raises inside the block are explained as in ``explain()``, with the failing call
recorded exactly by the function mode.
"""  # noqa: E501 (doctest output: the exact message lines)

from __future__ import annotations

import ast
import os
import sys
import threading
import warnings
import weakref
from contextlib import ContextDecorator
from types import FrameType, MappingProxyType
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from .. import _torch_compat as _compat
from ..checking import PitfallWarning, ShapeError, shape_error_like, shape_text
from . import _detectors
from ._detectors import CHECKS, MARKS
from ._explain import explain_error
from ._frames import expression, is_user_file, op_text, user_frame, where
from ._operands import MISSING, evaluate, locate
from ._pitfalls import docs_url, strip_leading_ones

__all__ = ["detect"]

_TORCH = os.path.dirname(os.path.realpath(torch.__file__)) + os.sep
_TORCH_MODULES = os.path.join(_TORCH, "nn", "modules") + os.sep
# Frames between a torch call and the code that made it: ours, and torch's dispatch machinery.
_MACHINERY = frozenset({
    os.path.realpath(__file__), os.path.realpath(_detectors.__file__),
    os.path.join(_TORCH, "overrides.py"), os.path.join(_TORCH, "_tensor.py"),
})
_NAN_RULES = frozenset({"var-single-element"})  # pitfalls whose result is NaN
_local = threading.local()  # .state: the innermost active detect() block of this thread


class _State:
    """One detect() block: its settings, what it reported, and what the detectors remember."""

    def __init__(self, strict: bool) -> None:
        self.strict = strict
        self.seen: set[tuple[str, str]] = set()
        self.findings: list[PitfallWarning] = []
        # Tensors whose axes were arranged on purpose: x[:, None], keepdim, a conv's (N, C, L).
        self.explicit: dict[int, weakref.ref] = {}
        self.reduced: dict[int, tuple[weakref.ref, weakref.ref, tuple[int, ...]]] = {}
        self.assigned: set[tuple[int, str]] = set()  # buffers already reported at an assignment
        self.func: Any = None  # the torch call being checked
        self.nan_sources: list[ShapeError] = []  # findings whose result is NaN, for later errors
        self.mode: _Mode | None = None  # the function mode watching the block

    # -- what the detectors remember ----------------------------------------------------------

    def mark_explicit(self, tensor: torch.Tensor) -> None:
        key = id(tensor)
        self.explicit[key] = weakref.ref(tensor, lambda _, d=self.explicit, k=key: d.pop(k, None))

    def is_explicit(self, tensor: torch.Tensor) -> bool:
        ref = self.explicit.get(id(tensor))
        return ref is not None and ref() is tensor

    def carry_explicit(self, operands: Any, out: torch.Tensor) -> None:
        """Mark ``out`` explicit when one of ``operands`` is and has its shape (``x[:, None] * 2``
        is still the column made on purpose)."""
        explicit = self.explicit
        for arg in operands:
            if id(arg) in explicit and arg.shape == out.shape and self.is_explicit(arg):
                self.mark_explicit(out)
                return

    def remember_reduction(self, result: torch.Tensor, source: torch.Tensor,
                           dims: tuple[int, ...]) -> None:
        key = id(result)
        self.reduced[key] = (
            weakref.ref(result, lambda _, d=self.reduced, k=key: d.pop(k, None)),
            weakref.ref(source),
            dims,
        )

    def reduction_of(self, result: torch.Tensor, source: torch.Tensor) -> tuple[int, ...] | None:
        entry = self.reduced.get(id(result))
        if entry is None or entry[0]() is not result or entry[1]() is not source:
            return None
        return entry[2]

    # -- reporting ----------------------------------------------------------------------------

    def report(self, rule: str, build: _detectors.Build, *, method: bool,
               reverse: bool = False) -> None:
        """Report a finding of a per-op detector at the line of user code that made the call."""
        frame = _op_caller(self.func)
        if frame is not None:
            self.emit(rule, build, frame, method=method, reverse=reverse)

    def caller(self) -> FrameType | None:
        """The user frame that made the torch call being checked (None: a library made it)."""
        return _op_caller(self.func)

    def report_at(self, rule: str, build: _detectors.Build, frame: FrameType, label: str) -> None:
        """Report a finding at ``frame``'s line, naming the statement as ``label``."""
        self.emit(rule, build, frame, label=label)

    def report_buffer(self, module: torch.nn.Module, name: str, new: torch.Size,
                      frame: FrameType, label: str | None = None) -> None:
        """A registered buffer or parameter about to be replaced by a tensor of another shape
        (``self.running_mean = ...`` on the line ``frame`` runs): reported there, once."""
        old = _registered(module, name)
        if old is None or strip_leading_ones(tuple(old.shape)) == strip_leading_ones(tuple(new)):
            return
        self.assigned.add((id(module), name))
        self.emit("buffer-shape-change", _buffer_build(module, name, old.shape, new), frame,
                  label=label)

    def emit(self, rule: str, build: _detectors.Build, frame: FrameType, *, method: bool = False,
             reverse: bool = False, module: Any = None, label: str | None = None) -> None:
        """Warn (or raise, when strict) once per rule and line: where, what, why, the fix, docs."""
        location = where(frame)
        if (rule, location) in self.seen:
            return
        self.seen.add((rule, location))
        text, node = expression(frame)
        names, callee = _names(node, frame, method=method, module=module)
        if reverse:
            names[:2] = names[1::-1]
        expected, got, note, fix = build(names, callee)
        shown = op_text(text, node) if label is None else label
        error = ShapeError(expected=expected, got=got, note=note, where=f"{location} "
                           f"{shown}".strip(), fix=f"{fix}\n  docs: {docs_url(rule)}")
        error.rule = rule  # type: ignore[attr-defined]  # the pytest plugin names the rule
        if self.strict:
            raise error
        if rule in _NAN_RULES:
            self.nan_sources.append(error)
        warning = PitfallWarning(str(error), rule=rule)
        self.findings.append(warning)
        warnings.warn_explicit(
            warning, PitfallWarning, frame.f_code.co_filename, frame.f_lineno,
            module=frame.f_globals.get("__name__", "<unknown>"),
            registry=frame.f_globals.setdefault("__warningregistry__", {}),
            module_globals=frame.f_globals,
        )


def _op_caller(func: Any) -> FrameType | None:
    """The user frame that made the torch call ``func``; None when torch's own internals, einops or
    shapekit made it (their ops are not the user's bugs)."""
    frame = sys._getframe(2)
    code = getattr(func, "__code__", None)
    while frame is not None and (
        frame.f_code.co_filename in _MACHINERY or frame.f_code is code
    ):
        frame = frame.f_back
    if func in _LAYER_FUNCS or getattr(func, "__module__", None) == "torch.nn.functional":
        # nn.Softmax, nn.CrossEntropyLoss ... call F.* on the user's behalf
        while frame is not None and frame.f_code.co_filename.startswith(_TORCH_MODULES):
            frame = frame.f_back
    if frame is None or not is_user_file(frame.f_code.co_filename):
        return None
    return frame


def _names(node: ast.expr | None, frame: FrameType, *, method: bool,
           module: Any) -> tuple[list[str], str]:
    """The operands as the user wrote them (``["logits", "Yb"]``) and the called function's text."""
    names: list[str] = []
    callee = ""
    if isinstance(node, ast.BinOp):
        names = [ast.unparse(node.left), ast.unparse(node.right)]
    elif isinstance(node, ast.Compare):
        names = [ast.unparse(node.left), ast.unparse(node.comparators[0])]
    elif isinstance(node, ast.Subscript):
        names = [ast.unparse(node.value), ast.unparse(node.slice)]
    elif isinstance(node, ast.Call):
        callee = ast.unparse(node.func)
        names = [ast.unparse(a) for a in node.args] + [ast.unparse(k.value) for k in node.keywords]
        if method and isinstance(node.func, ast.Attribute):
            names.insert(0, ast.unparse(node.func.value))
            callee = ""
        if module is not None and _called(node.func, frame) is not module:
            names, callee = [], ""  # the module was called from inside another one
    return names + ["x", "y"][len(names):], callee


def _called(func: ast.expr, frame: FrameType) -> Any:
    try:
        with _compat.no_torch_function():
            return evaluate(func, frame.f_locals, frame.f_globals)
    except Exception:
        return MISSING


# Tensor attribute reads and writes (``x.shape``, ``p.grad = None``): most of the torch calls a
# training step makes. Only ``p.data = ...`` has a rule; the others take the no-rule path and are
# told apart (from ops) only where that matters: an error, or an explicit tensor as operand.
_DATA_SET = torch.Tensor.data.__set__  # p.data = ...: the one a rule looks at
_ATTRIBUTES = _compat.tensor_attribute_accessors() - {_DATA_SET}
_NO_KWARGS: Any = MappingProxyType({})  # what a detector sees for a call without keywords


class _Mode(TorchFunctionMode):
    """Sees every torch call in the block. A call without a rule (most are tensor attribute reads)
    costs one dictionary look-up (:data:`_RULES`, keyed by function) and two truth tests; a call
    with rules runs them, and each tests its cheap preconditions first; frames are walked only by
    a rule about to report. ``state``: the innermost block's (nested blocks share
    the outermost block's mode)."""

    def __init__(self, state: _State) -> None:
        super().__init__()
        self.state = state

    def shapekit_run_layer(self, fn: Any, args: tuple, kwargs: dict) -> Any:
        """Run the body of a shapekit.nn layer whose call ``@shaped`` trusts, unwatched.

        Its torch calls are a library's, which the rules that report skip, and the rules that
        remember (an axis added on purpose, a reduction) only mark its temporaries; so the
        layer runs without a call into this mode per op. What it would pass on is kept: an
        output of an input's shape made from an explicit input (``Tanh()(x[:, None])``) stays
        explicit, as ``_keep_explicit`` has it op by op. Watched as usual in another thread.
        """
        state = self.state
        if getattr(_local, "state", None) is not state:
            return fn(*args, **kwargs)
        with _compat.no_torch_function():
            out = fn(*args, **kwargs)
            if state.explicit and type(out) is _Tensor:
                state.carry_explicit((*args, *kwargs.values()), out)
        return out

    def __torch_function__(self, func, types, args=(), kwargs=None):
        rules = _RULES.get(func)  # None: no rule (most calls: x.shape, p.grad = None, tanh ...)
        if rules is not None and rules[0] and not _library_call(func):
            _before(rules[0], func, args, kwargs)
        try:
            out = func(*args, **kwargs) if kwargs else func(*args)
        except Exception as err:
            _record(err, func, args, kwargs)
            raise
        state = self.state
        explicit = state.explicit
        if explicit and type(out) is _Tensor and args and (
            id(args[0]) in explicit or (len(args) > 1 and id(args[1]) in explicit)
        ):
            _keep_explicit(func, args, out)
        if rules is None or getattr(_local, "state", None) is not state:
            return out  # no rule, or a thread that inherited the mode (autograd): not watched
        if rules[2] and _library_call(func):
            return out  # rules that only report, on a call a library made: never reported
        state.func = func
        kw = kwargs or _NO_KWARGS
        for check in rules[1]:
            try:
                check(state, func, args, kw, out)
            except (ShapeError, PitfallWarning):  # a finding: strict, or warnings as errors
                raise
            except Exception as bug:
                _failed(check, func, bug, 3)
        return out


_Tensor = torch.Tensor


def _library_call(func: Any) -> bool:
    """True when the torch call ``func`` being handled was made by a library's own code
    (shapekit.nn, an optimizer, einops): ``_op_caller`` would find no user frame for it, so a rule
    that only reports has nothing to do. Decided by the calling file, cached; False when the
    caller is torch's dispatch machinery or ``torch.nn`` calling ``F.*`` for the user."""
    code = sys._getframe(2).f_code  # _library_call <- __torch_function__ <- the call
    library = _LIBRARY.get(code.co_filename)
    if library is None:
        name = code.co_filename
        library = _LIBRARY[name] = not (
            name in _MACHINERY or name.startswith(_TORCH_MODULES) or is_user_file(name)
        )
    return library and code is not getattr(func, "__code__", None)


_LIBRARY: dict[str, bool] = {}  # file name -> a library's code (see _library_call)


def _before(checks: tuple, func: Any, args: tuple, kwargs: dict | None) -> None:
    """The rules on a call's inputs, run before it: torch may raise on them, or change them."""
    state = getattr(_local, "state", None)
    if state is None:  # a thread that inherited the mode (autograd); its block is elsewhere
        return
    state.func = func
    for check in checks:
        try:
            check(state, func, args, kwargs or _NO_KWARGS, None)
        except (ShapeError, PitfallWarning):
            raise
        except Exception as bug:
            _failed(check, func, bug, 4)


def _record(err: Exception, func: Any, args: tuple, kwargs: dict | None) -> None:
    """Keep the failing call's exact operands on the error, for ``explain_error``."""
    if getattr(err, "_shapekit_call", None) is None and func not in _ATTRIBUTES:
        err._shapekit_call = (func, args, kwargs or {})  # type: ignore[attr-defined]


def _keep_explicit(func: Any, args: tuple, out: torch.Tensor) -> None:
    """``x[:, None].float()``, ``x[:, None] * 2``: still the column made on purpose (called when
    one of the first two operands may be such a tensor)."""
    state = getattr(_local, "state", None)
    if state is None or func in _ATTRIBUTES:  # another thread's call; an attribute read
        return
    state.carry_explicit(args[:2], out)


def _failed(check: Any, func: Any, bug: Exception, stacklevel: int) -> None:
    """A detector's own failure warns (at the user's line: ``stacklevel`` frames up from the
    caller of this function) and never breaks the user's code."""
    warnings.warn(f"shapekit.detect(): {check.__name__} failed on "
                  f"{getattr(func, '__name__', func)}: {bug!r} (please report it)",
                  RuntimeWarning, stacklevel=stacklevel + 1)


# --- module hooks and buffer assignments ------------------------------------------------------


def _registered(module: torch.nn.Module, name: str) -> torch.Tensor | None:
    for store in ("_parameters", "_buffers"):
        table = module.__dict__.get(store)
        if table is not None and name in table:
            return table[name]
    return None


def _buffer_build(module: torch.nn.Module, name: str, old: torch.Size,
                  new: torch.Size) -> _detectors.Build:
    kind = "buffer" if name in module.__dict__.get("_buffers", {}) else "parameter"

    def build(names: list[str], callee: str) -> tuple[str, str, str, str]:
        return (
            f"{type(module).__name__}.{name} (a registered {kind}) to keep its shape "
            f"{shape_text(old)}",
            f"{shape_text(new)} after a forward",
            "its shape now follows the input's; training goes on without an error, but it no "
            "longer holds one value per feature",
            "compute statistics over every axis but the features (x.mean((0, 1)) for (B, T, C) "
            "input, x.mean(0) for (B, C)); updating in place (buf.mul_(1 - m).add_(m * new)) "
            "makes a wrong shape raise",
        )

    return build


def _buffer_assigned(module: torch.nn.Module, name: str, value: Any) -> None:
    """torch's global buffer/parameter registration hook: ``self.running_mean = xmean`` on a
    registered buffer, seen before it is stored (an assignment no op of the line shows)."""
    state = getattr(_local, "state", None)
    if state is None or not isinstance(value, torch.Tensor) or (id(module), name) in state.assigned:
        return
    frame = user_frame(sys._getframe(1))
    if frame is not None:
        state.report_buffer(module, name, value.shape, frame)


def _data_assigned(state: _State, func: Any, args: tuple, kwargs: dict, out: Any) -> None:
    """``self.w.data = torch.ones(n)``: a parameter replaced behind its module's back."""
    if len(args) < 2 or not isinstance(args[1], torch.Tensor) or not isinstance(
        args[0], torch.Tensor
    ) or args[0].shape == args[1].shape:
        return
    frame = _op_caller(func)
    _, node = expression(frame) if frame is not None else ("", None)
    if not (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)):
        return
    owner = _called(node.value.value, frame)
    if isinstance(owner, torch.nn.Module) and _registered(owner, node.value.attr) is args[0]:
        state.report_buffer(owner, node.value.attr, args[1].shape, frame)


_ELSEWHERE = object()  # a layer called inside another module: the user's line names another call


def _layer_frame(func: Any, is_layer: Any) -> tuple[FrameType | None, Any]:
    """The user's line that (through torch's module) made a layer's call, and how ``emit`` should
    name the operands: the layer itself when that line calls it directly."""
    frame = _op_caller(func)
    if frame is None:
        return None, None
    _, node = expression(frame)
    called = _called(node.func, frame) if isinstance(node, ast.Call) else MISSING
    return frame, called if is_layer(called) else _ELSEWHERE


def _batchnorm_op(state: _State, func: Any, args: tuple, kwargs: dict, out: Any) -> None:
    """``F.batch_norm`` (torch's BatchNorm1d) on ``(N, L, C)``: the channels-last layout."""
    x = args[0] if args else kwargs.get("input")
    running = args[1] if len(args) > 1 else kwargs.get("running_mean")
    weight = args[3] if len(args) > 3 else kwargs.get("weight")
    ref = running if isinstance(running, torch.Tensor) else weight
    if not isinstance(x, torch.Tensor) or not isinstance(ref, torch.Tensor) or x.ndim != 3:
        return
    c = ref.shape[0]
    if x.shape[-1] != c:
        return
    transposed = x.stride(1) == 1 and x.stride(2) != 1  # (N, C, L) made from (N, L, C)
    if x.shape[1] == c and (transposed or state.is_explicit(x)):
        return  # channels on axis 1 on purpose (a transpose, a convolution): the documented layout
    frame, module = _layer_frame(func, lambda m: isinstance(m, torch.nn.BatchNorm1d) and (
        m.running_mean is running or m.weight is weight))
    if frame is None:
        return
    shape = x.shape

    def build(names: list[str], callee: str) -> tuple[str, str, str, str]:
        xn = names[0]
        if shape[1] == c:
            note = (f"the last axis is {c} = num_features too; if {xn} is (batch, length, "
                    f"channels), torch normalises over the wrong axis and nothing fails")
        else:
            note = f"the {c} channels are on the last axis (channels-last)"
        call = f"{callee}({xn}.transpose(1, 2)).transpose(1, 2)" if callee else (
            "transpose(1, 2) before and after the layer")
        return (
            f"(N, {c}) or (N, {c}, L): torch's BatchNorm1d normalises axis 1",
            f"{xn}: {shape_text(shape)}",
            note,
            f"pass it transposed and transpose back: {call}; or use shapekit.nn.BatchNorm1d({c}), "
            "which is channels-last",
        )

    state.emit("batchnorm-channels-last", build, frame, module=module)


def _conv1d_op(state: _State, func: Any, args: tuple, kwargs: dict, out: Any) -> None:
    """The BatchNorm rule's twin: ``(B, L, C)`` with ``L == C == in_channels`` runs, convolving
    over the channels."""
    x = args[0] if args else kwargs.get("input")
    weight = args[1] if len(args) > 1 else kwargs.get("weight")
    if not isinstance(x, torch.Tensor) or not isinstance(weight, torch.Tensor) or x.ndim != 3:
        return
    groups = args[6] if len(args) > 6 else kwargs.get("groups", 1)
    c = weight.shape[1] * (groups if isinstance(groups, int) else 1)
    if x.shape[1] != c or x.shape[2] != c or c < 2:
        return
    if (x.stride(1) == 1 and x.stride(2) != 1) or state.is_explicit(x):
        return  # a transposed view, a convolution's output: (N, C, L) on purpose
    frame, module = _layer_frame(func, lambda m: isinstance(m, torch.nn.Conv1d) and (
        m.weight is weight))
    if frame is None:
        return
    shape = x.shape

    def build(names: list[str], callee: str) -> tuple[str, str, str, str]:
        xn = names[0]
        call = f"{callee}({xn}.transpose(1, 2))" if callee else "the layer on x.transpose(1, 2)"
        return (
            f"(N, {c}, L): torch's Conv1d reads the channels from axis 1 and convolves over the "
            "last axis",
            f"{xn}: {shape_text(shape)}",
            f"the last axis is {c} = in_channels too; if {xn} is (batch, length, channels), torch "
            "convolves across the channels and nothing fails",
            f"pass it as (N, C, L): {call}, and .transpose(1, 2) the result back if the next "
            "layer wants (N, L, C)",
        )

    state.emit("conv1d-channels-last", build, frame, module=module)


_LAYER_FUNCS = frozenset({torch.conv1d})  # builtins a torch module calls for the user
# Detectors that look at a call's inputs only, run before it: torch may raise on them (a
# BatchNorm1d given (N, L, C) with L != C), or the call changes them (p.data = ...).
_BEFORE = {F.batch_norm: (_batchnorm_op,), torch.conv1d: (_conv1d_op,),
           _DATA_SET: (_data_assigned,)}
# Every function with a rule -> (its rules before the call, its rules after it, whether all of
# them only report: none remembers anything, see MARKS); any other function runs unlooked at.
_RULES = {
    func: (_BEFORE.get(func, ()), after, not MARKS.intersection(after))
    for func in {**CHECKS, **_BEFORE} for after in [CHECKS.get(func, ())]
}


class _Hooks:
    """The global hooks, installed while any thread is inside a detect() block."""

    lock = threading.Lock()
    users = 0
    handles: tuple = ()

    @classmethod
    def install(cls) -> None:
        with cls.lock:
            if cls.users == 0:
                # Registration hooks run only when a buffer or parameter is assigned, never per
                # forward: global forward hooks would put every module call on torch's slow path.
                register = torch.nn.modules.module
                cls.handles = (
                    register.register_module_buffer_registration_hook(_buffer_assigned),
                    register.register_module_parameter_registration_hook(_buffer_assigned),
                )
            cls.users += 1

    @classmethod
    def remove(cls) -> None:
        with cls.lock:
            cls.users -= 1
            if cls.users == 0:
                for handle in cls.handles:
                    handle.remove()


class detect(ContextDecorator):
    """Warn about silent shape bugs inside the block (or the decorated function), and explain
    torch's shape errors as ``explain()`` does.

    Each finding warns :class:`PitfallWarning` at the user's line, with the rule id, the shapes,
    why it is suspicious, the fix and the rule's docs page; ``strict=True`` raises
    :class:`ShapeError` instead. ``findings`` lists the warnings of the block once it ends.

    >>> import torch, torch.nn.functional as F
    >>> logits = torch.randn(32, 27)
    >>> with detect(strict=True):  # doctest: +ELLIPSIS
    ...     probs = F.softmax(logits, dim=0)
    Traceback (most recent call last):
    ...
    shapekit.ShapeError: <doctest ...>:2 F.softmax(logits, dim=0) expected a softmax over the class axis (the last), got dim=0 on logits: (32, 27): each column then sums to 1 across the 32 rows of the batch, not each row across its 27 classes
      fix: pass dim=-1 (the classes)
      docs: https://shapekit.readthedocs.io/en/latest/pitfalls/softmax-dim0/
    """  # noqa: E501 (doctest output: the exact message lines)

    def __init__(self, strict: bool = False) -> None:
        if not isinstance(strict, bool):
            raise TypeError(f"detect(strict={strict!r}): strict must be True or False")
        self.strict = strict
        self.findings: list[PitfallWarning] = []
        self._state: _State | None = None

    def _recreate_cm(self) -> detect:
        return type(self)(strict=self.strict)  # a decorated function gets a fresh block per call

    def __enter__(self) -> detect:
        if self._state is not None:
            raise RuntimeError("this detect() block is already running; fix: use a new detect() "
                               "for each with statement")
        self._state = _State(self.strict)
        self._previous = getattr(_local, "state", None)
        _local.state = self._state
        self._mode = None
        if self._previous is None:  # nested blocks share the outer block's mode and hooks
            _Hooks.install()
            self._mode = self._state.mode = _Mode(self._state)
            self._mode.__enter__()
        else:  # the outer block's mode watches for this block until it ends
            self._state.mode = self._previous.mode
            self._state.mode.state = self._state
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if self._mode is not None:
            self._mode.__exit__(None, None, None)
            _Hooks.remove()
        else:
            self._state.mode.state = self._previous
        state, self._state = self._state, None
        _local.state = self._previous
        self.findings = state.findings
        if exc is not None:
            error = explain_error(exc)
            if error is None and state.nan_sources:
                error = _nan_error(exc, state.nan_sources[0])
            if error is not None:
                raise error from exc
        return False


def _nan_error(exc: BaseException, source: ShapeError) -> ShapeError | None:
    """A later error (``torch.multinomial``'s ``probability tensor contains ... nan``) on values
    that hold NaN or inf, tied back to the pitfall reported earlier that made the NaN."""
    call = getattr(exc, "_shapekit_call", None)
    if call is None or not isinstance(exc, RuntimeError | ValueError):
        return None
    _, args, kwargs = call
    with _compat.no_torch_function():
        bad = [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)
               and a.is_floating_point() and not bool(torch.isfinite(a).all())]
    if not bad:
        return None
    site = locate(exc)
    first = str(exc).splitlines()[0]
    fix = source.fix.split("\n")[0]
    name = next((f"{o.name}: " for o in site.tensors if o.value is bad[0]), "")
    return shape_error_like(exc)(
        expected="finite values (torch raised: " + first + ")",
        got=f"{name}{shape_text(bad[0].shape)} holding NaN/inf, made by the pitfall reported "
        f"earlier at {source.where} [{source.rule}]",  # type: ignore[attr-defined]
        note=f"{source.expected} there, got {source.got}",
        where=site.label,
        fix=f"{fix}\n  docs: {docs_url(source.rule)}",  # type: ignore[attr-defined]
    )

