"""torch's shape errors, recognised by message and reworded: expected, got, and one fix.

Each rule is a regular expression over torch's message and a function that builds the parts of a
:class:`~shapekit.ShapeError` from the match and the recovered
:class:`~shapekit.debug._operands.Site`.
A message no rule matches is not a shape error, and ``explain()`` lets it through untouched.

>>> from shapekit.debug._operands import Site
>>> parts = diagnose("mat1 and mat2 shapes cannot be multiplied (32x40 and 48x128)", Site())
>>> parts.expected
"mat1's columns == mat2's rows"
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..checking import shape_text
from ._operands import Operand, Site

__all__ = ["Parts", "describe", "diagnose", "recognised"]


@dataclass
class Parts:
    """The parts of a ShapeError: ``expected``, ``got``, ``fix`` and an optional ``note``."""

    expected: str
    got: str
    fix: str
    note: str = ""


def describe(op: Operand) -> str:
    """``h: (32, 200) float32``."""
    t = op.tensor
    if t is None:
        return f"{op.name} = {op.value!r}"[:60]
    return f"{op.name}: {shape_text(t.shape)} {str(t.dtype).removeprefix('torch.')}"


def _got(tensors: list[Operand]) -> str:
    return ", ".join(describe(t) for t in tensors)


def _sizes(text: str) -> tuple[int, ...]:
    return tuple(int(s) for s in re.findall(r"-?\d+", text))


_Rule = Callable[[re.Match, Site], "Parts | None"]
_RULES: list[tuple[re.Pattern, _Rule]] = []


def _rule(pattern: str) -> Callable[[_Rule], _Rule]:
    def register(fn: _Rule) -> _Rule:
        _RULES.append((re.compile(pattern), fn))
        return fn

    return register


def recognised(message: str) -> bool:
    """True when some rule knows ``message`` (checked before the traceback is searched)."""
    return any(pattern.search(message) for pattern, _ in _RULES)


def diagnose(message: str, site: Site) -> Parts | None:
    """The parts for torch's ``message``, or None when it is not a shape error shapekit knows."""
    for pattern, build in _RULES:
        m = pattern.search(message)
        if m:
            parts = build(m, site)
            if parts is not None:
                return parts
    return None


# --- matmul ----------------------------------------------------------------------------------


def _inner(left: torch.Tensor, right: torch.Tensor) -> tuple[int, int, str]:
    """The two sizes matmul contracts, and how the right one is named."""
    if right.ndim == 1:
        return left.shape[-1], right.shape[0], "length"
    return left.shape[-1], right.shape[-2], "first axis" if right.ndim == 2 else "axis -2"


def _linear_fix(site: Site) -> Parts | None:
    module, tensors = site.module, site.tensors
    if module is None or not hasattr(module, "in_features") or not tensors:
        return None
    x = tensors[0]
    k = x.tensor.shape[-1]
    return Parts(
        expected=f"{x.name}: (..., {module.in_features}) (in_features)",
        got=describe(x),
        fix=f"the input has {k} features: build nn.Linear({k}, {module.out_features}), or make "
        f"the layer before output {module.in_features}",
    )


@_rule(r"mat1 and mat2 shapes cannot be multiplied \((\d+)x(\d+) and (\d+)x(\d+)\)")
@_rule(r"a and b must have same reduction dim, but got \[(\d+), (\d+)\] X \[(\d+), (\d+)\]")
@_rule(r"size mismatch, got input \(\d+\), mat \(\d+x(\d+)\), vec \((\d+)\)")
@_rule(r"inconsistent tensor size, expected tensor \[(\d+)\] and src \[(\d+)\]")
def _matmul(m: re.Match, site: Site) -> Parts:
    linear = _linear_fix(site)
    if linear is not None:
        return linear
    tensors = site.tensors
    weight_last = site.op.split("(")[0].endswith("linear")  # F.linear(x, W): W is (out, in)
    if len(tensors) >= 2 and not weight_last:
        left, right = tensors[0], tensors[1]
        L, R = _wrap(left.name), _wrap(right.name)
        a, b = left.tensor, right.tensor
        if a.ndim == b.ndim == 3 and a.shape[0] != b.shape[0]:
            return Parts(
                expected=f"{L} and {R} with the same batch size (axis 0)",
                got=_got([left, right]),
                note=f"bmm multiplies matrix i of {L} with matrix i of {R}: {a.shape[0]} != "
                f"{b.shape[0]}",
                fix=f"take both from the same batch; to multiply every matrix of {L} by one "
                f"matrix, use {L} @ {R}[0]",
            )
        if a.ndim == 1 and b.ndim == 1:
            n = min(a.shape[0], b.shape[0])
            return Parts(
                expected=f"{L} and {R} of equal length (a dot product pairs their elements)",
                got=_got([left, right]),
                fix=f"compare vectors made along the same axis; to pair the first {n} of each: "
                f"torch.dot({L}[:{n}], {R}[:{n}])",
            )
        k1, k2, axis = _inner(a, b)
        if b.ndim == 2 and b.shape[1] == k1:
            fix = (f"{R} looks stored as (out, in), torch's nn.Linear layout: use {L} @ {R}.T, "
                   f"or build {R} as ({k1}, {b.shape[0]})")
        elif b.ndim > 2 and b.shape[-1] == k1:
            fix = (f"to contract the last axes of both, transpose the right one: "
                   f"{L} @ {R}.transpose(-2, -1)")
        elif b.ndim == 1:
            fix = (f"{R} needs {k1} entries, one per column of {L}; or make the layer that "
                   f"produces {L} output {k2} features")
        else:
            out = f", {b.shape[-1]}" if b.ndim >= 2 else ""
            fix = (f"build {R} with {k1} rows ({k1}{out}), or make the layer that produces {L} "
                   f"output {k2} features")
        return Parts(
            expected=f"{L}'s last axis == {R}'s {axis}",
            got=_got([left, right]),
            note=f"{k1} != {k2}; matmul contracts the last axis of the left operand with the "
            f"{axis} of the right one (leading axes ride along)",
            fix=fix,
        )
    groups = m.groups()
    if len(groups) == 4:
        a, b, c, d = groups
        return Parts(
            expected="mat1's columns == mat2's rows",
            got=f"mat1 ({a}x{b}) and mat2 ({c}x{d})",
            note="torch flattens a left operand of more than 2 axes into rows",
            fix=f"make the inner sizes agree ({b} vs {c}): the right operand needs {b} rows, or "
            f"the left one {c} columns",
        )
    k1, k2 = groups
    return Parts(
        expected="the left operand's last axis == the right operand's matching axis",
        got=f"{k1} and {k2}",
        fix=f"make the inner sizes agree ({k1} vs {k2})",
    )


