"""shapekit.checking._dims: the pure-Python parser and matcher that explains why a shape does
not fit."""

from __future__ import annotations

import pytest

from shapekit.checking._dims import Dim, Memo, Mismatch, match, parse, render, resolve


class Layer:
    fan_in = 48
    n = 3


ARGS = {"self": Layer()}


@pytest.mark.parametrize(
    ("token", "dim"),
    [
        ("batch", Dim("batch", "named", name="batch")),
        ("3", Dim("3", "fixed", size=3)),
        ("_", Dim("_", "anon")),
        ("_time", Dim("_time", "anon")),
        ("...", Dim("...", "variadic")),
        ("*time", Dim("*time", "variadic", name="time")),
        ("*_", Dim("*_", "variadic")),
        ("#c", Dim("#c", "named", name="c", broadcast=True)),
        ("*#b", Dim("*#b", "variadic", name="b", broadcast=True)),
        ("#*b", Dim("#*b", "variadic", name="b", broadcast=True)),
        ("{self.fan_in}", Dim("{self.fan_in}", "expr")),
        ("d*2", Dim("d*2", "expr")),
        ("n+1", Dim("n+1", "expr")),
        ("#{self.n}", Dim("#{self.n}", "expr", broadcast=True)),
    ],
)
def test_parse_each_token_kind(token, dim):
    assert parse(token) == (dim,)


def test_parse_a_whole_string():
    assert [d.text for d in parse("  batch *time   {self.fan_in} ")] == [
        "batch",
        "*time",
        "{self.fan_in}",
    ]
    assert parse("") == ()


@pytest.mark.parametrize("dim_str", ["*a *b", "... *b", "*a n ..."])
def test_two_variadics_are_rejected(dim_str):
    with pytest.raises(ValueError, match="has more than one variadic axis"):
        parse(dim_str)


def test_match_binds_names_and_their_source():
    memo = Memo()
    assert match(parse("batch *time {self.fan_in}"), (32, 4, 48), memo, "x", ARGS) is None
    assert memo.sizes == {"batch": 32, "time": (4,)}
    assert memo.sources == {"batch": "x", "time": "x"}
    assert memo.render() == "batch=32 time=4"
    assert match(parse("n _ 3"), (2, 9, 3), memo, "y", ARGS) is None
    assert memo.render() == "batch=32 time=4 n=2"
    assert memo.render("y") == "n=2"


def test_memo_keeps_the_first_binding():
    memo = Memo()
    memo.bind("n", 3, "x")
    memo.bind("n", 4, "y")
    memo.bind("", 5, "z")  # anonymous axes are never bound
    assert (memo.sizes, memo.sources) == ({"n": 3}, {"n": "x"})


def test_memo_renders_variadic_runs():
    memo = Memo()
    match(parse("*b 3"), (2, 5, 3), memo, "x", {})
    match(parse("*t 3"), (3,), memo, "y", {})
    assert memo.render() == "b=2,5 t=()"


def test_size_mismatch_against_an_earlier_argument():
    memo = Memo()
    assert match(parse("n d"), (3, 4), memo, "x", {}) is None
    assert match(parse("m d"), (5, 2), memo, "y", {}) == Mismatch(
        "size", "axis 1 is 2, expected 4 = d", axis=1, name="d", expected=4, got=2
    )


def test_size_mismatch_against_self_and_expressions():
    mismatch = match(parse("batch *time {self.fan_in}"), (32, 4, 40), Memo(), "x", ARGS)
    assert mismatch == Mismatch(
        "size", "axis 2 is 40, expected 48 = fan_in", axis=2, name="48 = fan_in", expected=48,
        got=40,
    )
    memo = Memo()
    match(parse("b d"), (2, 4), memo, "x", {})
    mismatch = match(parse("b d*2"), (2, 12), memo, "out", {})
    assert mismatch.reason == "axis 1 is 12, expected 8 = d*2"
    assert match(parse("3"), (4,), Memo(), "x", {}).reason == "axis 0 is 4, expected 3"


def test_variadic_mismatch_carries_both_runs():
    memo = Memo()
    match(parse("*b 3"), (2, 5, 3), memo, "x", {})
    assert match(parse("*b 3"), (2, 4, 3), memo, "y", {}) == Mismatch(
        "size", "*b is (2, 4), expected (2, 5)", axis=0, name="b", expected=(2, 5), got=(2, 4)
    )
    assert match(parse("*b 3"), (2, 5, 4), memo, "y", {}).reason == "axis 2 is 4, expected 3"


