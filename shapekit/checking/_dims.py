"""Parse jaxtyping dimension strings and explain why a shape does not match one.

Pure Python, no torch: beartype + jaxtyping do the checking at run time; this module is only used
after a check has failed, to say *which* axis is wrong, what was bound so far and where from.

>>> dims = parse("batch *time {self.fan_in}")
>>> [d.text for d in dims]
['batch', '*time', '{self.fan_in}']
>>> memo = Memo()
>>> match(dims, (32, 4, 40), memo, "x", {"self": type("L", (), {"fan_in": 48})()}).reason
'axis 2 is 40, expected 48 = fan_in'
>>> memo.render()
'batch=32 time=4'
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*$")
_FSTRING = re.compile(r"\{([^{}]+)\}")
# What a dim expression may call, as in jaxtyping's ("min(n,4)", "max(t-1,0)"); nothing else.
_EVAL_GLOBALS = {"__builtins__": {}, "min": min, "max": max, "abs": abs}


@dataclass(frozen=True)
class Dim:
    """One axis of a dimension string: a name, a fixed size, an expression or a variadic."""

    text: str
    kind: str  # "named", "fixed", "expr", "anon", "variadic"
    name: str = ""  # for named and named variadic axes
    size: int = 0  # for fixed axes
    broadcast: bool = False  # "#name": size 1 also matches
    treepath: bool = False  # "?name": its own size at each leaf of a named PyTree structure


def parse(dim_str: str) -> tuple[Dim, ...]:
    """Split a jaxtyping dimension string into axes.

    >>> [(d.kind, d.name) for d in parse("b ... 3 #c _ r=4")]
    [('named', 'b'), ('variadic', ''), ('fixed', ''), ('named', 'c'), ('anon', ''), ('fixed', 'r')]
    >>> [(d.kind, d.name, d.treepath) for d in parse("?b *?t")]
    [('named', 'b', True), ('variadic', 't', True)]
    """
    dims = []
    for token in dim_str.split():
        text = token
        broadcast = variadic = treepath = False
        # jaxtyping allows the modifiers in any order: "*#name", "#*name", "?*name".
        while token[:1] in ("*", "#", "?"):
            variadic |= token[0] == "*"
            broadcast |= token[0] == "#"
            treepath |= token[0] == "?"
            token = token[1:]
        if token == "...":
            dims.append(Dim(text, "variadic"))
        elif variadic:
            name = "" if token.startswith("_") else token
            dims.append(Dim(text, "variadic", name=name, broadcast=broadcast, treepath=treepath))
        elif token.isdigit():
            dims.append(Dim(text, "fixed", size=int(token)))
        elif "=" in token and token.split("=", 1)[1].isdigit():  # "rows=3": a size with a name
            name, size = token.split("=", 1)
            dims.append(Dim(text, "fixed", name=name, size=int(size)))
        elif token.startswith("_") and _NAME.match(token):
            dims.append(Dim(text, "anon"))
        elif _NAME.match(token):
            dims.append(Dim(text, "named", name=token, broadcast=broadcast, treepath=treepath))
        else:
            dims.append(Dim(text, "expr", broadcast=broadcast))
    if sum(d.kind == "variadic" for d in dims) > 1:
        raise ValueError(f"dimension string {dim_str!r} has more than one variadic axis")
    return tuple(dims)


def at_leaf(dims: tuple[Dim, ...], leaf: str) -> tuple[Dim, ...]:
    """``dims`` as they read at one leaf of a named PyTree structure: each ``?name`` becomes
    ``name@leaf`` (``leaf`` is the structure and the leaf's index, ``T1``), a size of its own
    there, shared with the same leaf of every other argument of that structure, as in jaxtyping.

    >>> [d.name for d in at_leaf(parse("?b c"), "T1")]
    ['b@T1', 'c']
    """
    return tuple(replace(d, name=f"{d.name}@{leaf}") if d.treepath and d.name else d
                 for d in dims)


@dataclass
class Memo:
    """Sizes bound so far in one call, and which argument bound each."""

    sizes: dict[str, int | tuple[int, ...]] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    trees: dict[str, tuple[Any, str]] = field(default_factory=dict)  # a named PyTree structure

    def bind(self, name: str, size: int | tuple[int, ...], source: str) -> None:
        if name and name not in self.sizes:
            self.sizes[name] = size
            self.sources[name] = source

    def render(self, source: str | None = None) -> str:
        """``"batch=32 time=4"``: the bindings, optionally only those made by one argument."""
        parts = []
        for name, size in self.sizes.items():
            if source is not None and self.sources[name] != source:
                continue
            shown = size if isinstance(size, int) else ",".join(map(str, size)) or "()"
            parts.append(f"{name}={shown}")
        return " ".join(parts)


@dataclass
class Mismatch:
    """Why a shape did not match: ``kind`` is "rank", "size" or "batch-missing"."""

    kind: str
    reason: str
    axis: int = -1
    name: str = ""
    expected: int | tuple[int, ...] = 0  # a tuple for a variadic run such as *batch
    got: int | tuple[int, ...] = 0


def resolve(dim: Dim, memo: Memo, arguments: dict) -> tuple[int | None, str]:
    """The size an axis must have (or None when any size goes), and the label to show it with.

    ``{self.fan_in}`` is filled in from the call's arguments, as jaxtyping does, and is labelled
    with its last attribute name: ``48 = fan_in``.
    """
    if dim.kind == "fixed":
        return dim.size, f"{dim.size} = {dim.name}" if dim.name else str(dim.size)
    if dim.kind == "named":
        size = memo.sizes.get(dim.name)
        if isinstance(size, int):
            return size, f"{size} = {dim.name}"
        return None, dim.name
    if dim.kind != "expr":
        return None, dim.text
    token = dim.text.lstrip("#")
    labels = [expr.split(".")[-1].strip() for expr in _FSTRING.findall(token)]
    try:
        filled = _FSTRING.sub(lambda m: str(_attribute(m.group(1), arguments)), token)
        values = {k: v for k, v in memo.sizes.items() if isinstance(v, int)}
        size = int(eval(filled, _EVAL_GLOBALS, values))  # the annotation's own expression
    except Exception:
        return None, token
    label = labels[0] if len(labels) == 1 and _FSTRING.fullmatch(token) else token
    return size, f"{size} = {label}"


def _attribute(path: str, arguments: dict):
    """``self.fan_in`` looked up in the call's arguments (only names and attributes, no calls)."""
    head, *attrs = path.strip().split(".")
    value = arguments[head]
    for attr in attrs:
        value = getattr(value, attr)
    return value


def render(dims: tuple[Dim, ...], memo: Memo, arguments: dict) -> str:
    """``(batch, *time, 48 = fan_in)``: the expected shape with every size known so far."""
    return "(" + ", ".join(resolve(d, memo, arguments)[1] for d in dims) + ")"


def match(
    dims: tuple[Dim, ...], shape: tuple[int, ...], memo: Memo, source: str, arguments: dict
) -> Mismatch | None:
    """Check ``shape`` against ``dims``, binding names into ``memo``; the first problem, or None."""
    variadic = next((i for i, d in enumerate(dims) if d.kind == "variadic"), None)
    fixed_rank = len(dims) - (variadic is not None)
    rank = len(shape)
    if rank < fixed_rank or (variadic is None and rank != fixed_rank):
        return _rank_mismatch(dims, shape, fixed_rank, variadic, memo, arguments)
    if variadic is None:
        return _match_axes(list(enumerate(dims)), shape, memo, source, arguments)
    # Leading axes first, then the variadic run, then the trailing axes, as they read.
    problem = _match_axes(list(enumerate(dims[:variadic])), shape, memo, source, arguments)
    if problem is not None:
        return problem
    tail = len(dims) - variadic - 1
    dim = dims[variadic]
    got = tuple(shape[variadic : rank - tail])
    bound = memo.sizes.get(dim.name)
    if dim.name and isinstance(bound, tuple) and not _same_variadic(bound, got, dim.broadcast):
        reason = f"*{dim.name} is {got}, expected {bound}"
        return Mismatch("size", reason, variadic, dim.name, bound, got)
    memo.bind(dim.name, got, source)
    trailing = [(rank - tail + j, dims[variadic + 1 + j]) for j in range(tail)]
    return _match_axes(trailing, shape, memo, source, arguments)


def _match_axes(pairs, shape, memo, source, arguments) -> Mismatch | None:
    for axis, dim in pairs:
        problem = _match_axis(dim, shape[axis], axis, memo, source, arguments)
        if problem is not None:
            return problem
    return None


def _same_variadic(bound: tuple[int, ...], got: tuple[int, ...], broadcast: bool) -> bool:
    if len(bound) != len(got):
        return False
    return all(b == g or (broadcast and g == 1) for b, g in zip(bound, got, strict=True))


def _match_axis(
    dim: Dim, size: int, axis: int, memo: Memo, source: str, arguments: dict
) -> Mismatch | None:
    if dim.broadcast and size == 1:
        return None  # "#n" of size 1 broadcasts against anything and binds nothing, as in jaxtyping
    expected, label = resolve(dim, memo, arguments)
    if expected is None or size == expected:
        if dim.kind == "named":
            memo.bind(dim.name, size, source)
        return None
    return Mismatch("size", f"axis {axis} is {size}, expected {label}", axis, dim.name or label,
                    expected, size)


def _rank_mismatch(dims, shape, fixed_rank, variadic, memo, arguments) -> Mismatch:
    want = f"at least {fixed_rank}" if variadic is not None else str(fixed_rank)
    reason = f"{len(shape)} {'axis' if len(shape) == 1 else 'axes'}, expected {want}"
    # One axis short, and the shape fits once the leading batch axis is dropped: the classic
    # `Xtr[7]` (a single example) where `Xtr[[7]]` (a batch of one) was meant.
    leading_batch = bool(dims) and dims[0].kind == "named" and "batch" in dims[0].name
    if leading_batch and len(shape) == fixed_rank - 1:
        trial = Memo(dict(memo.sizes), dict(memo.sources))
        if match(dims[1:], shape, trial, "", arguments) is None:
            return Mismatch("batch-missing", f"{reason}: the batch axis is missing")
    return Mismatch("rank", reason)


def bound_text(memo: Memo, param: str = "") -> str:
    """``batch=32 time=4 n=5 (from y)``: the sizes ``param`` bound first (no source: they are its
    own), then the others with where each was bound.

    >>> memo = Memo()
    >>> match(parse("batch time"), (32, 4), memo, "x", {}) is None
    True
    >>> bound_text(memo), bound_text(memo, "x")
    ('batch=32 time=4 (from x)', 'batch=32 time=4')
    """
    parts = [memo.render(param)] if param else []
    others = dict.fromkeys(s for s in memo.sources.values() if s != param)
    parts += [f"{memo.render(source)} (from {source})" for source in others]
    return " ".join(p for p in parts if p)