@_rule(r"1D tensors expected, but got (\d+)D and (\d+)D tensors")
def _dot_rank(m: re.Match, site: Site) -> Parts:
    tensors = site.tensors
    expected = "two 1-D tensors (torch.dot multiplies two vectors; it does not broadcast)"
    if len(tensors) < 2:
        return Parts(expected=expected, got=f"{m[1]}-D and {m[2]}-D tensors",
                     fix="for row-wise dot products use (a * b).sum(-1); for a matrix product, "
                     "a @ b")
    (x, y), (a, b) = tensors[:2], (tensors[0].tensor, tensors[1].tensor)
    X, Y = _wrap(x.name), _wrap(y.name)
    if a.shape == b.shape:
        fix = f"one dot product per row: ({X} * {Y}).sum(-1), shape {shape_text(a.shape[:-1])}"
    elif a.ndim == 2 and b.ndim == 1 and a.shape[1] == b.shape[0]:
        fix = f"a matrix times a vector: {X} @ {Y} (or torch.mv({X}, {Y}))"
    elif a.ndim >= 2 and b.ndim >= 2 and a.shape[-1] == b.shape[-2]:
        fix = f"a matrix product: {X} @ {Y}"
    else:
        fix = f"flatten both to vectors of one length: torch.dot({X}.flatten(), {Y}.flatten())"
    return Parts(expected=expected, got=_got([x, y]), fix=fix)


def _wrap(name: str) -> str:
    """``x[:, 0] * 2`` -> ``(x[:, 0] * 2)``: an operand safe to index or call a method on."""
    simple = re.fullmatch(r"[\w.]+(\[[^\[\]]*\]|\([^()]*\))*(\.\w+)*", name)
    return name if simple else f"({name})"


def _plain(name: str) -> bool:
    """A name or attribute chain (``h0``, ``self.h``), not a call or an expression."""
    return re.fullmatch(r"[A-Za-z_][\w.]*", name) is not None


def _constant(name: str) -> bool:
    return re.fullmatch(r"-?[\d.e+-]+", name) is not None


@_rule(r"Expected size for first two dimensions of batch2 tensor to be: \[(\d+), (\d+)\] but got: "
       r"\[(\d+), (\d+)\]")
def _bmm(m: re.Match, site: Site) -> Parts:
    if len(site.tensors) >= 2:
        return _matmul(m, site)
    b1, k1, b2, k2 = (int(g) for g in m.groups())
    if b1 != b2:
        return Parts(expected="batch1 and batch2 with the same batch size (axis 0)",
                     got=f"batch sizes {b1} and {b2}",
                     fix="take both from the same batch; to multiply every matrix by one matrix, "
                     "use a @ b[0]")
    return Parts(expected="batch1's last axis == batch2's axis 1", got=f"{k1} and {k2}",
                 fix=f"make the inner sizes agree ({k1} vs {k2}); to contract the last axes of "
                 "both, pass b.transpose(1, 2)")


# --- joining ---------------------------------------------------------------------------------


def _differing_axes(shapes: list[tuple[int, ...]]) -> list[int]:
    if len({len(s) for s in shapes}) != 1:
        return []
    return [i for i in range(len(shapes[0])) if len({s[i] for s in shapes}) > 1]


