""""once" is sound: a trusted call gets the verdict a full check ("always") gives, and its body
sees the bindings a full check makes.

What a verdict depends on is keyed: each annotated argument's class, shape and dtype (tensors,
numpy arrays, the contents of lists, tuples, dicts, deques and dataclasses), the attributes
f-string dims read, and the output's class, shape and dtype.
"""

from __future__ import annotations

import collections
import dataclasses
import re
from typing import Any

import jaxtyping
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from jaxtyping import Float
from torch import Tensor, nn

import shapekit
from shapekit import shaped


def verdict(fn, *args) -> str:
    """``"ok"``, or the message of the ShapeError the call raised."""
    try:
        fn(*args)
    except shapekit.ShapeError as err:
        return str(err)
    return "ok"


def twice_in_once(fn, before, after) -> tuple[str, str, str]:
    """The verdicts of ``fn(*before)`` twice (the second a "once" hit), then of ``fn(*after())``
    in "once" and in "always"."""
    with shapekit.checks("once"):
        first, second = verdict(fn, *before), verdict(fn, *before)
        assert first == second == "ok"
        args = after()
        once = verdict(fn, *args)
    with shapekit.checks("always"):
        always = verdict(fn, *args)
    return first, once, always


@shaped
def rows(x: Float[Any, "n 2"]) -> None:
    pass


@shaped
def batch_of(d: dict[str, Float[Tensor, " n"]]) -> None:
    pass


@shaped
def first_of(q: collections.deque[Float[Tensor, " 3"]]) -> None:
    pass


@shaped
def weights(p: Float[nn.Parameter, " n"]) -> None:
    pass


class Config:
    d = 3


@shaped
def by_config(cfg: Config, x: Float[Tensor, " {cfg.d}"]) -> None:
    pass


class Shrinks(nn.Module):
    """Returns a different shape in eval mode: the output check must see it."""

    @shaped
    def forward(self, x: Float[Tensor, " b"]) -> Float[Tensor, " b"]:
        return x if self.training else x[:1]


