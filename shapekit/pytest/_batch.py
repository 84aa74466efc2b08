"""Run a model over several batch sizes, 1 included: the batch axis must follow the input's.

Batch size 1 is where shape bugs hide: ``x.squeeze()`` drops the batch axis along with the axis
meant, and BatchNorm statistics of one example are undefined. Comparing one example alone with the
same example inside a batch finds code that mixes examples (a softmax over axis 0).

>>> import torch
>>> def score(x):  # one score per example: (B, 3) -> (B,)
...     return (x @ torch.ones(3, 1)).squeeze()
>>> sweep(score, lambda b: torch.randn(b, 3), (2, 1), "here")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
shapekit.ShapeError: here expected output: (1, ...) with the batch axis first as in the input (1, 3), got (): the batch axis is lost at batch size 1
  fix: a squeeze() with no dim drops the batch axis of a batch of one; ...
"""  # noqa: E501 (doctest output: the exact message lines)

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from ..checking import ShapeError, shape_text

__all__ = ["sweep"]


def sweep(
    model: Callable[..., Any], make_input: Callable[[int], Any], sizes: Sequence[int], where: str
) -> dict[int, Any]:
    """``{b: model(make_input(b))}`` for each ``b`` in ``sizes``, each output checked."""
    if not sizes or any(not isinstance(b, int) or b < 1 for b in sizes):
        raise ValueError(f"batch_sizes(sizes={sizes!r}): expected positive ints, e.g. (1, 2, 7)")
    outputs: dict[int, Any] = {}
    tails: dict[str, tuple[int, ...]] = {}
    for b in sizes:
        args = _as_args(make_input(b))
        first = next((a for a in args if isinstance(a, torch.Tensor)), None)
        if first is None or first.ndim == 0 or first.shape[0] != b:
            got = "no tensor" if first is None else shape_text(first.shape)
            raise ShapeError(
                expected=f"make_input({b}) to return a batch of {b} on axis 0", got=got,
                where=where, fix="build the input from the size given: lambda b: torch.randn(b, 3)")
        try:
            with torch.no_grad():
                out = model(*args)
        except Exception as err:
            err.add_note(f"shapekit: raised at batch size {b} ({where}), "
                         f"input {shape_text(first.shape)}")
            raise
        for label, t in _tensors(out, "output"):
            _check_output(label, t, b, first, tails, where)
        outputs[b] = out
    if not getattr(model, "training", False):
        _check_independent(model, make_input(max(sizes)), where)
    return outputs


def _as_args(inputs: Any) -> tuple:
    return inputs if isinstance(inputs, tuple) else (inputs,)


def _tensors(out: Any, label: str) -> list[tuple[str, torch.Tensor]]:
    """Every tensor in a (nested) tuple, list or dict output, with its path: ``output[0]``."""
    if isinstance(out, torch.Tensor):
        return [(label, out)]
    if isinstance(out, (tuple, list)):
        return [pair for i, o in enumerate(out) for pair in _tensors(o, f"{label}[{i}]")]
    if isinstance(out, dict):
        return [pair for k, o in out.items() for pair in _tensors(o, f"{label}[{k!r}]")]
    return []


def _check_output(label: str, t: torch.Tensor, b: int, first: torch.Tensor,
                  tails: dict[str, tuple[int, ...]], where: str) -> None:
    tail = tuple(t.shape[1:])
    if t.ndim == 0 or t.shape[0] != b:
        if b == 1:
            fix = ("a squeeze() with no dim drops the batch axis of a batch of one; name the axis "
                   "to drop (x.squeeze(-1)), or flatten with x.flatten(1)")
        else:
            fix = ("keep the batch axis first: reshape with x.view(B, -1) rather than x.view(-1), "
                   "and reduce over the other axes only")
        raise ShapeError(
            expected=f"{label}: ({b}, ...) with the batch axis first as in the input "
            f"{shape_text(first.shape)}", got=shape_text(t.shape), where=where,
            note=f"the batch axis is lost at batch size {b}", fix=fix)
    if tails.setdefault(label, tail) != tail:
        raise ShapeError(
            expected=f"{label}: (batch, {', '.join(map(str, tails[label]))}) at every batch size",
            got=f"{shape_text(t.shape)} at batch size {b}", where=where,
            fix="the axes after the batch must not depend on the batch size; look for a reshape "
            "that folds the batch into another axis")
    if t.is_floating_point() and not torch.isfinite(t).all():
        fix = ("statistics of one example are undefined (BatchNorm in training mode, x.var() "
               "over the batch): call model.eval() before single examples, or batch 2 or more"
               if b == 1 else "find the first layer that produces NaN or inf with shapekit.trace")
        raise ShapeError(expected=f"{label}: finite values", got=f"NaN or inf at batch size {b}",
                         where=where, fix=fix)


def _check_independent(model: Callable[..., Any], inputs: Any, where: str) -> None:
    """In eval mode, example 0 alone must give what it gives inside the batch."""
    args = _as_args(inputs)
    alone = tuple(a[:1] if isinstance(a, torch.Tensor) else a for a in args)
    with torch.no_grad():
        batched, single = _tensors(model(*args), "output"), _tensors(model(*alone), "output")
    b = next(a for a in args if isinstance(a, torch.Tensor)).shape[0]
    for (label, t), (_, s) in zip(batched, single, strict=True):
        if t.is_floating_point() and not torch.allclose(t[:1], s, rtol=1e-4, atol=1e-5):
            diff = (t[:1] - s).abs().max().item()
            raise ShapeError(
                expected=f"{label}[0] of a batch of {b} to equal the output for example 0 alone "
                "(model in eval mode)", got=f"a difference of {diff:.3g}", where=where,
                fix="something mixes examples along the batch axis: a softmax or normalisation "
                "over dim 0, or a view/reshape that moves the batch axis; find it with "
                "shapekit.detect() or shapekit.trace(model, x)")