@_rule(r"Sizes of tensors must match except in dimension (\d+)\. Expected size (\d+) but got size "
       r"(\d+) for tensor number (\d+) in the list")
def _cat(m: re.Match, site: Site) -> Parts:
    dim, want, got, number = (int(g) for g in m.groups())
    tensors = site.tensors
    expected = f"every tensor the same shape except along dim={dim}"
    if len(tensors) < 2:
        return Parts(
            expected=expected,
            got=f"size {got} where tensor 0 has {want} (tensor number {number})",
            fix=f"make tensor number {number} match the others on every axis but {dim}",
        )
    differ = [a for a in _differing_axes([tuple(t.tensor.shape) for t in tensors]) if a != dim]
    if len(differ) == 1:
        k = differ[0]
        fix = (f"they differ only along axis {k}: concatenate along it with dim={k}, "
               f"or match axis {k}")
    else:
        fix = (f"{tensors[number].name} has {got} where {tensors[0].name} has {want}: slice, pad "
               f"or rebuild it so only axis {dim} differs")
    return Parts(expected=expected, got=_got(tensors), fix=fix)


@_rule(r"Tensors must have same number of dimensions: got (\d+) and (\d+)")
def _cat_rank(m: re.Match, site: Site) -> Parts:
    return Parts(
        expected="tensors of the same rank",
        got=_got(site.tensors) or f"ranks {m[1]} and {m[2]}",
        fix="add the missing axis to the lower-rank tensor first (x[:, None] or x.unsqueeze(k))",
    )


@_rule(r"stack expects each tensor to be equal size, but got \[([\d, ]*)\] at entry (\d+) and "
       r"\[([\d, ]*)\] at entry (\d+)")
def _stack(m: re.Match, site: Site) -> Parts:
    a, b = _sizes(m[1]), _sizes(m[3])
    differ = _differing_axes([a, b])
    join = f"torch.cat(..., dim={differ[0]})" if len(differ) == 1 else "torch.cat(..., dim=k)"
    return Parts(
        expected="tensors of equal shape (stack adds a new axis)",
        got=_got(site.tensors)
        or f"{shape_text(a)} at entry {m[2]} and {shape_text(b)} at entry {m[4]}",
        fix=f"to join along an existing axis use {join}; to stack, make the shapes equal",
    )


# --- view / reshape --------------------------------------------------------------------------


@_rule(r"view size is not compatible with input tensor's size and stride")
def _view_stride(m: re.Match, site: Site) -> Parts:
    tensors = site.tensors
    x = site.receiver or (tensors[0].name if tensors else "x")
    args = site.args_text or "..."
    got = "a non-contiguous tensor"
    if tensors:
        t = tensors[0].tensor
        got = f"{describe(tensors[0])}, non-contiguous (strides {tuple(t.stride())})"
    return Parts(
        expected="a contiguous tensor (view never copies)",
        got=got,
        note="a transpose or permute leaves the memory order unchanged",
        fix=f"use {x}.reshape({args}) (copies when needed), or {x}.contiguous().view({args})",
    )


@_rule(r"shape '\[([-\d, ]*)\]' is invalid for input of size (\d+)")
def _view_size(m: re.Match, site: Site) -> Parts:
    want, n = _sizes(m[1]), int(m[2])
    tensors = site.tensors
    x = site.receiver or (tensors[0].name if tensors else "x")
    source = f" of {describe(tensors[0])}" if tensors else ""
    return Parts(
        expected=f"sizes with product {n}, the number of elements{source}",
        got=f"[{m[1]}]" + (f", product {math.prod(want)}" if -1 not in want else ""),
        fix=f"check the sizes you pass; let torch infer one of them with -1, e.g. "
        f"{x}.view({want[0]}, -1)",
    )


# --- normalisation ---------------------------------------------------------------------------


@_rule(r"running_mean should contain (\d+) elements not (\d+)")
def _batchnorm_layout(m: re.Match, site: Site) -> Parts | None:
    features = int(m[2])
    tensors = site.tensors
    if not tensors:
        return None
    x = tensors[0]
    shape, name = x.tensor.shape, x.name
    expected = f"{name}: (N, {features}) or (N, {features}, L), channels on axis 1"
    if x.tensor.ndim == 3 and shape[-1] == features:
        how = "transpose around the layer: x.transpose(1, 2) in, .transpose(1, 2) out"
        if site.callee:
            how = f"pass it transposed and transpose back: {site.callee}({name}.transpose(1, 2))" \
                  ".transpose(1, 2)"
        return Parts(
            expected=expected,
            got=describe(x),
            note=f"channels-last input: the {features} channels are on the last axis",
            fix=f"{how}; or use shapekit.nn.BatchNorm1d({features}), which is channels-last",
        )
    return Parts(
        expected=expected,
        got=describe(x),
        fix=f"the input has {shape[1]} channels on axis 1: build BatchNorm1d({shape[1]})",
    )


