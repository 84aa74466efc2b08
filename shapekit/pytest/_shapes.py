"""The ``shapes`` fixture: named dims that hold across one test, and a sweep over batch sizes.

>>> import numpy as np
>>> shapes = Shapes()
>>> logits = shapes.check(np.zeros((4, 8, 27)), "batch time vocab")
>>> shapes.sizes
{'batch': 4, 'time': 8, 'vocab': 27}
>>> shapes.check(np.zeros((5, 27)), "batch vocab", name="targets")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
shapekit.ShapeError: shapes.check at <doctest ...>:1 expected targets: (4 = batch, 27 = vocab), got (5, 27)
  bound so far: batch=4 time=8 vocab=27 (from logits at <doctest ...>:1)
  fix: give targets size 4 along axis 0 (batch), as bound by logits at <doctest ...>:1
"""  # noqa: E501 (doctest output: the exact message lines)

from __future__ import annotations

import ast
import linecache
import sys
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any

from ..checking import ShapeError, shape_text
from ..checking import dims as _dims
from ..debug import location

__all__ = ["Shapes"]


class Shapes:
    """Sizes of named dims, bound by the first :meth:`check` that names them (per test)."""

    def __init__(self) -> None:
        self._memo = _dims.Memo()

    @property
    def sizes(self) -> dict[str, int | tuple[int, ...]]:
        """Every dim bound so far: ``{"batch": 32, "time": 8}`` (a ``*name`` binds a tuple)."""
        return dict(self._memo.sizes)

    def __getitem__(self, name: str) -> int | tuple[int, ...]:
        return self._memo.sizes[name]

    def check(self, x: Any, dims: str, *, name: str | None = None) -> Any:
        """Check ``x.shape`` against a jaxtyping-style dim string; return ``x`` unchanged.

        Names bind on first use and must match afterwards; sizes (``3``), ``*name``, ``...``,
        ``_`` and expressions of bound names (``2*channels``) work as in jaxtyping annotations.
        ``name`` labels ``x`` in messages (default: the expression passed, read from the call).

        >>> import numpy as np
        >>> shapes = Shapes()
        >>> shapes.check(np.zeros((32, 8, 3)), "batch time channels").shape
        (32, 8, 3)
        >>> shapes["batch"]
        32
        """
        caller = sys._getframe(1)
        where = location(caller.f_code.co_filename, caller.f_lineno)
        name = name or _argument_text(caller) or "tensor"
        parsed = _dims.parse(dims)
        if not hasattr(x, "shape"):
            raise ShapeError(
                expected=f"{name}: an array of shape ({', '.join(d.text for d in parsed)})",
                got=type(x).__name__,
                where=f"shapes.check at {where}",
                fix=f"pass a tensor or an array (torch.as_tensor({name}) converts lists)",
            )
        shape = tuple(int(s) for s in x.shape)
        expected = f"{name}: {_dims.render(parsed, self._memo, {})}"
        # Match against a copy: a failed check binds nothing, so the test can go on (pytest.raises).
        trial = _dims.Memo(dict(self._memo.sizes), dict(self._memo.sources))
        mismatch = _dims.match(parsed, shape, trial, f"{name} at {where}", {})
        if mismatch is None:
            self._memo = trial
            return x
        raise ShapeError(
            expected=expected,
            got=shape_text(shape),
            where=f"shapes.check at {where}",
            bound=_dims.bound_text(self._memo),
            note="" if mismatch.kind == "size" else mismatch.reason,
            fix=_fix(name, mismatch, parsed, self._memo),
        )

    def batch_sizes(
        self,
        model: Callable[..., Any],
        make_input: Callable[[int], Any],
        sizes: Sequence[int] = (1, 2, 7),
    ) -> dict[int, Any]:
        """Run ``model(make_input(b))`` for each batch size ``b``; return ``{b: output}``.

        Each output tensor must keep the batch axis first with size ``b``, the same other axes at
        every size, and finite values. In eval mode the first example must also give the same
        output alone as inside the largest batch, or something mixes examples across the batch.
        The batch-of-one bugs this catches: ``squeeze()`` dropping the batch axis, BatchNorm
        statistics of a single example, a softmax over axis 0.

        >>> import torch
        >>> model = torch.nn.Linear(3, 2).eval()
        >>> outputs = Shapes().batch_sizes(model, lambda b: torch.randn(b, 3))
        >>> {b: tuple(out.shape) for b, out in outputs.items()}
        {1: (1, 2), 2: (2, 2), 7: (7, 2)}
        """
        from ._batch import sweep

        label = getattr(model, "__name__", None) or type(model).__name__
        caller = sys._getframe(1)
        where = location(caller.f_code.co_filename, caller.f_lineno)
        return sweep(model, make_input, sizes, f"batch_sizes({label}) at {where}")


def _argument_text(frame: FrameType) -> str | None:
    """What the caller's line calls the checked value: ``logits`` in ``shapes.check(logits, ...)``
    and in ``logits = shapes.check(model(x), ...)``, else the argument's source."""
    line = linecache.getline(frame.f_code.co_filename, frame.f_lineno).strip()
    try:
        tree = ast.parse(line)
    except SyntaxError:  # one line of a statement that spans several
        return None
    call = next((node for node in ast.walk(tree) if isinstance(node, ast.Call)
                 and isinstance(node.func, ast.Attribute) and node.func.attr == "check"
                 and node.args), None)
    if call is None:
        return None
    statement = tree.body[0]
    simple = isinstance(call.args[0], (ast.Name, ast.Attribute, ast.Subscript))
    if not simple and isinstance(statement, ast.Assign) and statement.value is call:
        target = statement.targets[0]
        if isinstance(target, ast.Name):
            return target.id
    return ast.get_source_segment(line, call.args[0])


def _fix(name: str, m: _dims.Mismatch, dims: tuple[_dims.Dim, ...], memo: _dims.Memo) -> str:
    if m.kind == "batch-missing":
        return (f"keep the batch axis when picking one example: x[[7]] or x[7:8], not x[7] "
                f"(or add it back with {name}[None])")
    if m.kind == "rank":
        pattern = " ".join(d.text for d in dims)
        return f"give {name} {len(dims)} axes ({pattern}), or fix the pattern"
    source = memo.sources.get(m.name)
    if isinstance(memo.sizes.get(m.name), tuple):
        return f"give {name} the axes {memo.sizes[m.name]} for *{m.name}, as bound by {source}"
    if source is None:
        return f"give {name} size {m.expected} along axis {m.axis}"
    return f"give {name} size {m.expected} along axis {m.axis} ({m.name}), as bound by {source}"
