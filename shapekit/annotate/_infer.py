"""Infer jaxtyping annotations from observed calls: the most specific ones every call satisfies.

For one function, every axis of every tensor it took or returned is an *occurrence*, with the size
it had in each call. Occurrences whose sizes agree in every call they share are one dimension (the
batch of ``x``, of ``mask`` and of the output; the sequence length shared by ``x`` and ``mask``).
Each dimension is then written as specifically as the evidence allows:

- ``{self.fan_in}`` when an ``int`` attribute of ``self`` equals it in every call;
- a name when its size varied between calls, or when an ``int`` argument of ``__init__`` (or of
  the call) equals it in every call (the name is then that argument's: ``fan_in``);
- its size (``3``) when it never varied and nothing explains it;
- a variadic ``*batch`` where the rank varied between calls.

Names come from those arguments, else from where the axis sits (``batch``, ``time``, ``channels``,
``heads``, ``head_size``). The dtype is the narrowest of Float, Int, Bool that holds every dtype
seen (else Shaped).
"""

from __future__ import annotations

import keyword
import re
import types
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from . import _deps
from ._observe import Call, FunctionRecord, Observations

__all__ = ["Dimension", "FunctionAnnotations", "infer"]

_MIXED = object()  # the elements of one call disagreed on this axis


@dataclass
class Dimension:
    """One inferred dimension: how it is written, why, and the evidence."""

    token: str  # as in the dim string: "batch", "{self.fan_in}", "3", "*time", "_time"
    rule: str  # why it is written so
    sizes: list  # the distinct sizes seen (tuples for a variadic)
    where: list[str]  # "x axis 0", "return axis 1"


@dataclass
class FunctionAnnotations:
    """The annotations inferred for one function, with the evidence for each choice."""

    record: FunctionRecord
    params: dict[str, str] = field(default_factory=dict)  # parameter -> annotation text
    returns: str | None = None
    dims: list[Dimension] = field(default_factory=list)
    dtypes: dict[str, list[str]] = field(default_factory=dict)  # slot -> dtypes seen
    names: set[str] = field(default_factory=set)  # jaxtyping names used: {"Float", "Int"}
    nones: dict[str, int] = field(default_factory=dict)  # slot -> calls in which it was None
    disagreements: list[str] = field(default_factory=list)  # existing annotations vs calls

    @property
    def annotated(self) -> bool:
        """Whether there is anything to write."""
        return bool(self.params or self.returns)

    def report(self) -> str:
        """Each choice with its evidence, as ``shapekit annotate --report`` prints it."""
        r = self.record
        distinct = len(r.calls)
        lines = [f"{r.key}  ({r.total} call{'s' * (r.total != 1)}, {distinct} distinct)"]
        for name, text in self.params.items():
            seen = ", ".join(self.dtypes.get(name, []))
            if self.nones.get(name):
                seen += f"; None in {self.nones[name]} of {r.total} calls"
            lines.append(f"  {name}: {text}  [{seen}]")
        if self.returns:
            lines.append(f"  -> {self.returns}  [{', '.join(self.dtypes.get('return', []))}]")
        width = max((len(d.token) for d in self.dims), default=0)
        for d in self.dims:
            sizes = ", ".join(_size_text(s) for s in d.sizes)
            lines.append(f"    {d.token:<{width}}  {', '.join(d.where)}: {sizes} ({d.rule})")
        if r.existing and not self.annotated:
            lines.append("  already annotated: left as it is")
        lines += [f"  disagrees: {d}" for d in self.disagreements]
        return "\n".join(lines)


def _size_text(size: Any) -> str:
    if isinstance(size, tuple):
        return "(" + ", ".join(map(str, size)) + ("," if len(size) == 1 else "") + ")"
    return str(size)


def infer(observations: Observations | Iterable[FunctionRecord]) -> dict[str, FunctionAnnotations]:
    """Annotations for every observed function that took or returned tensors, by function key.

    >>> import torch, shapekit
    >>> from shapekit.annotate import infer
    >>> with shapekit.observe(packages=["shapekit.nn"]) as obs:
    ...     for batch in (2, 5):
    ...         _ = shapekit.nn.Tanh()(torch.ones(batch, 3))
    >>> found = infer(obs)["shapekit.nn._tanh:Tanh.forward"]
    >>> found.disagreements  # Tanh.forward's own annotation holds for both calls
    []
    """
    if isinstance(observations, Observations):
        records = list(observations.functions.items())
    else:
        records = [(r.key, r) for r in observations]
    found = {}
    for key, record in records:
        result = _infer_function(record)
        if result is not None:
            found[key] = result
    return found


# ---- structure: what each parameter held, merged over the calls --------------------------------


