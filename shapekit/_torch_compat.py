"""Every use of a torch API that is private or newer than the oldest torch shapekit supports.

shapekit's own code asks the questions below; only this module knows how each torch answers
them. Tested on torch 2.7.0 (the oldest supported, see ``.ci/compat``), 2.13.0 and 2.14.1. Each
function falls back to a safe answer when the API it uses is missing.

>>> import torch
>>> values_visible(torch.arange(3)), values_visible(torch.empty(3, device="meta"))
(True, False)
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

F = TypeVar("F", bound=Callable[..., Any])

# The modules whose frames run torch's Python-level functions (F.linear, Tensor.__matmul__...):
# explain() looks below the user's frame for one of them (torch._tensor is private; 2.4 - 2.13).
TORCH_FUNCTION_MODULES = ("torch.nn.functional", "torch.functional", "torch._tensor")

__all__ = [
    "autocast_dtype",
    "bindings_key",
    "bindings_size",
    "checker_violation",
    "compiled_failure",
    "current_bindings",
    "enter_bindings",
    "exit_bindings",
    "function_mode_active",
    "is_compiling",
    "is_vmapped",
    "memo_stack",
    "no_torch_function",
    "pytree_parts",
    "run_outside_graph",
    "sole_function_mode",
    "storage_owner",
    "tensor_attribute_accessors",
    "values_visible",
]


def is_compiling() -> bool:
    """True while ``torch.compile`` or ``torch.export`` traces the calling code (public since
    torch 2.3: ``torch.compiler.is_compiling``).

    >>> is_compiling()
    False
    """
    return torch.compiler.is_compiling()


def run_outside_graph(fn: F) -> F:
    """``fn`` runs eagerly, at run time, when called from code that ``torch.compile`` traces
    (a graph break around the call); an ordinary call otherwise. ``torch.compiler.disable`` is
    applied only while tracing, where dynamo is loaded anyway: importing it costs ~2 s.

    >>> run_outside_graph(len)([1, 2])
    2
    """

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        if is_compiling():
            return torch.compiler.disable(fn)(*args, **kwargs)
        return fn(*args, **kwargs)

    return call  # type: ignore[return-value]


def _is_fake(t: torch.Tensor) -> bool:
    try:
        from torch._subclasses.fake_tensor import is_fake  # private; torch 2.1 - 2.13
    except ImportError:  # pragma: no cover - a torch that moved it: assume the values are real
        return False
    return bool(is_fake(t))


def _functorch_says(question: str, t: torch.Tensor) -> bool:
    """``torch._C._functorch.<question>(t)`` (private; torch 2.0 - 2.13), False where missing."""
    functorch = getattr(torch._C, "_functorch", None)
    check = getattr(functorch, question, None)
    return bool(check is not None and check(t))


def _is_functorch_wrapped(t: torch.Tensor) -> bool:
    """Inside ``torch.func.vmap`` / ``grad``: a tensor whose values are not a plain tensor's."""
    checks = ("is_batchedtensor", "is_gradtrackingtensor", "is_functionaltensor")
    return any(_functorch_says(name, t) for name in checks)


def values_visible(t: torch.Tensor) -> bool:
    """Whether shapekit may read the *values* of ``t`` (``t.min()``) in Python: not on the meta
    device, not a fake tensor (``FakeTensorMode``, ``torch.export``), not inside vmap/grad, not
    while ``torch.compile`` traces. Where they are hidden, value guards are skipped: shapes are
    still checked.

    >>> values_visible(torch.zeros(2, 3))
    True
    """
    return not (
        t.device.type == "meta" or is_compiling() or _is_fake(t) or _is_functorch_wrapped(t)
    )


def autocast_dtype(device_type: str) -> torch.dtype | None:
    """The dtype ``torch.autocast`` casts to on ``device_type`` right now, or None when autocast
    is off there.

    >>> autocast_dtype("cpu") is None
    True
    >>> with torch.autocast("cpu", dtype=torch.bfloat16):
    ...     autocast_dtype("cpu")
    torch.bfloat16
    """
    try:
        enabled = torch.is_autocast_enabled(device_type)  # torch >= 2.4 takes the device
    except TypeError:  # pragma: no cover - older torch
        enabled = (
            torch.is_autocast_cpu_enabled() if device_type == "cpu"
            else torch.is_autocast_enabled()
        )
    if not enabled:
        return None
    try:
        return torch.get_autocast_dtype(device_type)  # torch >= 2.4
    except (AttributeError, TypeError):  # pragma: no cover - older torch
        return torch.get_autocast_cpu_dtype() if device_type == "cpu" else torch.float16



