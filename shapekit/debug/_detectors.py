"""The per-op detectors ``detect()`` runs: each looks at one torch call (function, arguments,
result) and reports a silent shape bug through ``state.report(rule, build, ...)``.

``build(names, callee)`` words the finding from the operands' names as the user wrote them
(``logits``, ``Yb``) and the called function's text; it runs only when something is reported.
Every detector is written to stay silent on correct code: when the shapes are ambiguous it says
nothing rather than guess.
"""

from __future__ import annotations

import ast
import functools
import math
from collections.abc import Callable
from types import FrameType
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from .. import _torch_compat as _compat
from ..checking import shape_text
from ._frames import assigned_attribute, expression
from ._operands import MISSING, evaluate
from ._pitfalls import reorder_fix, strip_leading_ones

__all__ = ["CHECKS", "MARKS", "REVERSED", "Reporter"]

Build = Callable[[list[str], str], tuple[str, str, str, str]]  # -> expected, got, note, fix


class Reporter(Protocol):
    """What a detector needs from ``detect()``'s state."""

    def report(self, rule: str, build: Build, *, method: bool, reverse: bool = False) -> None: ...
    reduced: dict  # reductions remembered (empty: no reduction-broadcast check to run)

    def caller(self) -> FrameType | None: ...
    def report_at(self, rule: str, build: Build, frame: FrameType, label: str) -> None: ...
    def report_buffer(self, module: torch.nn.Module, name: str, new: torch.Size,
                      frame: FrameType, label: str) -> None: ...
    def mark_explicit(self, tensor: Tensor) -> None: ...
    def is_explicit(self, tensor: Tensor) -> bool: ...
    def remember_reduction(self, result: Tensor, source: Tensor, dims: tuple[int, ...]) -> None: ...
    def reduction_of(self, result: Tensor, source: Tensor) -> tuple[int, ...] | None: ...


def _dims(dim: Any, ndim: int) -> tuple[int, ...] | None:
    if dim is None or isinstance(dim, bool):
        return None
    if isinstance(dim, int):
        dim = (dim,)
    try:
        return tuple(sorted({int(d) % ndim for d in dim})) if ndim else None
    except (TypeError, ValueError):  # named dims, tensors: not ours to judge
        return None


def _operand(text: str) -> str:
    """``x[:, None] * 2`` -> ``(x[:, None] * 2)``: safe to put a method call after."""
    try:
        node = ast.parse(text, mode="eval").body
    except SyntaxError:
        return f"({text})"
    simple = (ast.Name, ast.Attribute, ast.Subscript, ast.Call, ast.Constant)
    return text if isinstance(node, simple) else f"({text})"