@dataclass
class _Leaf:
    """Tensors at one place (``x``, ``out[0]``, ``batch['mask']``), over all calls."""

    param: str
    label: str
    seen: list[tuple[int, tuple[int, ...], str]]  # (call index, shape, dtype)
    optional: bool = False
    tokens: list[Any] = field(default_factory=list)  # filled by _layout: one per dim

    @property
    def integer(self) -> bool:
        return all(d.startswith(("int", "uint")) for _, _, d in self.seen)


@dataclass
class _Node:
    kind: str  # "leaf", "tuple", "seq", "dict", "int", "none"
    optional: bool = False
    children: list[Any] = field(default_factory=list)
    origin: str = ""  # "list" or "tuple" for a sequence
    leaf: _Leaf | None = None


def _build(param: str, label: str, values: list[tuple[int, Any]]) -> _Node | None:
    """The structure of ``values`` (call index, summary), or None when it cannot be annotated."""
    present = [(ci, s) for ci, s in values if s is not None]
    optional = len(present) < len(values)
    if not present:
        return _Node("none")
    kinds = {s[0] for _, s in present}
    if kinds == {"t"}:
        leaf = _Leaf(param, label, [(ci, s[1], s[2]) for ci, s in present], optional)
        return _Node("leaf", optional, leaf=leaf)
    if kinds == {"i"}:
        return _Node("int", optional)
    if kinds <= {"tuple", "list"}:
        lengths = {len(s[1]) for _, s in present}
        if kinds == {"tuple"} and len(lengths) == 1:
            children = [_build(param, f"{label}[{i}]", [(ci, s[1][i]) for ci, s in present])
                        for i in range(lengths.pop())]
            if any(c is None for c in children):
                return None
            return _Node("tuple", optional, children)
        if len(kinds) > 1:
            return None
        items = [(ci, item) for ci, s in present for item in s[1]]
        child = _build(param, f"{label}[i]", items) if items else None
        if child is None or child.kind == "none":
            return None
        return _Node("seq", optional, [child], origin=kinds.pop())
    if kinds == {"dict"}:
        items = [(ci, item) for ci, s in present for _, item in s[1]]
        child = _build(param, f"{label}[key]", items) if items else None
        if child is None or child.kind == "none":
            return None
        return _Node("dict", optional, [child])
    return None


def _leaves(node: _Node) -> list[_Leaf]:
    if node.leaf is not None:
        return [node.leaf]
    return [leaf for child in node.children for leaf in _leaves(child)]


# ---- dimensions: occurrences, grouped by the sizes they had --------------------------------------


@dataclass
class _Occurrence:
    leaf: _Leaf
    position: int  # index in the leaf's dim tokens
    variadic: bool
    sizes: dict[int, Any]  # call index -> size (a tuple for a variadic), or _MIXED
    group: _Group | None = None


@dataclass
class _Group:
    members: list[_Occurrence]
    sizes: dict[int, Any]
    variadic: bool
    token: str = ""
    rule: str = ""


def _layout(leaf: _Leaf) -> list[_Occurrence]:
    """Split the leaf's axes into fixed axes and, when the rank varied, one variadic run."""
    ranks = {len(shape) for _, shape, _ in leaf.seen}
    low = min(ranks)
    if len(ranks) == 1:
        lead, tail = low, 0
    else:  # the split whose fixed axes vary least; ties: one leading axis (the batch) first
        def score(k: int) -> tuple[int, int]:
            spread = 0
            for j in range(k):
                spread += len({shape[j] for _, shape, _ in leaf.seen})
            for j in range(low - k):
                spread += len({shape[len(shape) - (low - k) + j] for _, shape, _ in leaf.seen})
            return (spread, 0 if k == 1 else 1)

        lead = min(range(low + 1), key=score)
        tail = low - lead
    occurrences = []
    for position in range(lead + tail + (len(ranks) > 1)):
        variadic = len(ranks) > 1 and position == lead
        sizes: dict[int, Any] = {}
        for ci, shape, _ in leaf.seen:
            if variadic:
                size: Any = tuple(shape[lead:len(shape) - tail])
            elif position < lead:
                size = shape[position]
            else:
                back = lead + tail + (len(ranks) > 1) - position
                size = shape[len(shape) - back]
            if ci in sizes and sizes[ci] != size:
                size = _MIXED
            if sizes.get(ci, size) is not _MIXED:
                sizes[ci] = size
        occurrences.append(_Occurrence(leaf, position, variadic, sizes))
    leaf.tokens = list(occurrences)
    return occurrences