def test_broadcast_axes():
    memo = Memo()
    assert match(parse("n d"), (4, 3), memo, "x", {}) is None
    assert match(parse("#n d"), (1, 3), memo, "y", {}) is None
    assert match(parse("#n d"), (2, 3), memo, "y", {}).reason == "axis 0 is 2, expected 4 = n"
    # A broadcast axis of size 1 binds nothing, as in jaxtyping: n is still free for z.
    memo = Memo()
    assert match(parse("#n d"), (1, 3), memo, "y", {}) is None
    assert memo.sizes == {"d": 3}
    assert match(parse("n d"), (4, 3), memo, "x", {}) is None
    # Broadcast variadic runs accept 1 where the run was bound larger.
    memo = Memo()
    match(parse("*b n"), (2, 3, 4), memo, "x", {})
    assert match(parse("*#b n"), (1, 3, 4), memo, "y", {}) is None
    assert match(parse("*b n"), (1, 3, 4), memo, "z", {}).kind == "size"


@pytest.mark.parametrize(
    ("dim_str", "shape", "reason"),
    [
        ("a b", (1, 2, 3), "3 axes, expected 2"),
        ("a b", (5,), "1 axis, expected 2"),
        ("", (2,), "1 axis, expected 0"),
        ("batch *time 3", (), "0 axes, expected at least 2"),
        ("b 3", (3,), "1 axis, expected 2"),  # not called batch: no guess about a missing batch
    ],
)
def test_rank_mismatch(dim_str, shape, reason):
    assert match(parse(dim_str), shape, Memo(), "x", {}) == Mismatch("rank", reason)


@pytest.mark.parametrize(
    ("dim_str", "shape", "reason"),
    [
        ("batch 3", (3,), "1 axis, expected 2: the batch axis is missing"),
        ("batch *time 48", (48,), "1 axis, expected at least 2: the batch axis is missing"),
        ("batch time channels", (8, 24), "2 axes, expected 3: the batch axis is missing"),
        ("batch *time", (), "0 axes, expected at least 1: the batch axis is missing"),
    ],
)
def test_batch_missing(dim_str, shape, reason):
    assert match(parse(dim_str), shape, Memo(), "x", ARGS) == Mismatch("batch-missing", reason)


def test_batch_missing_needs_the_rest_to_fit():
    """(40,) is one axis short of (batch, 48) but would not fit without the batch axis either."""
    assert match(parse("batch {self.fan_in}"), (40,), Memo(), "x", ARGS).kind == "rank"
    assert match(parse("batch 3"), (4,), Memo(), "x", {}).kind == "rank"


def test_resolve_and_render():
    memo = Memo()
    match(parse("n d"), (3, 4), memo, "x", {})
    assert render(parse("n d*2 {self.fan_in} 3 *b _ m"), memo, ARGS) == (
        "(3 = n, 8 = d*2, 48 = fan_in, 3, *b, _, m)"
    )
    assert resolve(parse("{self.fan_in}*2")[0], memo, ARGS) == (96, "96 = {self.fan_in}*2")
    assert resolve(parse("#{self.n}")[0], memo, ARGS) == (3, "3 = n")
    # What cannot be evaluated is shown as written and matches any size.
    assert resolve(parse("{self.missing}")[0], memo, ARGS) == (None, "{self.missing}")
    assert resolve(parse("k+1")[0], memo, ARGS) == (None, "k+1")
    assert match(parse("{self.missing}"), (7,), memo, "x", ARGS) is None


def test_named_sizes_and_dim_functions():
    """``rows=3`` is the size 3 with a name; ``min``, ``max`` and ``abs`` work in expressions, as
    in jaxtyping, and nothing else can be called."""
    (rows,) = parse("rows=3")
    assert (rows.kind, rows.name, rows.size) == ("fixed", "rows", 3)
    memo = Memo()
    assert match(parse("n rows=3"), (5, 4), memo, "x", {}) == Mismatch(
        "size", "axis 1 is 4, expected 3 = rows", 1, "rows", 3, 4
    )
    assert resolve(parse("min(n,2)")[0], memo, {}) == (2, "2 = min(n,2)")
    assert resolve(parse("max(n-9,0)")[0], memo, {}) == (0, "0 = max(n-9,0)")
    assert resolve(parse("len(n)")[0], memo, {}) == (None, "len(n)")