def _without_ones(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(s for s in shape if s != 1)


def _cached(fn: Callable) -> Callable:
    """``fn`` of shapes (and other hashable values), remembered: a training loop asks the same
    question every step. Unhashable arguments (symbolic sizes) are answered uncached."""
    remembered = functools.lru_cache(maxsize=4096)(fn)

    @functools.wraps(fn)
    def call(*args: Any) -> Any:
        try:
            return remembered(*args)
        except TypeError:
            return fn(*args)

    return call


# --- view-transposes -------------------------------------------------------------------------


_ADDS_ONES = object()  # a view that only adds size-1 axes


@_cached
def _view_verdict(a: tuple[int, ...], b: tuple[int, ...]) -> Any:
    """What a view/reshape from shape ``a`` to ``b`` is: ``_ADDS_ONES`` (``x.view(-1, 1)``),
    the fix chain of a reordering (see ``reorder_fix``), or None (an honest merge or split)."""
    if len(b) > len(a) and _without_ones(b) == _without_ones(a):
        return _ADDS_ONES
    if 0 in a:
        return None
    return reorder_fix(tuple(a), tuple(b))


def _view(state: Reporter, func: Any, args: tuple, kwargs: dict, out: Any) -> None:
    x = args[0] if args else kwargs.get("input")
    if not isinstance(x, Tensor) or not isinstance(out, Tensor):
        return
    a, b = x.shape, out.shape
    if a == b or (len(args) == 2 and isinstance(args[1], torch.dtype)):
        return  # x.view(torch.int32): a dtype view
    chain = _view_verdict(a, b)
    if chain is _ADDS_ONES:
        state.mark_explicit(out)  # x.view(-1, 1): a size-1 axis added on purpose
        return
    if chain is None:
        return
    a, b = tuple(a), tuple(b)

    def build(names: list[str], callee: str) -> tuple[str, str, str, str]:
        x_ = _operand(names[0])
        how = (f"{x_}{chain}" if chain else
               f"{x_}.permute(...) to move axes, then view/reshape to merge or split neighbours")
        return (
            "a view/reshape that merges or splits neighbouring axes",
            f"{shape_text(a)} -> {shape_text(b)}",
            "the new sizes are the old axes in another order; view and reshape keep the memory "
            "order, so this scrambles values instead of moving axes",
            f"move axes with transpose/permute: {how}",
        )

    state.report("view-transposes", build, method=func is not torch.reshape)


def _explicit_index(state: Reporter, func: Any, args: tuple, kwargs: dict, out: Any) -> None:
    """``x[:, None]``, ``x.unsqueeze(1)``: an axis of size 1 added on purpose (an outer product);
    a convolution's output: ``(N, C, L)`` by construction."""
    if func is Tensor.__getitem__:
        index = args[1]
        if not (index is None or (type(index) is tuple and any(i is None for i in index))):
            return
    if isinstance(out, Tensor):
        state.mark_explicit(out)


# --- broadcast-n-by-n and reduction-broadcast ------------------------------------------------


def _pair(args: tuple, kwargs: dict) -> tuple[Any, Any]:
    a = args[0] if args else kwargs.get("input")
    b = args[1] if len(args) > 1 else kwargs.get("other", kwargs.get("target"))
    return a, b


def _elementwise(state: Reporter, func: Any, args: tuple, kwargs: dict, out: Any) -> None:
    a, b = args if len(args) == 2 else _pair(args, kwargs)  # x * y, the common form, first
    # x * 2 (a scalar) broadcasts nothing; operands of one rank can only misalign a reduction
    if isinstance(b, Tensor) and isinstance(a, Tensor) and (state.reduced or a.ndim != b.ndim):
        _broadcast(state, func, a, b)


def _broadcast(state: Reporter, func: Any, a: Tensor, b: Tensor) -> None:
    if state.reduced:
        _misaligned_reduction(state, a, b, func in REVERSED)
    if a.ndim != b.ndim:
        _n_by_n(state, a, b, func in REVERSED, loss=False)


_grad_enabled = torch.is_grad_enabled


def _arithmetic(state: Reporter, func: Any, args: tuple, kwargs: dict, out: Any) -> None:
    """``+ - * /``: the elementwise rules, and the two that only a broadcast result can break
    (a running statistic stored back, a padding mask), in one call: these ops are the most
    frequent with a rule, so each rule's cheap precondition is tested here first."""
    a, b = args if len(args) == 2 else _pair(args, kwargs)
    if isinstance(b, Tensor) and isinstance(a, Tensor) and (state.reduced or a.ndim != b.ndim):
        _broadcast(state, func, a, b)
    if type(out) is Tensor:
        if out.ndim == 4:
            _mask_batch(state, func, args, kwargs, out)
        if not _grad_enabled():
            _running_stat(state, func, args, kwargs, out)


def _loss(state: Reporter, func: Any, args: tuple, kwargs: dict, out: Any) -> None:
    a, b = _pair(args, kwargs)
    if isinstance(a, Tensor) and isinstance(b, Tensor):
        _n_by_n(state, a, b, False, loss=True)


def _n_by_n(state: Reporter, a: Tensor, b: Tensor, reverse: bool, loss: bool) -> None:
    if a.ndim == b.ndim or not a.ndim or not b.ndim:
        return
    col, vec = (a, b) if a.ndim > b.ndim else (b, a)
    n = vec.shape[-1]
    if n < 2 or col.shape[-1] != 1 or col.shape[-2] != n:
        return
    if state.is_explicit(col) or state.is_explicit(vec):
        return
    result = torch.broadcast_shapes(a.shape, b.shape)
    col_first = col is a

    def build(names: list[str], callee: str) -> tuple[str, str, str, str]:
        an, bn = names[0], names[1]
        cn, vn = (_operand(an), _operand(bn)) if col_first else (_operand(bn), _operand(an))
        where = " inside the loss" if loss else ""
        return (
            f"{an} and {bn} of the same shape",
            f"{an}: {shape_text(a.shape)} and {bn}: {shape_text(b.shape)}, broadcast to "
            f"{shape_text(result)}{where}",
            f"a column of {n} against a row of {n} pairs every element with every other: {n}x{n} "
            f"values where {n} were meant",
            f"make the shapes equal: {cn}.squeeze(-1) or {vn}.unsqueeze(-1); if you want all "
            f"pairs, say so with {vn}[None, :]",
        )

    state.report("broadcast-n-by-n", build, method=False, reverse=reverse)


def _misaligned_reduction(state: Reporter, a: Tensor, b: Tensor, reverse: bool) -> None:
    for reduced, source, first in ((a, b, True), (b, a, False)):
        dims = state.reduction_of(reduced, source)
        if dims is None:
            continue
        kept = [i for i in range(source.ndim) if i not in dims]
        aligned = list(range(source.ndim - reduced.ndim, source.ndim))
        r_shape, s_shape = reduced.shape, source.shape

        def build(names: list[str], callee: str, first=first, kept=kept, aligned=aligned,
                  dims=dims, r_shape=r_shape, s_shape=s_shape) -> tuple[str, str, str, str]:
            rn, sn = (names[0], names[1]) if first else (names[1], names[0])
            keep = (f"{rn[:-1]}, keepdim=True)" if rn.endswith(")") else
                    f"{rn} computed with keepdim=True")
            axes = lambda xs: ", ".join(str(x) for x in xs)  # noqa: E731
            s = "es" if len(kept) > 1 else "is"
            return (
                f"{rn} {shape_text(r_shape)} lined up with ax{s} {axes(kept)} of {sn} "
                f"{shape_text(s_shape)}, the ax{s} it kept",
                f"it lined up with ax{s} {axes(aligned)}",
                f"reducing dim {axes(dims)} without keepdim drops that axis, and broadcasting "
                "aligns what is left with the last axes",
                f"keep the reduced axis: {keep}",
            )

        state.report("reduction-broadcast", build, method=False, reverse=reverse)
        return


_KEEPDIM_AT = {Tensor.var: 3, Tensor.std: 3, torch.var: 3, torch.std: 3}


def _reduction(state: Reporter, func: Any, args: tuple, kwargs: dict, out: Any) -> None:
    x = args[0] if args else kwargs.get("input")
    if not isinstance(x, Tensor):
        return
    dim = kwargs.get("dim", kwargs.get("axis", args[1] if len(args) > 1 else None))
    if isinstance(dim, Tensor):  # torch.max(a, b): elementwise, not a reduction
        return
    at = _KEEPDIM_AT.get(func, 2)
    keepdim = kwargs.get("keepdim", kwargs.get("keepdims", args[at] if len(args) > at else False))
    result = out[0] if isinstance(out, tuple) else out
    if not isinstance(result, Tensor) or not result.ndim:
        return
    if keepdim is True:
        state.mark_explicit(result)  # (N, 1) kept on purpose, to broadcast
        return
    dims = _dims(dim, x.ndim)
    if dims is None or dims == tuple(range(len(dims))):
        return  # leading axes reduced: what is left lines up with the source's last axes
    state.remember_reduction(result, x, dims)


# --- squeeze-batch ---------------------------------------------------------------------------


def _squeeze(state: Reporter, func: Any, args: tuple, kwargs: dict, out: Any) -> None:
    if len(args) != 1 or kwargs:  # squeeze(dim) says which axis goes
        return
    x = args[0]
    if not isinstance(x, Tensor) or x.ndim < 2 or x.shape[0] != 1:
        return
    others = [i for i in range(1, x.ndim) if x.shape[i] == 1]
    if not others:  # only the leading axis went: a single example unwrapped on purpose
        return
    a, b = x.shape, out.shape

    def build(names: list[str], callee: str) -> tuple[str, str, str, str]:
        x_ = _operand(names[0])
        keep = (f"{x_}.squeeze({-1 if others[0] == x.ndim - 1 else others[0]})"
                if len(others) == 1 else f"{x_}.squeeze(({', '.join(map(str, others))}))")
        return (
            "only the size-1 axes you mean to drop",
            f"{shape_text(a)} -> {shape_text(b)}",
            "squeeze() with no dim also removed axis 0, the batch axis (a batch of one)",
            f"name the axis: {keep}",
        )

    state.report("squeeze-batch", build, method=func is not torch.squeeze)


# --- softmax-dim0 ----------------------------------------------------------------------------

_IMPLICIT_DIM = {F.softmax, F.log_softmax}  # no dim: torch picks 0 for 3-D input


def _softmax(state: Reporter, func: Any, args: tuple, kwargs: dict, out: Any) -> None:
    x = args[0] if args else kwargs.get("input")
    dim = kwargs.get("dim", args[1] if len(args) > 1 else None)
    if not isinstance(x, Tensor) or x.ndim < 2:
        return
    if dim is None:
        if func not in _IMPLICIT_DIM or x.ndim != 3:
            return
    elif not isinstance(dim, int) or dim not in (0, -x.ndim):
        return
    shape = x.shape

    def build(names: list[str], callee: str) -> tuple[str, str, str, str]:
        which = "no dim (torch picks 0 for 3-D input)" if dim is None else f"dim={dim}"
        why = (f"each column then sums to 1 across the {shape[0]} rows of the batch, not each row "
               f"across its {shape[-1]} classes")
        if shape[0] == 1:
            why = "with one row (a batch of one), every probability comes out 1.0"
        return (
            "a softmax over the class axis (the last)",
            f"{which} on {names[0]}: {shape_text(shape)}",
            why,
            "pass dim=-1 (the classes)",
        )

    state.report("softmax-dim0", build, method=func in (Tensor.softmax, Tensor.log_softmax))


# --- cross-entropy-ambiguous -----------------------------------------------------------------


def _cross_entropy(state: Reporter, func: Any, args: tuple, kwargs: dict, out: Any) -> None:
    x, y = _pair(args, kwargs)
    if not (isinstance(x, Tensor) and isinstance(y, Tensor)) or y.is_floating_point():
        return
    shape, target = x.shape, y.shape
    if x.ndim == 3 and y.ndim == 2 and shape[1] == shape[2] > 1 and target == (shape[0], shape[2]):
        if x.stride(-1) != 1:  # a transposed view: the user moved the classes to axis 1
            return
        c = shape[2]

        def build(names: list[str], callee: str) -> tuple[str, str, str, str]:
            xn, yn = names[0], names[1]
            return (
                "logits (N, C, T) with targets (N, T): torch reads the classes from axis 1",
                f"{xn}: {shape_text(shape)} and {yn}: {shape_text(target)}",
                f"axes 1 and 2 both have {c}, so nothing fails if the classes are on the last axis",
                f"if {xn} is (B, T, C), flatten both: {callee or 'F.cross_entropy'}("
                f"{xn}.reshape(-1, {c}), {yn}.reshape(-1)), or pass {xn}.transpose(1, 2)",
            )

        state.report("cross-entropy-ambiguous", build, method=False)
    elif x.ndim == 2 and y.ndim == 1 and shape[0] == shape[1] == target[0] > 1:
        if not (x.stride(0) == 1 and x.stride(1) != 1):  # only a transposed view is suspicious
            return

        def build(names: list[str], callee: str) -> tuple[str, str, str, str]:
            xn = names[0]
            return (
                "logits (N, C) with targets (N,)",
                f"{xn}: {shape_text(shape)}, a transposed view, and {names[1]}: "
                f"{shape_text(target)}",
                f"transposed logits are (C, N); with C == N == {shape[0]} nothing fails",
                f"pass the logits as (N, C): {xn}.T if the transpose was a mistake",
            )

        state.report("cross-entropy-ambiguous", build, method=False)


# --- var-single-element ----------------------------------------------------------------------


def _variance(state: Reporter, func: Any, args: tuple, kwargs: dict, out: Any) -> None:
    x = args[0] if args else kwargs.get("input")
    if not isinstance(x, Tensor) or not x.numel():
        return
    shape = x.shape
    if shape and min(shape) > 1 and "correction" not in kwargs:
        return  # every variance sees 2 values or more, and the correction is 0 or 1
    dim = kwargs.get("dim", args[1] if len(args) > 1 else None)
    correction = kwargs.get("correction")
    if correction is None:
        unbiased = kwargs.get("unbiased")
        for value in args[1:3]:
            if isinstance(value, bool):
                unbiased = value
        correction = 0 if unbiased is False else 1
    dims = _dims(dim, x.ndim)
    count = x.numel() if dims is None else math.prod(x.shape[d] for d in dims)
    if count > correction:
        return

    def build(names: list[str], callee: str) -> tuple[str, str, str, str]:
        where = "all of" if dims is None else f"dim {', '.join(map(str, dims))} of"
        return (
            "at least 2 values per variance (Bessel's correction divides by n - 1)",
            f"{count} value along {where} {names[0]}: {shape_text(shape)}",
            "the result is NaN",
            "feed more than one example (in BatchNorm: call model.eval() before a single "
            "example, so the running statistics are used), or pass correction=0",
        )

    state.report("var-single-element", build, method=func in (Tensor.var, Tensor.std))


# --- running-stat-growth ---------------------------------------------------------------------


def _safe(node: ast.expr, frame: FrameType) -> Any:
    try:
        with _compat.no_torch_function():
            return evaluate(node, frame.f_locals, frame.f_globals)
    except Exception:
        return MISSING


def _running_stat(state: Reporter, func: Any, args: tuple, kwargs: dict, out: Any) -> None:
    """``self.running_mean = (1 - m) * self.running_mean + m * xmean`` under ``no_grad`` whose
    result broadcasts to a bigger shape than the attribute had: in any object, Module or not."""
    if torch.is_grad_enabled() or not isinstance(out, Tensor) or not out.ndim:
        return
    size = out.shape
    for a in args:
        if isinstance(a, Tensor) and a.shape != size and a.numel() < out.numel():
            break
    else:
        return  # no operand was broadcast up: nothing grew
    grown = strip_leading_ones(tuple(size))
    frame = state.caller()
    update = assigned_attribute(frame) if frame is not None else None
    if update is None:
        return
    target, value = update
    owner = _safe(target.value, frame)
    if owner is MISSING:
        return
    if isinstance(owner, torch.nn.Module) and any(
        target.attr in owner.__dict__.get(store, {}) for store in ("_parameters", "_buffers")
    ):
        state.report_buffer(owner, target.attr, out.shape, frame, ast.unparse(target))
        return  # a registered buffer: its own rule, buffer-shape-change
    old = getattr(owner, "__dict__", {}).get(target.attr)
    if not isinstance(old, Tensor) or old.numel() <= 1 or old.numel() >= out.numel():
        return  # an accumulator may start as one value; a shrink is not this bug
    kept = strip_leading_ones(tuple(old.shape))
    if kept == grown or grown[len(grown) - len(kept):] != kept:
        return  # only a statistic whose own axes stay last, with new axes in front, is this bug
    name = ast.unparse(target)
    cause = _grown_by(value, name, grown, frame)
    before, after, lead = old.shape, out.shape, out.ndim - len(kept)

    def build(names: list[str], callee: str) -> tuple[str, str, str, str]:
        axes = "0" if lead == 1 else f"({', '.join(str(i) for i in range(lead))})"
        example = {2: "(B, C)", 3: "(B, T, C)"}.get(out.ndim, f"{out.ndim}-D")
        via = f" ({cause} is {shape_text(after)})" if cause else ""
        stat = next((s for s in ("var", "std") if s in target.attr.lower()), "mean")
        return (
            f"{name}'s shape {shape_text(before)} kept through its update under no_grad",
            f"{shape_text(after)}{via}",
            f"{cause or 'the new statistic'} kept axes that {name} does not have, so the update "
            "broadcast it up; nothing fails, and evaluation later normalises with per-position "
            "statistics",
            f"compute the statistic over every axis but the features, x.{stat}({axes}, "
            f"keepdim=True) for {example} input, so the update keeps {shape_text(before)}; "
            f"updating in place ({name}.mul_(1 - m).add_(m * new)) makes a wrong shape raise",
        )

    state.report_at("running-stat-growth", build, frame, f"{name} = ...")


def _grown_by(value: ast.expr, target: str, grown: tuple[int, ...], frame: FrameType) -> str:
    """The variable on the right-hand side that has the grown shape (``xmean``), or ``""``."""
    for node in ast.walk(value):
        if isinstance(node, (ast.Name, ast.Attribute)) and ast.unparse(node) != target:
            v = _safe(node, frame)
            if isinstance(v, Tensor) and strip_leading_ones(tuple(v.shape)) == grown:
                return ast.unparse(node)
    return ""


# --- linear-weight-matmul --------------------------------------------------------------------

_MATMULS = (Tensor.matmul, torch.matmul, Tensor.mm, torch.mm, Tensor.__matmul__)


def _right_node(frame: FrameType) -> ast.expr | None:
    """The right operand of the matmul ``frame`` is running, as written."""
    _, node = expression(frame)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.MatMult):
        return node.right
    if isinstance(node, ast.Call):
        args = list(node.args)
        if isinstance(node.func, ast.Attribute) and len(args) == 1:
            return args[0]  # x.matmul(W)
        if len(args) == 2:
            return args[1]  # torch.matmul(x, W)
    return None