def _group(occurrences: list[_Occurrence]) -> list[_Group]:
    groups: list[_Group] = []
    for occ in occurrences:
        mixed = any(v is _MIXED for v in occ.sizes.values())
        target = None
        if not mixed:
            for group in groups:
                if group.variadic != occ.variadic or any(
                        v is _MIXED for v in group.sizes.values()):
                    continue
                common = occ.sizes.keys() & group.sizes.keys()
                if common and all(occ.sizes[c] == group.sizes[c] for c in common):
                    target = group
                    break
        if target is None:
            target = _Group([], {}, occ.variadic)
            groups.append(target)
        target.members.append(occ)
        target.sizes.update(occ.sizes)
        occ.group = target
    return groups


def _matching(source: str, group: _Group, calls: list[Call]) -> list[str]:
    """The names in each call's ``attrs`` / ``init`` / int arguments that equal the group's size
    in every call it was seen in."""
    names: list[str] | None = None
    for ci, size in group.sizes.items():
        call = calls[ci]
        if source == "attrs":
            pool = call.attrs
        elif source == "init":
            pool = call.init
        else:
            pool = {k: v[1] for k, v in call.args.items() if v is not None and v[0] == "i"}
        here = [k for k, v in pool.items() if v == size and type(size) is int]
        names = here if names is None else [n for n in names if n in here]
        if not names:
            return []
    # Direct attributes before a config's, public before private, short before long.
    return sorted(names or [], key=lambda n: (n.count("."), n.startswith("_"), len(n)))


def _conventional(occ: _Occurrence) -> list[str]:
    """Names for an axis from where it sits, best first."""
    n = len(occ.leaf.tokens)
    p = occ.position
    base = _identifier(occ.leaf.param)
    if occ.variadic:
        return ["batch", "dims"] if p == 0 else ["time", "dims"]
    twice = sum(o.group is occ.group for o in occ.leaf.tokens) > 1
    if twice and p > 0:
        return ["time", "n"]
    if n == 1:
        return [base if base != "return" else "n", "n"]
    if p == 0:
        return ["batch"]
    if n == 4:
        return [["batch", "heads", "time", "head_size"][p]]
    if p == 1 and (n == 3 or (n == 2 and occ.leaf.integer)):
        return ["time"]  # (batch, time, channels); integer (batch, time) is a batch of token ids
    if p == n - 1:
        return ["channels"]
    return [f"{base}_axis{p}"]


def _identifier(name: str) -> str:
    name = re.sub(r"\W", "_", name).strip("_") or "n"
    return name + "_" if keyword.iskeyword(name) else name


def _name_groups(groups: list[_Group], calls: list[Call], method: bool) -> None:
    used: set[str] = set()
    for group in groups:
        values = list(dict.fromkeys(group.sizes.values()))
        # Named after the member that says most: the most axes, an argument before the output.
        first = min(group.members, key=lambda o: (-len(o.leaf.tokens), o.leaf.param == "return"))
        if any(v is _MIXED for v in values):
            name = _unique(["_" + c for c in _conventional(first)], used, first)
            group.token, group.rule = ("..." if group.variadic else name), (
                "differed between the elements of one call: not bound")
            continue
        varied = len(values) > 1
        at_front = any(o.position == 0 and not o.variadic for o in group.members)
        attrs = _matching("attrs", group, calls) if method and not group.variadic else []
        if attrs and (varied or not at_front):
            group.token = "{self." + attrs[0] + "}"
            group.rule = f"= self.{attrs[0]} in every call"
            continue
        explained = [] if group.variadic else (
            _matching("init", group, calls) or _matching("args", group, calls))
        if not varied and not explained and not group.variadic:
            group.token, group.rule = str(values[0]), "the same in every call, nothing equals it"
            continue
        candidates = explained + _conventional(first)
        name = _unique(candidates, used, first)
        if group.variadic:
            group.token, group.rule = "*" + name, "the number of axes varied between calls"
        elif explained:
            source = "__init__ argument" if _matching("init", group, calls) else "argument"
            group.token = name
            group.rule = f"= {source} {explained[0]} in every call"
        else:
            group.token, group.rule = name, "varied between calls"


def _unique(candidates: list[str], used: set[str], occ: _Occurrence) -> str:
    base = _identifier(occ.leaf.param)
    tries = list(candidates)
    output = occ.leaf.param == "return"
    tries += [f"out_{c}" if output else f"{base}_{c}" for c in candidates]
    for name in tries:
        if name not in used:
            used.add(name)
            return name
    k = 2
    while f"{candidates[0]}{k}" in used:
        k += 1
    used.add(f"{candidates[0]}{k}")
    return f"{candidates[0]}{k}"


# ---- rendering ------------------------------------------------------------------------------


def _category(dtypes: set[str]) -> str:
    kinds = set()
    for d in dtypes:
        if d == "bool":
            kinds.add("Bool")
        elif d.startswith(("float", "bfloat")):
            kinds.add("Float")
        elif d.startswith(("int", "uint")):
            kinds.add("Int")
        else:
            kinds.add("Shaped")
    return kinds.pop() if len(kinds) == 1 else "Shaped"