@_rule(r"Expected more than 1 value per channel when training, got input size "
       r"torch\.Size\(\[([\d, ]*)\]\)")
def _batchnorm_one(m: re.Match, site: Site) -> Parts:
    tensors = site.tensors
    return Parts(
        expected="more than one value per channel in training mode",
        got=describe(tensors[0]) if tensors else shape_text(_sizes(m[1])),
        note="the batch statistics of one value are undefined (variance NaN)",
        fix="call model.eval() before feeding a single example (eval uses the running "
        "statistics), or train with a batch larger than 1",
    )


@_rule(r"Given normalized_shape=\[([\d, ]*)\], expected input with shape \[\*, ([\d, ]*)\], "
       r"but got input of size\s*\[([\d, ]*)\]")
def _layernorm(m: re.Match, site: Site) -> Parts:
    got = _sizes(m[3])
    n = len(_sizes(m[1]))
    return Parts(
        expected=f"input (*, {m[2]}): the last {n} axes == normalized_shape",
        got=_got(site.tensors) or shape_text(got),
        fix=f"build LayerNorm({', '.join(str(s) for s in got[-n:])}), or fix the layer before",
    )


# --- losses ----------------------------------------------------------------------------------


def _loss_operands(site: Site) -> tuple[Operand, Operand] | None:
    tensors = site.tensors
    return (tensors[0], tensors[1]) if len(tensors) >= 2 else None


@_rule(r"Expected target size \[([\d, ]*)\], got \[([\d, ]*)\]")
def _loss_layout(m: re.Match, site: Site) -> Parts:
    pair = _loss_operands(site)
    expected = "input (N, C, T) with target (N, T): classes on axis 1"
    if pair is None:
        return Parts(expected=expected, got=f"target [{m[2]}] where [{m[1]}] was expected",
                     fix="if the classes are on the last axis, pass logits.transpose(1, 2), or "
                     "flatten: F.cross_entropy(logits.view(-1, C), targets.view(-1))")
    (x, y), c = pair, pair[0].tensor.shape[-1]
    return Parts(
        expected=expected,
        got=_got([x, y]),
        note=f"the classes ({c}) are on the last axis" if x.tensor.ndim == 3 else "",
        fix=f"pass {x.name}.transpose(1, 2), or flatten both: "
        f"F.cross_entropy({x.name}.view(-1, {c}), {y.name}.view(-1))",
    )


@_rule(r"Expected input batch_size \((\d+)\) to match target batch_size \((\d+)\)")
def _loss_batch(m: re.Match, site: Site) -> Parts:
    pair = _loss_operands(site)
    expected = "input (N, C) and target (N,): one row of logits per target"
    if pair is None:
        return Parts(expected=expected, got=f"{m[1]} rows and {m[2]} targets",
                     fix="take logits and targets from the same batch (the same ix)")
    x, y = pair
    xs = x.tensor.shape
    if x.tensor.ndim == 2 and xs[1] == y.tensor.shape[0]:
        undo = x.name[:-2] if x.name.endswith(".T") else f"{x.name}.T"
        fix = f"{x.name} looks transposed, (C, N): pass {undo}"
    elif x.tensor.ndim >= 3:
        fix = (f"flatten both: F.cross_entropy({x.name}.view(-1, {xs[-1]}), {y.name}.view(-1)), "
               f"or pass {x.name}.transpose(1, 2)")
    else:
        fix = f"take {x.name} and {y.name} from the same batch: index both with the same ix"
    return Parts(expected=expected, got=_got([x, y]), fix=fix)


@_rule(r"expected target dtype to be Long|expected scalar type Long but found")
def _loss_target_dtype(m: re.Match, site: Site) -> Parts:
    pair = _loss_operands(site)
    y = pair[1].name if pair else "targets"
    return Parts(expected=f"{y}: integer class indices (int64)",
                 got=_got(list(pair)) if pair else "floating-point targets",
                 fix=f"pass {y}.long()")


@_rule(r"0D or 1D target tensor expected, multi-target not supported")
def _loss_target_rank(m: re.Match, site: Site) -> Parts:
    pair = _loss_operands(site)
    y = pair[1].name if pair else "targets"
    return Parts(expected=f"{y}: (N,), one class index per row",
                 got=_got(list(pair)) if pair else "a 2-D target",
                 fix=f"pass {y}.view(-1) (or {y}.squeeze(1))")


@_rule(r"Target (-?\d+) is out of bounds")
def _loss_target_range(m: re.Match, site: Site) -> Parts:
    pair = _loss_operands(site)
    c = pair[0].tensor.shape[1] if pair and pair[0].tensor.ndim >= 2 else "C"
    return Parts(expected=f"targets in [0, {c}), one per class of the logits",
                 got=f"target {m[1]}" + (f" ({_got(list(pair))})" if pair else ""),
                 fix=f"build the last layer with {int(m[1]) + 1} outputs, or check the encoding "
                 "(stoi) that produced the targets")