def _linear_weight(state: Reporter, func: Any, args: tuple, kwargs: dict, out: Any) -> None:
    """``x @ linear.weight``: an ``nn.Linear`` stores ``(out, in)``; square, nothing fails."""
    w = args[1] if len(args) > 1 else kwargs.get("other", kwargs.get("mat2"))
    if not isinstance(w, Tensor) or w.ndim != 2 or w.shape[0] != w.shape[1] or not isinstance(
        w, torch.nn.Parameter  # last: isinstance(x, Parameter) is a Python-level check
    ):
        return
    frame = state.caller()
    node = _right_node(frame) if frame is not None else None
    if not isinstance(node, ast.Attribute) or node.attr != "weight":
        return
    owner = _safe(node.value, frame)
    if not isinstance(owner, torch.nn.Linear) or owner.weight is not w:
        return
    layer, n = ast.unparse(node.value), w.shape[0]

    def build(names: list[str], callee: str) -> tuple[str, str, str, str]:
        x, wn = _operand(names[0]), names[1]
        return (
            f"the right operand of {x} @ {wn} as (in_features, out_features)",
            f"{wn}: {shape_text(w.shape)}, an nn.Linear weight, stored (out_features, "
            "in_features)",
            f"it is square ({n} = {n}), so nothing fails, but this multiplies by the transpose "
            "of the layer's matrix",
            f"call the layer, {layer}({names[0]}) (it adds the bias too), or use {x} @ {wn}.T",
        )

    state.report("linear-weight-matmul", build, method=func in (Tensor.matmul, Tensor.mm))


