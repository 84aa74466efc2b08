"""``jaxtyping.PyTree`` annotations and ``?name`` dims under ``@shaped``: the verdicts of
``jaxtyped(typechecker=beartype)`` (the oracle) in "always" and "once", a "once" key that covers
the tree's structure and leaves, and messages that name the failing leaf by its tree path.

jaxtyping's PyTree walks trees with ``jax.tree_util``, so these tests need jax: the ``pytree``
extra (``pip install -e '.[pytree]'``; ``.ci/run`` installs it); without jax this file skips.
"""

from __future__ import annotations

import random

import pytest

pytest.importorskip("jax")

import torch
from beartype import beartype
from jaxtyping import Float, PyTree, jaxtyped
from torch import Tensor

import shapekit
from shapekit import shaped

# Leaves of one named structure T; "?b" is a size of its own at each leaf position of T.
Tree = PyTree[Float[Tensor, "?b c"], "T"]


def pair(x: Tree, y: Tree) -> Float[Tensor, " c"]:
    """Two trees of one structure T: leaf i of y has leaf i of x's rows; c is shared."""
    return torch.zeros(next(iter(_leaves(x))).shape[-1])


def loose(x: PyTree[Float[Tensor, "b c"]]) -> Float[Tensor, " b"]:
    """A tree of any structure whose leaves all share (b, c)."""
    return sum(leaf.sum(-1) for leaf in _leaves(x))


def mirror(x: Tree, drop: bool) -> Tree:
    """Returns a tree of x's structure (or, when ``drop``, one leaf short)."""
    if isinstance(x, dict) and drop:
        return {k: v for k, v in list(x.items())[1:]}
    return x


def _leaves(tree):
    import jax

    return jax.tree_util.tree_leaves(tree)


FUNCTIONS = [pair, loose, mirror]


def verdict(fn, *args) -> bool:
    try:
        fn(*args)
    except Exception as error:  # jaxtyping + beartype raise TypeCheckError, shapekit ShapeError
        rejected = isinstance(error, (shapekit.ShapeError, TypeError))
        if rejected or "TypeCheck" in type(error).__name__:
            return False
        raise
    return True


def _tree(rng: random.Random, c: int):
    """A small random tree: a dict, list or tuple of 1-3 float tensors (sometimes nested)."""
    count = rng.randint(1, 3)
    leaves = [torch.ones(rng.choice([1, 2, 3]), c) for _ in range(count)]
    kind = rng.choice(["dict", "list", "tuple", "nested"])
    if kind == "dict":
        return {"abc"[i]: leaf for i, leaf in enumerate(leaves)}
    if kind == "list":
        return leaves
    if kind == "tuple":
        return tuple(leaves)
    return {"a": leaves[0], "rest": leaves[1:]}


def _variant(rng: random.Random, tree):
    """The same tree, or one with a leaf of other rows, another width or another dtype."""
    import jax

    leaves, structure = jax.tree_util.tree_flatten(tree)
    change = rng.choice(["same", "same", "rows", "width", "dtype"])
    i = rng.randrange(len(leaves))
    leaves = list(leaves)
    if change == "rows":
        leaves[i] = torch.ones(leaves[i].shape[0] + 1, leaves[i].shape[1])
    elif change == "width":
        leaves[i] = torch.ones(leaves[i].shape[0], leaves[i].shape[1] + 1)
    elif change == "dtype":
        leaves[i] = leaves[i].long()
    return jax.tree_util.tree_unflatten(structure, leaves)


def _calls(seed: int) -> list[tuple]:
    rng = random.Random(seed)
    calls = []
    for _ in range(40):
        x = _tree(rng, rng.choice([2, 3]))
        shape = rng.choice(["pair", "loose", "mirror"])
        if shape == "pair":
            y = _variant(rng, x) if rng.random() < 0.7 else _tree(rng, 2)
            calls.append((pair, x, y))
        elif shape == "loose":
            calls.append((loose, _variant(rng, x)))
        else:
            calls.append((mirror, x, rng.random() < 0.3))
    return calls


@pytest.mark.parametrize("mode", ["always", "once"])
@pytest.mark.parametrize("seed", range(6))
def test_verdicts_match_jaxtyping_over_random_call_sequences(mode, seed):
    peers = {fn: jaxtyped(typechecker=beartype)(fn) for fn in FUNCTIONS}
    mine = {fn: shaped(fn) for fn in FUNCTIONS}
    calls = _calls(seed)
    with shapekit.checks(mode):
        for fn, *args in calls + calls:  # twice: the second pass is answered from "once"'s memory
            assert verdict(mine[fn], *args) == verdict(peers[fn], *args), (fn.__name__, args)


