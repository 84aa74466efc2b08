"""Every use of a torch API that is private or newer than the oldest torch shapekit supports.

shapekit's own code asks the questions below; only this module knows how each torch answers
them. Tested on torch 2.4.1 (the oldest supported, see ``.ci/compat``) and 2.13.0. Each function
falls back to a safe answer when the API it uses is missing.

>>> import torch
>>> values_visible(torch.arange(3)), values_visible(torch.empty(3, device="meta"))
(True, False)
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import torch

F = TypeVar("F", bound=Callable[..., Any])

__all__ = [
    "autocast_dtype",
    "index_guard",
    "is_compiling",
    "run_outside_graph",
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


def _is_functorch_wrapped(t: torch.Tensor) -> bool:
    """Inside ``torch.func.vmap`` / ``grad``: a tensor whose values are not a plain tensor's."""
    functorch = getattr(torch._C, "_functorch", None)  # private; torch 2.0 - 2.13
    if functorch is None:  # pragma: no cover
        return False
    checks = ("is_batchedtensor", "is_gradtrackingtensor", "is_functionaltensor")
    return any(getattr(functorch, name, lambda _: False)(t) for name in checks)


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


@torch.library.custom_op("shapekit::index_guard", mutates_args=())
def index_guard(idx: torch.Tensor, size: int, negatives_ok: bool) -> torch.Tensor:
    """``idx`` (a copy) if every index is in ``[0, size)`` (``[-size, size)`` with
    ``negatives_ok``), else the Embedding's :class:`ShapeError`. An operator of its own so that
    ``torch.compile`` keeps it in the graph (``fullgraph=True`` works) and runs it on the real
    indices at every call, where Python code would graph-break or run only while tracing.

    >>> index_guard(torch.tensor([0, 26]), 27, False)
    tensor([ 0, 26])
    """
    if idx.numel():
        lo, hi = torch.aminmax(idx)
        if hi >= size or lo < (-size if negatives_ok else 0):
            from .nn._embedding import out_of_range

            raise out_of_range(idx, size)
    return idx.clone()  # an operator's output may not alias its input


@index_guard.register_fake
def _(idx: torch.Tensor, size: int, negatives_ok: bool) -> torch.Tensor:
    return torch.empty_like(idx)  # while tracing: the values are not known yet