# --- mask-batch-query ------------------------------------------------------------------------


def _mask_like(m: Tensor) -> bool:
    """Bool, or two values one of which is 0 (a 0/1 or additive 0/-inf mask), rows not all alike:
    a mask whose rows are equal gives the same result however it lines up."""
    if m.dtype != torch.bool and (m.is_complex() or torch.unique(m).numel() > 2 or
                                  not bool((m == 0).any())):
        return False
    return not bool((m == m[:1]).all())


def _positional(m: Tensor) -> bool:
    """A (T, T) mask by position: causal (triangular), banded (constant diagonals) or symmetric
    (packed sequences: block-diagonal). A padding mask with rows that differ is none of these."""
    return (torch.equal(m, m.tril()) or torch.equal(m, m.triu())
            or torch.equal(m[1:, 1:], m[:-1, :-1]) or torch.equal(m, m.T))


def _mask_batch(state: Reporter, func: Any, args: tuple, kwargs: dict, out: Any) -> None:
    """A ``(B, T)`` padding mask against ``(B, nh, T, T)`` scores lines up with (query, key): its
    batch axis meets the queries. Only B == T runs; B != T raises and is explained."""
    if not isinstance(out, Tensor) or out.ndim != 4:
        return
    b, _, t, s = out.shape
    if b != t or b < 2:
        return
    operands = [*args, *kwargs.values()]
    if not any(isinstance(a, Tensor) and a.shape == out.shape for a in operands):
        return
    i = next((i for i, m in enumerate(operands) if isinstance(m, Tensor) and m.ndim == 2
              and tuple(m.shape) == (b, s) and not state.is_explicit(m) and _mask_like(m)
              and not _positional(m)), None)
    if i is None:
        return
    shape, scores = operands[i].shape, out.shape

    def build(names: list[str], callee: str) -> tuple[str, str, str, str]:
        mn = names[i] if i < len(names) else "mask"
        return (
            f"a padding mask (B, T) broadcast as (B, 1, 1, T) against scores "
            f"{shape_text(scores)}",
            f"{mn}: {shape_text(shape)}, which lines up with the last two axes (query, key)",
            f"B == T == {b}, so nothing fails, but sequence b's mask is applied to query b of "
            "every sequence",
            f"add the head and query axes: {_operand(mn)}[:, None, None, :]",
        )

    state.report("mask-batch-query", build,
                 method=func in (Tensor.masked_fill, Tensor.masked_fill_))