# jaxtyping's per-call memo of bound dims (private: jaxtyping._storage, tested on jaxtyping
# 0.3.11 with beartype 0.23.1). @shaped restores the bindings a full check made when "once" trusts
# a call, so the body's own isinstance checks, nested @jaxtyped helpers and
# jaxtyping.print_bindings() see them.


@functools.cache
def _local() -> Any:
    """jaxtyping's per-thread storage, whose ``.memo_stack`` holds ``(single, variadic, pytree,
    arguments)`` per open call; a private stand-in if a jaxtyping moved it (then a trusted
    call's body no longer sees the bindings; checks are unaffected)."""
    try:
        from jaxtyping import _storage  # private; jaxtyping 0.2.20 - 0.3.11

        return _storage._shape_storage
    except (ImportError, AttributeError):  # pragma: no cover
        import threading

        return threading.local()


def _top() -> tuple:
    stack = getattr(_local(), "memo_stack", None)
    return stack[-1] if stack else ({}, {}, {}, {})


def memo_stack() -> list:
    """This thread's stack of jaxtyping memos, each ``(single, variadic, pytree, arguments)``;
    a trusted "once" call pushes one and pops it (the hot path, so no helper runs per call).

    >>> isinstance(memo_stack(), list)
    True
    """
    global _STORAGE
    try:
        return _STORAGE.memo_stack
    except AttributeError:  # the first call in this thread (or of all: _STORAGE is None)
        _STORAGE = _local()
        if not hasattr(_STORAGE, "memo_stack"):
            _STORAGE.memo_stack = []
        return _STORAGE.memo_stack


_STORAGE: Any = None  # _local(), looked up at the first use: jaxtyping is imported only then


def current_bindings() -> tuple[dict, dict, dict]:
    """Copies of the dims bound in the innermost jaxtyping memo (single, variadic, pytree).

    >>> current_bindings()
    ({}, {}, {})
    """
    single, variadic, pytree, _arguments = _top()
    return dict(single), dict(variadic), dict(pytree)


def enter_bindings(bindings: tuple[dict, dict, dict], arguments: dict) -> tuple:
    """Open a jaxtyping memo holding copies of ``bindings`` (as :func:`current_bindings` gave
    them) and the call's ``arguments`` (for f-string dims); :func:`exit_bindings` closes it.
    Returns the memo's (single, variadic) dicts. The memo stack is used directly: this is on the
    path of every trusted "once" call, and jaxtyping's push + set cost twice as much.

    >>> _ = enter_bindings(({"n": 3}, {}, {}), {})
    >>> current_bindings()[0]
    {'n': 3}
    >>> exit_bindings()[0]
    {'n': 3}
    """
    storage = _local()  # a threading.local; .memo_stack is jaxtyping's stack
    try:
        stack = storage.memo_stack
    except AttributeError:
        stack = storage.memo_stack = []
    single, variadic, pytree = bindings
    memo = (dict(single), dict(variadic), dict(pytree), arguments)
    stack.append(memo)
    return memo


def bindings_key(memo: tuple | None) -> tuple:
    """The dims bound in ``memo`` (as :func:`exit_bindings` returned it; None: the innermost
    open memo), as a hashable key.

    >>> bindings_key(None)
    ((), (), ())
    """
    single, variadic, pytree, _arguments = memo or _top()
    return tuple(single.items()), tuple(variadic.items()), tuple(pytree.items())


def bindings_size() -> tuple[int, int, int]:
    """How many single and variadic dims and tree structures the innermost jaxtyping memo holds.

    >>> bindings_size()
    (0, 0, 0)
    """
    single, variadic, pytree, _arguments = _top()
    return len(single), len(variadic), len(pytree)


def exit_bindings() -> tuple:
    """Close the memo :func:`enter_bindings` opened; returns it as the call left it
    ``(single, variadic, pytree, arguments)``."""
    return _local().memo_stack.pop()