def _dim_string(leaf: _Leaf) -> str:
    tokens = [occ.group.token for occ in leaf.tokens]
    text = " ".join(tokens)
    # One plain name reads as a forward reference to linters; a leading space says it is not.
    return " " + text if len(tokens) == 1 and text.isidentifier() else text


def _render(node: _Node, result: FunctionAnnotations, slot: str) -> str:
    if node.kind == "leaf":
        leaf = node.leaf
        assert leaf is not None
        dtypes = {d for _, _, d in leaf.seen}
        category = _category(dtypes)
        result.names.add(category)
        result.dtypes.setdefault(slot, [])
        result.dtypes[slot] = sorted(set(result.dtypes[slot]) | dtypes)
        text = f'{category}[Tensor, "{_dim_string(leaf)}"]'
    elif node.kind == "int":
        text = "int"
    elif node.kind == "none":
        return "None"
    elif node.kind == "tuple":
        text = "tuple[" + ", ".join(_render(c, result, slot) for c in node.children) + "]"
    elif node.kind == "seq":
        inner = _render(node.children[0], result, slot)
        text = f"list[{inner}]" if node.origin == "list" else f"tuple[{inner}, ...]"
    else:
        text = f"dict[str, {_render(node.children[0], result, slot)}]"
    return f"{text} | None" if node.optional else text


def _infer_function(record: FunctionRecord) -> FunctionAnnotations | None:
    calls = record.calls
    if not calls:
        return None
    result = FunctionAnnotations(record)
    result.disagreements = _check_existing(record)
    # `self` is no tensor; `*args` would need the annotation of one element, not of the tuple.
    slots = [p for p in record.params if not (p in ("self", "cls") and p == record.params[0])
             and p not in record.var_params]
    nodes: dict[str, _Node] = {}
    for slot in [*slots, "return"]:
        values = [(ci, c.result if slot == "return" else c.args[slot])
                  for ci, c in enumerate(calls) if slot == "return" or slot in c.args]
        node = _build(slot, slot, values) if values else None
        if node is not None and _leaves(node):
            nodes[slot] = node
            result.nones[slot] = sum(calls[ci].count for ci, v in values if v is None)
    if not nodes:
        return None
    occurrences = [occ for node in nodes.values() for leaf in _leaves(node)
                   for occ in _layout(leaf)]
    groups = _group(occurrences)
    _name_groups(groups, calls, record.method)
    for group in groups:
        where = [f"{o.leaf.label}{' axes' if o.variadic else ' axis'} {_axis_text(o)}"
                 for o in group.members]
        sizes = [v for v in dict.fromkeys(group.sizes.values()) if v is not _MIXED]
        result.dims.append(Dimension(group.token, group.rule, sizes, where))
    if record.existing:
        return result  # checked above; what is written stays as it is
    for slot, node in nodes.items():
        text = _render(node, result, slot)
        if slot == "return":
            result.returns = text
        else:
            result.params[slot] = text
    return result


def _axis_text(occ: _Occurrence) -> str:
    lead = next((i for i, o in enumerate(occ.leaf.tokens) if o.variadic), None)
    if occ.variadic:
        return f"{occ.position}.."
    if lead is not None and occ.position > lead:
        return str(occ.position - len(occ.leaf.tokens))  # counted from the end
    return str(occ.position)


# ---- annotations already present, checked against the calls -----------------------------------


def _check_existing(record: FunctionRecord) -> list[str]:
    found: list[str] = []
    if not record.existing:
        return found
    order = [p for p in record.params if p in record.existing]
    if "return" in record.existing:
        order.append("return")
    for call in record.calls:
        memo = _deps.Memo()
        arguments: dict[str, Any] = {"self": types.SimpleNamespace(**call.attrs)}
        arguments.update({k: v[1] for k, v in call.args.items() if v and v[0] == "i"})
        for slot in order:
            want = record.existing[slot]
            value = call.result if slot == "return" else call.args.get(slot, ())
            if value == () or (value is None and want["optional"]):
                continue
            text = f'{want["name"]}[Tensor, "{want["dims"]}"]'
            if value is None or value[0] != "t":
                problem = "got no tensor"
            elif want["dtypes"] is not None and value[2] not in want["dtypes"]:
                problem = f"got dtype {value[2]}"
            else:
                mismatch = _deps.match(_deps.parse(want["dims"]), value[1], memo, slot,
                                       arguments)
                problem = None if mismatch is None else (
                    f"got {_size_text(value[1])}: {mismatch.reason}")
            if problem is not None:
                message = (f"{slot} is annotated {text}, but a call ({call.count}x) {problem}; "
                           f"fix: correct the annotation or the caller")
                if message not in found:
                    found.append(message)
    return found[:5]