@_rule(r"Target size \(torch\.Size\(\[([\d, ]*)\]\)\) must be the same as input size "
       r"\(torch\.Size\(\[([\d, ]*)\]\)\)")
def _loss_same_shape(m: re.Match, site: Site) -> Parts:
    pair = _loss_operands(site)
    x, y = (pair[0].name, pair[1].name) if pair else ("input", "target")
    return Parts(expected=f"{y} of the same shape as {x}",
                 got=_got(list(pair)) if pair else f"target ({m[1]}), input ({m[2]})",
                 fix=f"pass {x}.squeeze(-1), or {y}.view_as({x})")


# --- indexing --------------------------------------------------------------------------------


@_rule(r"tensors used as indices must be long, int, byte or bool tensors|Expected tensor for "
       r"argument #1 'indices' to have one of the following scalar types|Expected dtype "
       r"int32/int64 for index")
def _float_index(m: re.Match, site: Site) -> Parts:
    tensors = site.tensors
    named = [t for t in tensors if t.name in ("input", "indices", "idx", "index")]
    floats = [t for t in tensors if t.tensor.is_floating_point() or t.tensor.is_complex()]
    # x[idx] lists the table first; F.embedding(input, weight) names its indices
    index = named[0] if named else (floats[-1] if floats else None)
    table = next((t for t in tensors if t is not index), None)
    name = index.name if index else "idx"
    fix = f"pass {name}.long()"
    if table is not None and site.module is None:
        fix = f"use {table.name}[{name}.long()]"
    return Parts(
        expected=f"{name}: integer indices (int64)",
        got=describe(index) if index else "floating-point indices",
        note="a float tensor here is often the embeddings, not the indices",
        fix=fix,
    )


@_rule(r"index out of range in self")
def _embedding_range(m: re.Match, site: Site) -> Parts | None:
    tensors = site.tensors
    module = site.module
    index = next((t for t in tensors if not t.tensor.is_floating_point()), None)
    rows = getattr(module, "num_embeddings", None)
    if rows is None:
        weight = next((t for t in tensors if t.tensor.is_floating_point()), None)
        rows = weight.tensor.shape[0] if weight is not None else None
    if index is None or rows is None or index.tensor.numel() == 0:
        return None
    lo, hi = int(index.tensor.min()), int(index.tensor.max())
    name = "idx" if index.name in ("input", "indices") else index.name
    fix = (f"indices must be >= 0; check the encoding (stoi) that produced {name}" if lo < 0 else
           f"build Embedding({hi + 1}, ...) to cover index {hi}, or check the encoding (stoi) that "
           f"produced {name}")
    return Parts(expected=f"{name}: indices in [0, {rows})",
                 got=f"values from {lo} to {hi} in {shape_text(index.tensor.shape)}", fix=fix)


@_rule(r"index (-?\d+) is out of bounds for dimension (\d+) with size (\d+)")
def _index_range(m: re.Match, site: Site) -> Parts:
    i, dim, size = (int(g) for g in m.groups())
    tensors = site.tensors
    table = tensors[0].name if tensors else "the tensor"
    return Parts(
        expected=f"indices in [-{size}, {size}) along axis {dim} of {table}",
        got=f"index {i}" + (f" ({_got(tensors)})" if tensors else ""),
        fix=f"check the index (or the encoding that produced it), or grow {table} to {i + 1} "
        f"along axis {dim}",
    )


@_rule(r"Dimension out of range \(expected to be in range of \[(-?\d+), (-?\d+)\], "
       r"but got (-?\d+)\)")
def _dim_range(m: re.Match, site: Site) -> Parts:
    hi, got = int(m[2]), int(m[3])
    tensors = site.tensors
    x = site.receiver or (tensors[0].name if tensors else "x")
    return Parts(
        expected=f"dim in [{m[1]}, {hi}] for a {hi + 1}-D tensor",
        got=f"dim={got}" + (f" on {describe(tensors[0])}" if tensors else ""),
        fix=f"{x} has {hi + 1} axes: use dim=-1 for the last; if an axis is missing, look where "
        f"{x} was made (Xtr[7] drops the batch axis, Xtr[[7]] keeps it)",
    )


# --- broadcasting ----------------------------------------------------------------------------


def aligned(shapes: list[tuple[int, ...]]) -> list[str]:
    """Shapes written aligned from the right, as broadcasting reads them.

    >>> aligned([(4, 3), (4,)])
    ['(4, 3)', '(   4)']
    """
    width = max(len(x) for x in shapes)
    rows = [[None] * (width - len(x)) + list(x) for x in shapes]
    sizes = [max(len(str(r[i])) for r in rows if r[i] is not None) for i in range(width)]
    out = []
    for row in rows:
        cells = [" " * w if v is None else str(v).rjust(w)
                 for v, w in zip(row, sizes, strict=True)]
        seps = ["  " if row[i] is None else ", " for i in range(width - 1)]
        text = "".join(c + sep for c, sep in zip(cells, [*seps, ""], strict=True))
        out.append(f"({text})")
    return out