def test_once_key_covers_a_leaf_changed_in_place():
    checked = shaped(pair)
    x = {"a": torch.ones(2, 3), "b": torch.ones(4, 3)}
    y = {"a": torch.ones(2, 3), "b": torch.ones(4, 3)}
    with shapekit.checks("once"):
        checked(x, y)
        checked(x, y)  # trusted now
        y["b"] = torch.ones(5, 3)  # the same dict, a leaf of other rows
        with pytest.raises(shapekit.ShapeError, match=r"y\['b'\]"):
            checked(x, y)
        y["b"] = torch.ones(4, 3)
        checked(x, y)


def test_once_key_covers_the_structure():
    checked = shaped(pair)
    x = {"a": torch.ones(2, 3), "b": torch.ones(4, 3)}
    y = {"a": torch.ones(2, 3), "b": torch.ones(4, 3)}
    with shapekit.checks("once"):
        checked(x, y)
        del y["b"]
        with pytest.raises(shapekit.ShapeError, match="tree structure T"):
            checked(x, y)
        y["c"] = torch.ones(4, 3)  # two leaves again, under another key: another structure
        with pytest.raises(shapekit.ShapeError, match="tree structure T"):
            checked(x, y)


def test_once_keys_the_output_tree():
    checked = shaped(mirror)
    x = {"a": torch.ones(2, 3), "b": torch.ones(4, 3)}
    with shapekit.checks("once"):
        checked(x, False)
        checked(x, False)
        with pytest.raises(shapekit.ShapeError, match="the output"):
            checked(x, True)


def test_body_sees_tree_bindings_on_a_trusted_call():
    seen = []

    @shaped
    def f(x: Tree) -> None:
        seen.append(isinstance(torch.ones(7, 3), Float[Tensor, "c c"]))

    x = [torch.ones(2, 3)]
    with shapekit.checks("once"):
        f(x)
        f(x)  # trusted: c=3 still bound in the body, so (7, 3) is not "c c"
    assert seen == [False, False]


@pytest.mark.parametrize("mode", ["always", "once"])
def test_message_names_the_leaf_path_axis_and_fix(mode):
    checked = shaped(pair)
    x = {"a": torch.ones(2, 3), "b": torch.ones(4, 3)}
    y = {"a": torch.ones(2, 3), "b": torch.ones(5, 3)}
    with shapekit.checks(mode), pytest.raises(shapekit.ShapeError) as info:
        checked(x, y)
    assert str(info.value) == (
        "pair() expected y['b']: (4 = b@T1, 3 = c), got (5, 3)\n"
        "  bound so far: b@T0=2 c=3 (from x['a']) b@T1=4 (from x['b'])\n"
        "  fix: give y['b'] size 4 along axis 0 (b@T1), as bound by x['b']"
    )


@pytest.mark.parametrize("mode", ["always", "once"])
def test_message_for_a_shared_dim_in_a_nested_leaf(mode):
    checked = shaped(loose)
    x = {"a": torch.ones(2, 3), "rest": [torch.ones(2, 3), torch.ones(2, 4)]}
    with shapekit.checks(mode), pytest.raises(shapekit.ShapeError) as info:
        checked(x)
    assert str(info.value) == (
        "loose() expected x['rest'][1]: (2 = b, 3 = c), got (2, 4)\n"
        "  bound so far: b=2 c=3 (from x['a'])\n"
        "  fix: give x['rest'][1] size 3 along axis 1 (c), as bound by x['a']"
    )


@pytest.mark.parametrize("mode", ["always", "once"])
def test_message_for_another_structure(mode):
    checked = shaped(pair)
    x = {"a": torch.ones(2, 3), "b": torch.ones(4, 3)}
    with shapekit.checks(mode), pytest.raises(shapekit.ShapeError) as info:
        checked(x, [torch.ones(2, 3), torch.ones(4, 3)])
    assert str(info.value) == (
        "pair() expected y: the tree structure T, as x has it: {'a': *, 'b': *}, got [*, *]\n"
        "  bound so far: b@T0=2 c=3 (from x['a']) b@T1=4 (from x['b'])\n"
        "  fix: give y the same containers, keys and number of leaves as x (both are annotated"
        " with the structure T)"
    )


def test_question_mark_dims_parse():
    from shapekit.checking import _dims

    dims = _dims.parse("?b *?t c")
    assert [(d.kind, d.name, d.treepath) for d in dims] == [
        ("named", "b", True), ("variadic", "t", True), ("named", "c", False)]