def no_torch_function() -> Any:
    """A ``with`` block in which torch calls skip every ``TorchFunctionMode`` (shapekit's own
    look-ups inside ``detect()`` and ``trace(ops=True)``, which must not be watched).

    Private: ``torch._C.DisableTorchFunction``, torch 2.0 - 2.13.

    >>> with no_torch_function():
    ...     torch.ones(2).shape
    torch.Size([2])
    """
    return torch._C.DisableTorchFunction()


def function_mode_active() -> bool:
    """True while a ``TorchFunctionMode`` is active on this thread (``detect()``, ``trace(ops=
    True)``, a user's own mode): then every tensor attribute read (``x.shape``) is a call into
    the mode, and ``@shaped`` reads its "once" keys of plain tensors in ``no_torch_function()``.

    Private: ``torch._C._is_torch_function_mode_enabled``, torch 2.0 - 2.14; False without it.

    >>> from torch.overrides import TorchFunctionMode
    >>> with TorchFunctionMode():
    ...     function_mode_active()
    True
    >>> function_mode_active()
    False
    """
    return _mode_enabled()


_mode_enabled: Callable[[], bool] = getattr(
    torch._C, "_is_torch_function_mode_enabled", lambda: False
)


def sole_function_mode() -> Any:
    """The ``TorchFunctionMode`` active on this thread when it is the only one, else None (no
    mode, or several: a ``torch.device(...)`` block inside ``detect()``, say).

    Private: ``torch._C._len_torch_function_stack`` and ``_get_function_stack_at``, torch 2.0 -
    2.14; None without them.

    >>> from torch.overrides import TorchFunctionMode
    >>> with TorchFunctionMode() as mode:
    ...     sole_function_mode() is mode
    True
    >>> sole_function_mode() is None
    True
    """
    if _stack_len is None or _stack_len() != 1:
        return None
    return _stack_at(0)


_stack_len: Callable[[], int] | None = getattr(torch._C, "_len_torch_function_stack", None)
_stack_at: Callable[[int], Any] = getattr(torch._C, "_get_function_stack_at", lambda i: None)


def tensor_attribute_accessors() -> frozenset:
    """The C-level getters and setters of tensor attributes (``x.shape``, ``p.grad = None``),
    as ``__torch_function__`` sees them. Private: ``torch._C.TensorBase``, torch 2.0 - 2.13.

    >>> torch.Tensor.grad.__get__ in tensor_attribute_accessors()
    True
    """
    return frozenset(
        accessor
        for d in vars(torch._C.TensorBase).values()
        if type(d).__name__ == "getset_descriptor"
        for accessor in (d.__get__, d.__set__)
    )


def storage_owner(t: torch.Tensor) -> torch.Tensor:
    """The tensor that owns ``t``'s memory: ``t`` itself, or the tensor it is a view of (so a
    view is counted once). Private: ``Tensor._base``, torch 1.x - 2.13.

    >>> x = torch.zeros(4, 3)
    >>> storage_owner(x.view(12)) is x, storage_owner(x) is x
    (True, True)
    """
    return t._base if t._base is not None else t


def is_vmapped(t: torch.Tensor) -> bool:
    """Whether ``t`` carries an axis that ``torch.func.vmap`` maps over. Private:
    ``torch._C._functorch.is_batchedtensor``, torch 2.0 - 2.13.

    >>> is_vmapped(torch.zeros(3))
    False
    """
    return _functorch_says("is_batchedtensor", t)


# ---- what the checkers and dynamo put in their exceptions ----------------------------------------


def checker_violation(err: BaseException | None) -> tuple[tuple, bool]:
    """``(culprits, about_return)`` of a failed ``jaxtyped(typechecker=beartype)``-style check:
    the values beartype blamed (``BeartypeCallHintViolation.culprits``, innermost last) and
    whether the return value failed. jaxtyping wraps beartype's violation in its own error (its
    ``__cause__``, or ``__context__``); tested on jaxtyping 0.2.38 - 0.3.11 with beartype
    0.18.2 - 0.23.1. ``((), False)`` when the shape of the chain is another.

    >>> checker_violation(None)
    ((), False)
    """
    if err is None:
        return (), False
    violation = err.__cause__ or err.__context__ or err
    culprits = tuple(getattr(violation, "culprits", ()) or ())
    # beartype names the class of a return-value failure BeartypeCallHintReturnViolation
    return culprits, "return" in type(violation).__name__.lower()