@_rule(r"The size of tensor a \((\d+)\) must match the size of tensor b \((\d+)\) at "
       r"non-singleton dimension (\d+)")
def _broadcast(m: re.Match, site: Site) -> Parts:
    sa, sb, dim = (int(g) for g in m.groups())
    expected = "shapes that broadcast: aligned from the right, each pair of sizes equal or 1"
    tensors = site.tensors
    if len(tensors) < 2:
        known = ", ".join(describe(t) for t in tensors)
        names = [o.name for o in site.operands if o.tensor is None and not _constant(o.name)]
        other = f", {names[0]}" if tensors and names else ""
        return Parts(expected=expected,
                     got=(f"{known}{other}: " if known else "") + f"sizes {sa} and {sb} at axis "
                     f"{dim} of the result",
                     fix="give both operands equal sizes there, or insert an axis of size 1 where "
                     "one should repeat (t[:, None] or t.unsqueeze(k) on the operand t that "
                     "should repeat)")
    a, b = tensors[0], tensors[1]
    A, B = _wrap(a.name), _wrap(b.name)
    ta, tb = a.tensor, b.tensor
    shown = aligned([tuple(ta.shape), tuple(tb.shape)])
    note = (f"aligned from the right, {a.name} {shown[0]} and {b.name} {shown[1]} differ at axis "
            f"{dim} of the result: {sa} vs {sb}")
    if ta.ndim == tb.ndim == 2 and tuple(ta.shape) == tuple(reversed(tb.shape)):
        fix = f"{b.name} looks transposed: use {B}.T"
    elif tb.ndim < ta.ndim and tb.ndim and tb.shape[0] == ta.shape[0] != 1 and not _constant(B):
        fix = (f"{b.name} lines up with the last axes of {a.name}; to apply it along axis 0 add "
               f"the axis back: {B}[{_new_axes(ta.ndim - tb.ndim)}] (or keepdim=True where it "
               "was reduced)")
    elif ta.ndim < tb.ndim and ta.ndim and ta.shape[0] == tb.shape[0] != 1 and not _constant(A):
        fix = (f"{a.name} lines up with the last axes of {b.name}; to apply it along axis 0 add "
               f"the axis back: {A}[{_new_axes(tb.ndim - ta.ndim)}] (or keepdim=True where it "
               "was reduced)")
    else:
        fix = (f"make the sizes at axis {dim} equal ({sa} vs {sb}), or insert an axis of size 1 "
               f"where one should repeat ({B}.unsqueeze(k) or {A}.unsqueeze(k))")
    return Parts(expected=expected, got=_got([a, b]), note=note, fix=fix)


def _new_axes(n: int) -> str:
    """``x[:, None]`` for one missing axis, ``x[:, None, None]`` for two."""
    return ":, " + ", ".join(["None"] * n)


@_rule(r"output with shape \[([\d, ]*)\] doesn't match the broadcast shape \[([\d, ]*)\]")
def _inplace(m: re.Match, site: Site) -> Parts:
    return Parts(
        expected=f"an operand that broadcasts to the in-place target's shape [{m[1]}]",
        got=_got(site.tensors) or f"broadcast shape [{m[2]}]",
        note="an in-place op cannot change its target's shape",
        fix="use the out-of-place form (x = x + y), or reduce the other operand to the target's "
        "shape",
    )


@_rule(r"The expanded size of the tensor \((\d+)\) must match the existing size \((\d+)\) at "
       r"non-singleton dimension (\d+)")
def _expand(m: re.Match, site: Site) -> Parts:
    return Parts(
        expected=f"size {m[2]} or 1 at axis {m[3]} (expand only repeats axes of size 1)",
        got=_got(site.tensors) or f"size {m[1]} requested",
        fix="expand to the existing size there, or use repeat/repeat_interleave to tile data",
    )


# --- layers ----------------------------------------------------------------------------------


@_rule(r"Given groups=\d+, weight of size \[([\d, ]*)\], expected input\[([\d, ]*)\] to have "
       r"(\d+) channels, but got (\d+) channels instead")
def _conv_channels(m: re.Match, site: Site) -> Parts:
    shape, want, got = _sizes(m[2]), int(m[3]), int(m[4])
    tensors = site.tensors
    x = "x" if not tensors or tensors[0].name in ("input", "x") else tensors[0].name
    if shape and shape[-1] == want:
        if len(shape) == 3:
            fix = (f"channels on the last axis: pass {_wrap(x)}.transpose(1, 2) (Conv1d wants "
                   "(N, C, L))")
        else:
            perm = ", ".join(str(i) for i in [0, len(shape) - 1, *range(1, len(shape) - 1)])
            fix = (f"channels on the last axis: pass {_wrap(x)}.permute({perm}) (convolutions want "
                   "(N, C, ...), channels on axis 1)")
    else:
        fix = f"build the convolution with {got} input channels, or fix the layer before"
    return Parts(expected=f"{x}: (N, {want}, ...), {want} channels on axis 1",
                 got=describe(tensors[0]) if tensors else shape_text(shape), fix=fix)