def _add(table: dict, funcs: list[Any], check: Callable) -> None:
    for f in funcs:
        table.setdefault(f, []).append(check)


def _table() -> dict[Any, tuple[Callable, ...]]:
    table: dict[Any, list[Callable]] = {}
    names = ["add", "sub", "mul", "div", "true_divide", "eq", "ne", "lt", "le", "gt", "ge",
             "maximum", "minimum", "pow", "subtract", "multiply", "divide"]
    elementwise = [getattr(Tensor, n) for n in names] + [getattr(torch, n) for n in names]
    elementwise += [Tensor.__eq__, Tensor.__ne__, Tensor.__lt__, Tensor.__le__, Tensor.__gt__,
                    Tensor.__ge__, Tensor.__rsub__, Tensor.__rdiv__, Tensor.__rpow__]
    elementwise += [Tensor.add_, Tensor.sub_, Tensor.mul_, Tensor.div_]
    arithmetic = [Tensor.add, Tensor.sub, Tensor.mul, Tensor.div, Tensor.__rsub__,
                  Tensor.__rdiv__, torch.add, torch.sub, torch.mul, torch.div]
    _add(table, [f for f in elementwise if f not in arithmetic], _elementwise)
    _add(table, arithmetic, _arithmetic)
    _add(table, [torch.lerp, Tensor.lerp], _running_stat)
    _add(table, _MATMULS, _linear_weight)
    _add(table, [Tensor.masked_fill, Tensor.masked_fill_, torch.masked_fill, torch.where],
         _mask_batch)
    _add(table, [F.mse_loss, F.l1_loss, F.smooth_l1_loss, F.huber_loss], _loss)
    _add(table, [Tensor.view, Tensor.reshape, torch.reshape, Tensor.view_as, Tensor.reshape_as],
         _view)
    _add(table, [Tensor.__getitem__, Tensor.unsqueeze, torch.unsqueeze, torch.conv1d],
         _explicit_index)
    reductions = ["sum", "mean", "amax", "amin", "max", "min", "std", "var", "prod", "logsumexp",
                  "nansum", "nanmean", "median"]
    _add(table, [getattr(m, n) for m in (Tensor, torch) for n in reductions], _reduction)
    _add(table, [Tensor.squeeze, torch.squeeze], _squeeze)
    _add(table, [F.softmax, F.log_softmax, torch.softmax, torch.log_softmax, Tensor.softmax,
                 Tensor.log_softmax], _softmax)
    _add(table, [F.cross_entropy, F.nll_loss], _cross_entropy)
    _add(table, [Tensor.var, Tensor.std, torch.var, torch.std, torch.var_mean, torch.std_mean],
         _variance)
    return {f: tuple(checks) for f, checks in table.items()}


CHECKS = _table()
# Rules that remember something about a call's result (an axis added on purpose, a reduction)
# for later calls: they run whoever made the call; every other rule only reports, at user code.
MARKS = frozenset({_view, _explicit_index, _reduction})
REVERSED = frozenset({Tensor.__rsub__, Tensor.__rdiv__, Tensor.__rpow__})