@dataclass
class CompiledFailure:
    """A shape error inside a ``torch.compile``d function, as dynamo reports it."""

    error: BaseException  # torch's own error, which dynamo's TorchRuntimeError wraps
    filename: str | None  # the user's innermost line that failed (None when dynamo did not say)
    lineno: int | None
    colno: int | None
    end_colno: int | None
    function: str
    traced_args: list  # the fake tensors dynamo ran the failing node on


def compiled_failure(err: BaseException) -> CompiledFailure | None:
    """For dynamo's ``TorchRuntimeError``: the error it wraps, the user's line and the traced
    operands; None for any other error. Reads dynamo's private attributes and frames
    (``innermost_user_frame_summary``, the ``node``/``args`` locals of the frame that ran the
    node); tested on torch 2.4.1 and 2.13.0.

    >>> compiled_failure(ValueError("not from dynamo")) is None
    True
    """
    if not type(err).__module__.startswith("torch._dynamo"):
        return None
    inner = err.__context__ or err.__cause__
    while inner is not None and _is_dynamo_wrapper(inner):
        inner = inner.__context__ or inner.__cause__
    if inner is None:
        return None
    summary = getattr(err, "innermost_user_frame_summary", None)
    traced: list = []
    tb = err.__traceback__
    while tb is not None:
        local = tb.tb_frame.f_locals
        if "node" in local and isinstance(local.get("args"), tuple):
            traced = list(local["args"])
        tb = tb.tb_next
    if summary is None or not summary.lineno:
        return CompiledFailure(inner, None, None, None, None, "", traced)
    columns = (getattr(summary, "colno", None), getattr(summary, "end_colno", None))
    if None in columns:  # torch < 2.14 leaves them off the summary
        columns = _dynamo_columns(err, summary.lineno) or (None, None)
    return CompiledFailure(inner, summary.filename, summary.lineno, *columns, summary.name, traced)


def _is_dynamo_wrapper(err: BaseException) -> bool:
    """Whether ``err`` is one of the errors ``torch.compile`` wraps a torch error in on its way
    out: its own classes, and the ``RuntimeError`` it re-raises the error inside ("Dynamo failed
    to run FX node ..." on torch 2.14, "Failed running call_function ..." on torch 2.5 - 2.6).
    Tested on torch 2.5.1, 2.6.0, 2.7.0 and 2.14.1.

    >>> _is_dynamo_wrapper(RuntimeError("a and b must have same reduction dim"))
    False
    """
    if type(err).__module__.startswith("torch._dynamo"):
        return True
    message = str(err)
    return message.startswith("Dynamo failed") or (
        type(err) is RuntimeError and message.startswith("Failed running ")
    )


def _dynamo_columns(err: BaseException, lineno: int) -> tuple[int, int] | None:
    """The columns (start, end) on line ``lineno`` of the instruction dynamo was tracing when
    ``torch.compile`` raised ``err``, or None. torch 2.14 puts them on the error's frame summary;
    older versions leave them out there, so they are read from the tracer's current instruction.
    Private: ``InstructionTranslator.current_instruction.positions``, tested on torch 2.5.1,
    2.6.0, 2.7.0 and 2.14.1.

    >>> _dynamo_columns(RuntimeError("not from torch.compile"), 1) is None
    True
    """
    found = None
    tb = err.__traceback__
    while tb is not None:
        instruction = getattr(tb.tb_frame.f_locals.get("self"), "current_instruction", None)
        at = getattr(instruction, "positions", None)
        if (at is not None and at.lineno == at.end_lineno == lineno
                and at.col_offset is not None and at.end_col_offset is not None):
            found = (at.col_offset, at.end_col_offset)  # the innermost tracer's wins
        tb = tb.tb_next
    return found


def pytree_parts(hint: Any) -> tuple[Any, str | None] | None:
    """``(leaf type, structure name)`` of a ``jaxtyping.PyTree[leaf, "T"]`` annotation (the
    name None when it has none), else None. Private: ``leaftype`` and ``structure`` are
    undocumented attributes of jaxtyping's PyTree classes, 0.2.38 - 0.3.11.

    >>> pytree_parts(int) is None
    True
    """
    if not isinstance(hint, type) or not hasattr(hint, "leaftype"):
        return None
    import jaxtyping

    if not issubclass(hint, jaxtyping.PyTree):
        return None
    return hint.leaftype, getattr(hint, "structure", None)