def _layout(module: object) -> str:
    """How an RNN reads its input: ``(batch, seq, feature)`` with ``batch_first=True``."""
    if getattr(module, "batch_first", False):
        return "batch_first=True: input (batch, seq, feature)"
    return "batch_first=False: input (seq, batch, feature)"


@_rule(r"input\.size\(-1\) must be equal to input_size\. Expected (\d+), got (\d+)")
def _rnn_input(m: re.Match, site: Site) -> Parts:
    tensors = site.tensors
    got = describe(tensors[0]) if tensors else f"(..., {m[2]})"
    name = tensors[0].name if tensors and _plain(tensors[0].name) else "input"
    note = ""
    if site.module is not None:
        note = _layout(site.module)
        shape = tensors[0].tensor.shape if tensors else ()
        if len(shape) == 3 and int(m[1]) in shape[:2]:
            axis = list(shape[:2]).index(int(m[1]))
            return Parts(expected=f"{name}: (..., {m[1]}), input_size features on the last axis",
                         got=got, note=note + f"; the {m[1]} features are on axis {axis}",
                         fix=f"move the features last: {_wrap(name)}.transpose({axis}, 2)")
    return Parts(expected=f"{name}: (..., {m[1]}), input_size features on the last axis", got=got,
                 note=note, fix=f"build the RNN with input_size={m[2]}, or fix the layer before")


@_rule(r"For unbatched 2-D input, hx (?:and cx )?should also be 2-D but got")
def _rnn_unbatched(m: re.Match, site: Site) -> Parts:
    tensors, module = site.tensors, site.module
    x = tensors[0] if tensors else None
    name = x.name if x is not None and _plain(x.name) else "input"
    first = bool(getattr(module, "batch_first", False))
    axis = 0 if first else 1
    batch = next((t.tensor.shape[1] for t in tensors[1:] if t.tensor.ndim == 3), None)
    got = _got(tensors) or "a 2-D input with 3-D hidden states"
    if x is not None and x.tensor.ndim == 3 and x.tensor.shape[axis] == 1:
        # torch's forward already gave the 2-D input a batch axis of 1: show what was passed
        given = x.tensor.squeeze(axis)
        got = ", ".join([describe(Operand(x.name, given)), *(describe(t) for t in tensors[1:])])
    note = (_layout(module) + "; " if module is not None else "") + (
        "a 2-D input is one unbatched sequence, (seq, feature)")
    return Parts(
        expected=f"{name}: 3-D, with a batch axis, to go with 3-D hidden states "
        f"(num_layers, batch, hidden_size)" + (f" for a batch of {batch}" if batch else ""),
        got=got,
        note=note,
        fix=f"add the batch axis: {_wrap(name)}.unsqueeze({axis}) (a batch of one), or pass 2-D "
        "hidden states (num_layers, hidden_size) for one unbatched sequence",
    )


@_rule(r"Expected hidden(?:\[(\d)\])? size \(([\d, ]*)\), got \[([\d, ]*)\]")
def _rnn_hidden(m: re.Match, site: Site) -> Parts:
    want, got = _sizes(m[2]), _sizes(m[3])
    which = {None: "h0", "0": "h0", "1": "c0"}[m[1]]
    tensors, module = site.tensors, site.module
    x = tensors[0] if tensors else None
    hidden = tensors[1:]
    h = hidden[int(m[1] or 0)] if len(hidden) > int(m[1] or 0) else None
    name = h.name if h is not None and _plain(h.name) and not h.name.startswith("hx") else which
    expected = (f"{name}: (num_layers * num_directions, batch, hidden_size) = {shape_text(want)}"
                ", batch on axis 1 even with batch_first=True")
    shown = describe(h) if h is not None else shape_text(got)
    note = _layout(module) if module is not None else ""
    make = f"torch.zeros({', '.join(str(v) for v in want)})"
    if len(want) == 3 and len(got) == 3 and want[1] != got[1]:
        b = want[1]
        first = bool(getattr(module, "batch_first", False))
        if not first and x is not None and x.tensor.ndim == 3 and x.tensor.shape[0] == got[1]:
            # h0 was made for the input's axis 0: the data is (batch, seq, feature)
            xn = x.name if _plain(x.name) else "the input"
            fix = (f"{xn} looks (batch, seq, feature): build the layer with batch_first=True "
                   "(h0 keeps its (num_layers, batch, hidden_size) layout)")
        else:
            fix = f"make {name} for a batch of {b}: {make}"
        return Parts(expected=expected, got=shown,
                     note=f"{note}; the input's batch is {b}, {name} has {got[1]}".lstrip("; "),
                     fix=fix)
    return Parts(expected=expected, got=shown, note=note, fix=f"make {name} {make}")