class Width(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.width = width

    @shaped
    def forward(self, x: Float[Tensor, "b {self.width}"]) -> Float[Tensor, " b"]:
        return x.sum(-1)


@dataclasses.dataclass
class Pair:
    x: Tensor
    y: Tensor


@shaped
def pair_sum(p: Pair, z: Float[Tensor, " n"]) -> Float[Tensor, " n"]:
    return p.x + z


def test_numpy_array_reshaped_in_place():
    a = np.ones((3, 2), dtype=np.float32)

    def reshape():
        a.shape = (2, 3)
        return (a,)

    _, once, always = twice_in_once(rows, (a,), reshape)
    assert once == always != "ok"
    assert once == (
        "rows() expected x: (n, 2), got (2, 3)\n"
        "  bound so far: n=2\n"
        "  fix: give x size 2 along axis 1"
    )


def test_tensors_inside_a_mutated_dict_and_deque():
    d = {"a": torch.ones(2)}
    q = collections.deque([torch.ones(3)])

    def mutate_dict():
        d["a"] = torch.ones(2, 2)
        return (d,)

    def mutate_deque():
        q[0] = torch.ones(4)
        return (q,)

    for fn, start, after in ((batch_of, (d,), mutate_dict), (first_of, (q,), mutate_deque)):
        _, once, always = twice_in_once(fn, start, after)
        assert once == always != "ok"


def test_parameter_annotation_then_a_plain_tensor():
    _, once, always = twice_in_once(
        weights, (nn.Parameter(torch.ones(2)),), lambda: (torch.ones(2),)
    )
    assert once == always != "ok"


def test_fstring_attributes_changed_between_calls():
    cfg, x = Config(), torch.ones(3)

    def change():
        cfg.d = 4
        return (cfg, x)

    _, once, always = twice_in_once(by_config, (cfg, x), change)
    assert once == always
    assert once.startswith("by_config() expected x: (4 = d), got (3,)")
    layer = Width(4)

    def widen():
        layer.width = 5
        return (torch.ones(2, 4),)

    _, once, always = twice_in_once(layer, (torch.ones(2, 4),), widen)
    assert once == always
    assert once.startswith("Width expected x: (b, 5 = width), got (2, 4)")


def test_output_that_depends_on_training():
    layer, x = Shrinks(), torch.ones(3)

    def to_eval():
        layer.eval()
        return (x,)

    _, once, always = twice_in_once(layer, (x,), to_eval)
    assert once == always == (
        "Shrinks expected the output: (3 = b), got (1,)\n"
        "  bound so far: b=3 (from x)\n"
        "  fix: give the output size 3 along axis 0 (b), as bound by x"
    )


def test_dataclass_batch_contents_are_keyed():
    p = Pair(torch.ones(3), torch.ones(3))

    def mutate():
        p.x = torch.ones(4)
        return (p, torch.ones(3))

    with shapekit.checks("once"):
        assert verdict(pair_sum, p, torch.ones(3)) == verdict(pair_sum, p, torch.ones(3)) == "ok"
        args = mutate()
        with pytest.raises(RuntimeError, match="must match the size"):  # torch's own error:
            pair_sum(*args)  # the key changed, so the call ran (and failed) like the first one


def test_the_body_sees_its_bindings_on_a_hit(capsys):
    seen = []

    @shaped
    def helper(y: Float[Tensor, " b"]) -> None:
        pass

    @shaped
    def outer(x: Float[Tensor, " b"]) -> None:
        seen.append((isinstance(x, Float[Tensor, " b"]), isinstance(x[:1], Float[Tensor, " b"])))
        helper(x)  # a nested checked helper shares nothing with the caller, as in jaxtyping
        jaxtyping.print_bindings()

    with shapekit.checks("once"):
        outer(torch.ones(3))
        outer(torch.ones(3))  # a hit
    assert seen == [(True, False), (True, False)]
    printed = capsys.readouterr().out
    assert printed.count("b=3") == 2


def test_a_failing_check_inside_the_body_keeps_its_own_message_and_line():
    @shaped
    def outer(x: Float[Tensor, " b"]) -> Float[Tensor, " b"]:
        inner_check(x[:1])
        return x

    @jaxtyping.jaxtyped(typechecker=__import__("beartype").beartype)
    def inner_check(y: Float[Tensor, " 3"]) -> None:
        pass

    for mode in ("always", "once"):
        with shapekit.checks(mode), pytest.raises(jaxtyping.TypeCheckError) as info:
            outer(torch.ones(3))
        lines = [entry.statement for entry in info.traceback]
        assert any("inner_check(x[:1])" in str(line) for line in lines)


# --- property test: "once" and "always" agree over random call sequences, mutations included ---

CALLS = st.lists(
    st.one_of(
        st.tuples(st.just("width"), st.integers(1, 3), st.integers(1, 3)),  # x of (2, w)
        st.tuples(st.just("set_width"), st.integers(1, 3), st.just(0)),
        st.tuples(st.just("train"), st.booleans(), st.just(0)),
        st.tuples(st.just("shrink"), st.integers(1, 3), st.just(0)),
        st.tuples(st.just("pairwise"), st.integers(1, 3), st.integers(1, 3)),
        st.tuples(st.just("array"), st.integers(1, 3), st.integers(1, 3)),
        st.tuples(st.just("param"), st.booleans(), st.integers(1, 3)),
        st.tuples(st.just("dict"), st.integers(1, 2), st.integers(1, 3)),  # d["a"] replaced
        st.tuples(st.just("deque"), st.integers(1, 2), st.integers(3, 4)),  # q[0] replaced
    ),
    min_size=1,
    max_size=25,
)


@shaped
def pairwise(x: Float[Tensor, "n d"], y: Float[Tensor, "m d"]) -> Float[Tensor, "n m"]:
    return x @ y.T


@settings(max_examples=40, deadline=None)
@given(calls=CALLS)
def test_once_agrees_with_always(calls):
    width, shrinks, array = Width(2), Shrinks(), np.ones((3, 2), dtype=np.float32)
    # One item each: beartype checks one item of a container, so "always" is deterministic here.
    batch, queue = {"a": torch.ones(2)}, collections.deque([torch.ones(3)])
    for op, a, b in calls:
        if op == "set_width":
            width.width = a
            continue
        if op == "train":
            shrinks.train(a)
            continue
        if op == "array":
            if a * b == array.size:
                array.shape = (a, b)  # in place: the same object, another shape
            fn, args = rows, (array,)
        elif op == "dict":
            batch["a"] = torch.ones(a, b) if a == 2 else torch.ones(b)  # the same dict, mutated
            fn, args = batch_of, (batch,)
        elif op == "deque":
            queue[0] = torch.ones(b) if a == 1 else torch.ones(b, dtype=torch.long)
            fn, args = first_of, (queue,)
        elif op == "width":
            fn, args = width, (torch.ones(2, a),)
        elif op == "shrink":
            fn, args = shrinks, (torch.ones(a),)
        elif op == "pairwise":
            fn, args = pairwise, (torch.ones(2, a), torch.ones(3, b))
        else:
            tensor = torch.ones(b)
            fn, args = weights, (nn.Parameter(tensor) if a else tensor,)
        with shapekit.checks("always"):
            always = verdict(fn, *args)
        with shapekit.checks("once"):
            once = verdict(fn, *args)
        assert re.sub(r"0x[0-9a-f]+", "", once) == re.sub(r"0x[0-9a-f]+", "", always), (op, a, b)


def test_output_that_depends_on_training_under_torch_compile():
    """The compiled graph of eval mode returns another shape: checked outside the graph."""
    layer = Shrinks()
    compiled = torch.compile(layer, backend="eager")
    x = torch.ones(3)
    with shapekit.checks("once"):
        assert compiled(x).shape == compiled(x).shape == (3,)
        layer.eval()
        with pytest.raises(shapekit.ShapeError, match=re.escape(
            "Shrinks expected the output: (3 = b), got (1,)"
        )):
            compiled(x)
