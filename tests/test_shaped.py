"""@shaped on users' functions and forward methods: what passes, and the exact message when not.

This module's annotations are objects; tests/shaped_future_helpers.py has string annotations.
"""

import functools
import importlib.util
import re
from pathlib import Path

import pytest
import torch
from jaxtyping import Bool, Float, Int, Shaped
from torch import Tensor

import shapekit
from shapekit import shaped


def exact(message: str) -> str:
    """A ``match=`` pattern for exactly this message."""
    return "^" + re.escape(message) + "$"


@pytest.fixture(autouse=True)
def always():
    with shapekit.checks("always"):
        yield


@functools.cache
def future_helpers():
    """tests/shaped_future_helpers.py, whose annotations are all strings."""
    path = Path(__file__).with_name("shaped_future_helpers.py")
    spec = importlib.util.spec_from_file_location("shaped_future_helpers", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@shaped
def pairwise(x: Float[Tensor, "n d"], y: Float[Tensor, "m d"]) -> Float[Tensor, "n m"]:
    return x @ y.T


@shaped
def transpose_by_mistake(x: Float[Tensor, "b d"]) -> Float[Tensor, "b d"]:
    return x.T


@shaped
def masked(
    x: Float[Tensor, "b d"], mask: Float[Tensor, " b"] | None = None, scale: float = 1.0
) -> Float[Tensor, "b d"]:
    return x * scale if mask is None else x * mask[:, None] * scale


@shaped
def dot(x: Float[Tensor, "*batch 3"], y: Float[Tensor, "*batch 3"]) -> Float[Tensor, "*batch"]:
    return (x * y).sum(-1)


@shaped
def last_sum(x: Float[Tensor, "... 3"]) -> Float[Tensor, "..."]:
    return x.sum(-1)


@shaped
def add(x: Float[Tensor, "n d"], y: Float[Tensor, "#n d"]) -> Float[Tensor, "n d"]:
    return x + y


@shaped
def add_bias_first(
    bias: Float[Tensor, "#n d"], x: Float[Tensor, "n d"], w: Float[Tensor, " n"]
) -> Float[Tensor, "n d"]:
    return (x + bias) * w[:, None]


@shaped
def rgb(x: Float[Tensor, "b 3"]) -> Float[Tensor, "b 3"]:
    return x


@shaped
def doubled(x: Float[Tensor, "b d"]) -> Float[Tensor, "b d*2"]:
    return torch.cat([x, x, x], -1)  # one copy too many


@shaped
def first_column(x: Shaped[Tensor, "n _"]) -> Shaped[Tensor, " n"]:
    return x[:, 0]


@shaped
def lookup(idx: Int[Tensor, " n"], mask: Bool[Tensor, " n"]) -> Int[Tensor, " n"]:
    return idx * mask


@shaped
def split(x: Float[Tensor, " n"]) -> tuple[Float[Tensor, " n"], Float[Tensor, " n"]]:
    return x, x[:2]


class Proj(torch.nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.width = width

    @shaped
    def forward(self, x: Float[Tensor, "batch {self.width}"]) -> Float[Tensor, " batch"]:
        return x.sum(-1)

    @shaped
    def project(self, x: Float[Tensor, "batch {self.width}"]) -> Float[Tensor, " batch"]:
        return x.sum(-1)


def test_passes_matching_shapes_and_keeps_the_function():
    assert pairwise(torch.ones(4, 3), torch.ones(5, 3)).shape == (4, 5)
    assert pairwise.__name__ == "pairwise"
    assert pairwise.__wrapped__.__name__ == "pairwise"


def test_binding_across_arguments():
    with pytest.raises(shapekit.ShapeError, match=exact(
        "pairwise() expected y: (m, 3 = d), got (5, 2)\n"
        "  bound so far: m=5 n=4 d=3 (from x)\n"
        "  fix: give y size 3 along axis 1 (d), as bound by x"
    )) as info:
        pairwise(torch.ones(4, 3), torch.ones(5, 2))
    err = info.value
    assert isinstance(err, RuntimeError)  # code catching torch's shape errors keeps working
    assert (err.expected, err.got, err.where) == ("y: (m, 3 = d)", "(5, 2)", "pairwise()")


def test_keyword_arguments_bind_in_signature_order():
    with pytest.raises(shapekit.ShapeError, match=exact(
        "pairwise() expected y: (m, 3 = d), got (5, 2)\n"
        "  bound so far: m=5 n=4 d=3 (from x)\n"
        "  fix: give y size 3 along axis 1 (d), as bound by x"
    )):
        pairwise(y=torch.ones(5, 2), x=torch.ones(4, 3))


def test_return_value():
    with pytest.raises(shapekit.ShapeError, match=exact(
        "transpose_by_mistake() expected the output: (3 = b, 4 = d), got (4, 3)\n"
        "  bound so far: b=3 d=4 (from x)\n"
        "  fix: give the output size 3 along axis 0 (b), as bound by x"
    )):
        transpose_by_mistake(torch.ones(3, 4))
    with pytest.raises(shapekit.ShapeError, match=exact(
        "doubled() expected the output: (2 = b, 8 = d*2), got (2, 12)\n"
        "  bound so far: b=2 d=4 (from x)\n"
        "  fix: give the output size 8 along axis 1 (d*2)"
    )):
        doubled(torch.ones(2, 4))


def test_tensor_inside_a_returned_tuple():
    with pytest.raises(shapekit.ShapeError, match=exact(
        "split() expected the output: tuple[Float[Tensor, 'n'], Float[Tensor, 'n']], "
        "got a tensor of shape (2,) inside it\n"
        "  bound so far: n=3 (from x)\n"
        "  fix: return tensors whose shapes match the annotation with the sizes bound so far"
    )):
        split(torch.ones(3))


def test_optional_argument():
    x = torch.ones(3, 4)
    assert torch.equal(masked(x), x)
    assert torch.equal(masked(x, torch.zeros(3)), torch.zeros(3, 4))
    with pytest.raises(shapekit.ShapeError, match=exact(
        "masked() expected mask: (3 = b), got (4,)\n"
        "  bound so far: b=3 d=4 (from x)\n"
        "  fix: give mask size 3 along axis 0 (b), as bound by x"
    )):
        masked(x, torch.ones(4))
    with pytest.raises(shapekit.ShapeError, match=exact(
        "masked() expected mask: (3 = b), got list\n"
        "  bound so far: b=3 d=4 (from x)\n"
        "  fix: pass a torch.Tensor as mask (torch.as_tensor(...) converts lists and arrays)"
    )):
        masked(x, mask=[1.0, 1.0, 1.0])


def test_non_tensor_arguments():
    with pytest.raises(shapekit.ShapeError, match=exact(
        "masked() expected scale: float, got str\n"
        "  bound so far: b=3 d=4 (from x)\n"
        "  fix: pass scale as float, not str"
    )):
        masked(torch.ones(3, 4), scale="2")
    with pytest.raises(shapekit.ShapeError, match=exact(
        "pairwise() expected y: (m, 3 = d), got int\n"
        "  bound so far: n=4 d=3 (from x)\n"
        "  fix: pass a torch.Tensor as y (torch.as_tensor(...) converts lists and arrays)"
    )):
        pairwise(torch.ones(4, 3), 5)


def test_dtypes():
    assert lookup(torch.arange(3), torch.tensor([True, False, True])).tolist() == [0, 0, 2]
    with pytest.raises(shapekit.ShapeError, match=exact(
        "lookup() expected idx: integer (n), got float32 (3,): integer dtype needed\n"
        "  fix: convert idx with idx.long()"
    )):
        lookup(torch.ones(3), torch.ones(3, dtype=torch.bool))
    with pytest.raises(shapekit.ShapeError, match=exact(
        "lookup() expected mask: bool (3 = n), got int64 (3,): bool dtype needed\n"
        "  bound so far: n=3 (from idx)\n"
        "  fix: convert mask with mask.bool()"
    )):
        lookup(torch.arange(3), torch.ones(3, dtype=torch.long))


def test_python_errors_are_left_alone():
    with pytest.raises(TypeError, match="missing a required argument: 'y'"):
        pairwise(torch.ones(4, 3))

    @shaped
    def broken(x: Float[Tensor, " n"]) -> Float[Tensor, " n"]:
        raise ValueError("inside")

    with pytest.raises(ValueError, match=exact("inside")):
        broken(torch.ones(3))


def test_variadic_dims():
    assert dot(torch.ones(2, 5, 3), torch.ones(2, 5, 3)).shape == (2, 5)
    assert dot(torch.ones(3), torch.ones(3)).shape == ()
    with pytest.raises(shapekit.ShapeError, match=exact(
        "dot() expected y: (*batch, 3), got (2, 4, 3)\n"
        "  bound so far: batch=2,5 (from x)\n"
        "  fix: give y the axes (2, 5) for *batch, starting at axis 0, as bound by x"
    )):
        dot(torch.ones(2, 5, 3), torch.ones(2, 4, 3))
    with pytest.raises(shapekit.ShapeError, match=exact(
        "dot() expected y: (*batch, 3), got (2, 5, 4)\n"
        "  bound so far: batch=2,5 (from x)\n"
        "  fix: give y size 3 along axis 2"
    )):
        dot(torch.ones(2, 5, 3), torch.ones(2, 5, 4))


def test_ellipsis():
    assert last_sum(torch.ones(3)).shape == ()
    assert last_sum(torch.ones(2, 4, 3)).shape == (2, 4)
    with pytest.raises(shapekit.ShapeError, match=exact(
        "last_sum() expected x: (..., 3), got (2, 2, 4)\n  fix: give x size 3 along axis 2"
    )):
        last_sum(torch.ones(2, 2, 4))


def test_broadcastable_dims():
    assert add(torch.ones(4, 3), torch.ones(1, 3)).shape == (4, 3)
    assert add(torch.ones(4, 3), torch.ones(4, 3)).shape == (4, 3)
    with pytest.raises(shapekit.ShapeError, match=exact(
        "add() expected y: (4 = n, 3 = d), got (2, 3)\n"
        "  bound so far: n=4 d=3 (from x)\n"
        "  fix: give y size 4 along axis 0 (n), as bound by x"
    )):
        add(torch.ones(4, 3), torch.ones(2, 3))
    # A broadcast axis of size 1 binds nothing: n comes from x, and w is the culprit.
    with pytest.raises(shapekit.ShapeError, match=exact(
        "add_bias_first() expected w: (4 = n), got (5,)\n"
        "  bound so far: d=3 (from bias) n=4 (from x)\n"
        "  fix: give w size 4 along axis 0 (n), as bound by x"
    )):
        add_bias_first(torch.ones(1, 3), torch.ones(4, 3), torch.ones(5))


def test_fixed_sizes_and_anonymous_dims():
    with pytest.raises(shapekit.ShapeError, match=exact(
        "rgb() expected x: (b, 3), got (2, 4)\n"
        "  bound so far: b=2\n"
        "  fix: give x size 3 along axis 1"
    )):
        rgb(torch.ones(2, 4))
    assert first_column(torch.ones(3, 7, dtype=torch.long)).shape == (3,)
    with pytest.raises(shapekit.ShapeError, match=exact(
        "first_column() expected x: (n, _), got (3,): 1 axis, expected 2\n"
        "  fix: reshape x to the annotated number of axes, or fix the annotation"
    )):
        first_column(torch.ones(3))


def test_module_forward_with_self_attribute_dims():
    proj = Proj(48)
    assert proj(torch.ones(2, 48)).shape == (2,)
    with pytest.raises(shapekit.ShapeError, match=exact(
        "Proj expected x: (batch, 48 = width), got (2, 40)\n"
        "  bound so far: batch=2\n"
        "  fix: give x size 48 along axis 1 (width)"
    )):
        proj(torch.ones(2, 40))
    with pytest.raises(shapekit.ShapeError, match=exact(
        "Proj.project() expected x: (batch, 48 = width), got (2, 40)\n"
        "  bound so far: batch=2\n"
        "  fix: give x size 48 along axis 1 (width)"
    )):
        proj.project(torch.ones(2, 40))


def test_module_batch_missing_and_other_rank():
    with pytest.raises(shapekit.ShapeError, match=exact(
        "Proj expected x: (batch, 48 = width), got (48,): 1 axis, expected 2: "
        "the batch axis is missing\n"
        "  fix: keep the batch axis when picking one example: Xtr[[7]] or Xtr[7:8], not Xtr[7] "
        "(or add it back with x[None])"
    )):
        Proj(48)(torch.ones(48))
    with pytest.raises(shapekit.ShapeError, match=exact(
        "Proj expected x: (batch, 48 = width), got (40,): 1 axis, expected 2\n"
        "  fix: reshape x to the annotated number of axes, or fix the annotation"
    )):
        Proj(48)(torch.ones(40))


def test_module_fix_hook():
    """A module's _shape_fix words the fix; returning None falls back to the generic one."""

    class Picky(Proj):
        def _shape_fix(self, failure):
            if failure.kind == "size":
                return f"build Picky({failure.mismatch.got})"
            return None

    with pytest.raises(shapekit.ShapeError, match=re.escape("\n  fix: build Picky(40)") + "$"):
        Picky(48)(torch.ones(2, 40))
    with pytest.raises(shapekit.ShapeError, match=re.escape("\n  fix: reshape x to the annotated")):
        Picky(48)(torch.ones(40))


def test_string_annotations_from_future_import():
    helpers = future_helpers()
    q, k = torch.randn(2, 3, 4), torch.randn(2, 5, 4)
    assert helpers.scores(q, k).shape == (2, 3, 5)
    assert helpers.scores(q, k, torch.ones(3, 5, dtype=torch.bool)).shape == (2, 3, 5)
    with pytest.raises(shapekit.ShapeError, match=exact(
        "scores() expected mask: (3 = tq, 5 = tk), got (5, 3)\n"
        "  bound so far: batch=2 tq=3 d=4 (from q) tk=5 (from k)\n"
        "  fix: give mask size 3 along axis 0 (tq), as bound by q"
    )):
        helpers.scores(q, k, torch.ones(5, 3, dtype=torch.bool))
    with pytest.raises(shapekit.ShapeError, match=exact(
        "scores() expected k: (2 = batch, tk, 4 = d), got (3, 5, 4)\n"
        "  bound so far: batch=2 tq=3 d=4 (from q)\n"
        "  fix: give k size 2 along axis 0 (batch), as bound by q"
    )):
        helpers.scores(q, k=torch.randn(3, 5, 4))


def test_string_annotations_on_a_module():
    head = future_helpers().Head(32, 16)
    assert head(torch.randn(4, 8, 32)).shape == (4, 8, 16)
    with pytest.raises(shapekit.ShapeError, match=exact(
        "Head expected x: (batch, time, 32 = n_embd), got (4, 8, 24)\n"
        "  bound so far: batch=4 time=8\n"
        "  fix: give x size 32 along axis 2 (n_embd)"
    )):
        head(torch.randn(4, 8, 24))
    head.key = torch.nn.Linear(32, 8, bias=False)  # now returns 8 features, not head_size=16
    with pytest.raises(shapekit.ShapeError, match=exact(
        "Head expected the output: (4 = batch, 8 = time, 16 = head_size), got (4, 8, 8)\n"
        "  bound so far: batch=4 time=8 (from x)\n"
        "  fix: give the output size 16 along axis 2 (head_size)"
    )):
        head(torch.randn(4, 8, 32))