@_rule(r"number of dimensions in the tensor input does not match the length of the desired "
       r"ordering of dimensions i\.e\. input\.dim\(\) = (\d+) is not equal to len\(dims\) = (\d+)")
def _permute(m: re.Match, site: Site) -> Parts:
    example = ", ".join(str(i) for i in reversed(range(int(m[1]))))
    return Parts(expected=f"one index per axis ({m[1]} for a {m[1]}-D tensor)",
                 got=f"{m[2]} indices" + (f" for {_got(site.tensors)}" if site.tensors else ""),
                 fix=f"list each of the {m[1]} axes once, e.g. permute({example})")


@_rule(r"einsum\(\): (.*)")
def _einsum(m: re.Match, site: Site) -> Parts:
    generic = Parts(expected="operands whose sizes agree for every repeated subscript",
                    got=_got(site.tensors) or m[1], note=m[1],
                    fix="check each operand's shape against the subscripts, in order")
    equation = next((o.value for o in site.operands if isinstance(o.value, str)), None)
    tensors = site.tensors
    if equation is None or "." in equation:
        return generic
    lhs, _, rhs = equation.replace(" ", "").partition("->")
    subs = lhs.split(",")
    if len(subs) != len(tensors):
        return generic
    shapes = [tuple(t.tensor.shape) for t in tensors]
    bound = ", ".join(f"{t.name} {shape_text(sh)} as {sub}"
                      for t, sh, sub in zip(tensors, shapes, subs, strict=True))
    for i, (sub, shape) in enumerate(zip(subs, shapes, strict=True)):
        if len(sub) != len(shape):
            return Parts(expected=f"one subscript per axis: {len(sub)} for {sub!r}",
                         got=f"{tensors[i].name}: {shape_text(shape)}, {len(shape)} axes",
                         note=bound,
                         fix=f"write {len(shape)} subscripts for operand {i}, or add ... for "
                         "the leading axes")
    fix = _einsum_fix(subs, shapes, rhs if "->" in equation else None)
    return Parts(
        expected="every repeated subscript of one size (or 1) in all operands",
        got=bound,
        note=m[1].replace("operand ", "operand #"),
        fix=(f"the operands fit \"{fix[1]}\": {tensors[fix[0]].name} looks laid out as "
             f"{fix[2]}; use that equation (or permute {tensors[fix[0]].name} to "
             f"{subs[fix[0]]})") if fix else generic.fix,
    )


def _consistent(subs: list[str], shapes: list[tuple[int, ...]]) -> bool:
    sizes: dict[str, int] = {}
    for sub, shape in zip(subs, shapes, strict=True):
        for letter, size in zip(sub, shape, strict=True):
            if size != 1 and sizes.setdefault(letter, size) != size:
                return False
    return True


def _einsum_fix(subs: list[str], shapes: list[tuple[int, ...]],
                rhs: str | None) -> tuple[int, str, str] | None:
    """Reorder one operand's subscripts (at most 4) so every size agrees: (operand, equation,
    its subscripts)."""
    import itertools

    for i, sub in enumerate(subs):
        if len(sub) > 4:
            continue
        for perm in itertools.permutations(sub):
            new = "".join(perm)
            if new == sub:
                continue
            trial = [*subs[:i], new, *subs[i + 1:]]
            if _consistent(trial, shapes):
                equation = ",".join(trial) + (f"->{rhs}" if rhs is not None else "")
                return i, equation, new
    return None


# --- dtypes ----------------------------------------------------------------------------------


@_rule(r"expected m1 and m2 to have the same dtype, but got: ([\w ]+?) != ([\w ]+)$|mat1 and mat2 "
       r"must have the same dtype, but got (\w+) and (\w+)|expected scalar type (\w+) but found "
       r"(\w+)")
def _dtype(m: re.Match, site: Site) -> Parts:
    a, b = [g for g in m.groups() if g][:2]
    tensors = site.tensors
    integers = [t for t in tensors if not (t.tensor.is_floating_point() or t.tensor.is_complex())]
    floats = [t for t in tensors if t.tensor.is_floating_point()]
    if integers and floats:
        i, f = integers[0], floats[0]
        dtype = str(f.tensor.dtype).removeprefix("torch.")
        return Parts(
            expected="operands of one dtype (matmul does not promote integers)",
            got=_got(tensors),
            note=f"{i.name} holds integers; if they are indices into {f.name}'s rows, look them up "
            f"with {f.name}[{i.name}] instead",
            fix=f"convert it: {_wrap(i.name)}.to({f.name}.dtype)" + (
                f" (or {_wrap(i.name)}.float())" if dtype == "float32" else ""),
        )
    cast = {"float": ".float()", "double": ".double()", "half": ".half()"}
    target = tensors[0].name if tensors else "the input"
    return Parts(
        expected="operands of one dtype",
        got=_got(tensors) or f"{a.lower()} and {b.lower()}",
        fix=f"convert {target} with {cast.get(b.lower(), '.to(<dtype>)')}, or the model with "
        "model.to(<dtype>)",
    )
