"""``explain()``: torch's shape errors inside a block re-raised as :class:`ShapeError` that name the
op, each operand's shape and dtype, the user's own file:line and a fix.

>>> import torch
>>> h, W2 = torch.randn(32, 200), torch.randn(27, 200)
>>> with explain():  # shapekit.explain()  # doctest: +ELLIPSIS
...     logits = h @ W2
Traceback (most recent call last):
...
shapekit.ShapeError: <doctest ...>:2 h @ W2 expected h's last axis == W2's first axis, got h: (32, 200) float32, W2: (27, 200) float32: 200 != 27; matmul contracts ...
  fix: W2 looks stored as (out, in), torch's nn.Linear layout: use h @ W2.T, or build W2 as (200, 27)

The ShapeError is chained from torch's error (``raise ShapeError(...) from err``), so the original
traceback is still shown above it. Errors that are not shape errors pass through untouched, and so
do shapekit's own ShapeErrors.

Design: catch at ``__exit__``, not per op. A ``torch.overrides.TorchFunctionMode`` would see each
op and its operands at the moment of failure, but it costs a Python call on *every* torch op
(tensor attribute reads like ``x.shape`` included): around a training step of the lecture's 76K
model a bare pass-through mode measured 1.1x to 1.4x the plain step, 1.3x typically
(``benchmarks/bench_debug.py``, medians of interleaved rounds), over the 1.2x budget before doing
any work; catching at ``__exit__`` measured 0.9x to 1.0x, i.e. free. So ``explain()`` adds
nothing while the block runs; when torch raises, :func:`shapekit.debug._operands.locate` recovers the
op and operands from the traceback (the failing expression from the user frame's column
positions, its operands from the frame's variables, a module's ``forward`` frame, a torch
function's arguments) and torch's message supplies the sizes.
``detect()`` does run a function mode (its detectors need every op), and there the failing call is
recorded exactly and used instead.
"""  # noqa: E501 (doctest output: the exact message lines)

from __future__ import annotations

import warnings
from contextlib import ContextDecorator

from ..checking import ShapeError, shape_error_like
from ._operands import from_compiled, locate
from ._torch_errors import diagnose, recognised

__all__ = ["explain", "explain_error"]

# The exception types torch raises for shape problems (ValueError: losses and BatchNorm;
# IndexError: indexing and dims).
_TORCH_ERRORS = (RuntimeError, ValueError, IndexError)


class explain(ContextDecorator):
    """Re-raise torch's shape errors inside the block as :class:`ShapeError`, chained from the
    original. A context manager, and a decorator:

    >>> import torch
    >>> @explain()
    ... def step(x):
    ...     return torch.cat([x, x[1:]], dim=1)  # (4, 3) and (3, 3)
    >>> step(torch.ones(4, 3))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    shapekit.ShapeError: <doctest ...>:3 torch.cat([x, x[1:]], dim=1) expected every tensor the same shape except along dim=1, got x: (4, 3) float32, x[1:]: (3, 3) float32
      fix: they differ only along axis 0: concatenate along it with dim=0, or match axis 0
    """  # noqa: E501 (doctest output: the exact message lines)

    def __enter__(self) -> explain:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is None:
            return False
        error = explain_error(exc)
        if error is None:
            return False
        raise error from exc


def explain_error(err: BaseException) -> ShapeError | None:
    """The ShapeError explaining ``err``, or None when ``err`` is not a shape error torch raised.

    An error inside a ``torch.compile``d function arrives wrapped in dynamo's
    ``TorchRuntimeError``; the torch error inside it is explained, at the user's line in the
    compiled function, with the operands' shapes dynamo traced."""
    if isinstance(err, ShapeError) or not isinstance(err, _TORCH_ERRORS):
        return None
    compiled = from_compiled(err)
    original = err if compiled is None else compiled[0]
    message = str(original)
    if not recognised(message):
        return None
    try:
        site = locate(err) if compiled is None else compiled[1]
        parts = diagnose(message, site)
    except Exception as bug:  # never hide the user's error behind one of shapekit's
        warnings.warn(f"shapekit could not explain {type(err).__name__}: {bug!r} (please report "
                      "it); the original error follows", RuntimeWarning, stacklevel=3)
        return None
    if parts is None:
        return None
    return shape_error_like(original)(
        expected=parts.expected, got=parts.got, fix=parts.fix, note=parts.note, where=site.label
    )
