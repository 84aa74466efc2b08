"""@shaped's messages for each failure class: the argument (or element), the axis, expected vs
got, the bindings so far, and a fix with a real dtype name. Pinned in every mode that checks."""

from __future__ import annotations

import re
from typing import Any

import jaxtyping
import numpy as np
import pytest
import torch
from jaxtyping import Float, Shaped
from torch import Tensor

import shapekit
from shapekit import shaped

pytestmark = pytest.mark.parametrize("mode", ["always", "once"])


@pytest.fixture(autouse=True)
def _in_mode(mode):
    with shapekit.checks(mode):
        yield


def message(fn, *args, **kwargs) -> str:
    with pytest.raises(shapekit.ShapeError) as info:
        fn(*args, **kwargs)
    return str(info.value)


# (dtype category, a tensor it rejects, the fix's cast)
DTYPE_CASES = [
    ("Float", torch.int64, "x.float()"),
    ("Float16", torch.float32, "x.to(torch.float16)"),
    ("BFloat16", torch.float32, "x.to(torch.bfloat16)"),
    ("Float32", torch.float64, "x.to(torch.float32)"),
    ("Float64", torch.float32, "x.to(torch.float64)"),
    ("Int", torch.float32, "x.long()"),
    ("Int8", torch.int64, "x.to(torch.int8)"),
    ("Int16", torch.int64, "x.to(torch.int16)"),
    ("Int32", torch.int64, "x.to(torch.int32)"),
    ("Int64", torch.int32, "x.to(torch.int64)"),
    ("UInt", torch.int64, "x.to(torch.uint8)"),
    ("UInt8", torch.int64, "x.to(torch.uint8)"),
    ("Integer", torch.float32, "x.long()"),
    ("Bool", torch.int64, "x.bool()"),
    ("Complex", torch.float32, "x.to(torch.complex64)"),
    ("Complex64", torch.float32, "x.to(torch.complex64)"),
    ("Complex128", torch.float32, "x.to(torch.complex128)"),
    ("Inexact", torch.int64, "x.to(torch.float32)"),
    ("Real", torch.complex64, "x.to(torch.float32)"),
    ("Num", torch.bool, "x.to(torch.float32)"),
]


@pytest.mark.parametrize(("category", "dtype", "cast"), DTYPE_CASES)
def test_every_dtype_category_names_a_real_dtype(mode, category, dtype, cast):
    annotation = getattr(jaxtyping, category)[Tensor, " n"]

    def take(x):
        return x

    take.__annotations__ = {"x": annotation}
    checked = shaped(take)
    x = torch.zeros(2, dtype=dtype)
    text = message(checked, x)
    assert text.endswith(f"  fix: convert x with {cast}"), text
    got = str(dtype).split(".")[-1]
    assert f"got {got} (2,): " in text and "dtype needed" in text
    converted = eval(cast, {"torch": torch, "x": x})  # the fix works
    assert checked(converted) is converted


def test_numpy_arrays_under_any():
    @shaped
    def rows(x: Float[Any, "n 2"]) -> None:
        pass

    rows(np.ones((3, 2), dtype=np.float32))
    assert message(rows, np.ones((3, 4), dtype=np.float32)) == (
        "rows() expected x: (n, 2), got (3, 4)\n"
        "  bound so far: n=3\n"
        "  fix: give x size 2 along axis 1"
    )
    assert message(rows, np.ones((3, 2), dtype=np.int64)) == (
        "rows() expected x: float (n, 2), got int64 (3, 2): float dtype needed\n"
        "  fix: convert x with x.float()"
    )


def test_expressions_and_variadics():
    @shaped
    def shift(x: Float[Tensor, " n"]) -> Float[Tensor, " n-1"]:
        return x

    assert message(shift, torch.ones(4)) == (
        "shift() expected the output: (3 = n-1), got (4,)\n"
        "  bound so far: n=4 (from x)\n"
        "  fix: give the output size 3 along axis 0 (n-1)"
    )

    @shaped
    def pool(x: Shaped[Tensor, "*batch c"], y: Shaped[Tensor, "*batch"]) -> None:
        pass

    assert message(pool, torch.ones(2, 3, 4), torch.ones(2, 4)) == (
        "pool() expected y: (*batch), got (2, 4)\n"
        "  bound so far: batch=2,3 c=4 (from x)\n"
        "  fix: give y the axes (2, 3) for *batch, starting at axis 0, as bound by x"
    )


def test_star_args_name_the_element():
    @shaped
    def cat(*xs: Float[Tensor, " n"]) -> Float[Tensor, " k"]:
        return torch.cat(xs)

    assert message(cat, torch.ones(3), torch.ones(3), torch.ones(2)) == (
        "cat() expected xs[2]: (3 = n), got (2,)\n"
        "  bound so far: n=3 (from xs[0])\n"
        "  fix: give xs[2] size 3 along axis 0 (n), as bound by xs[0]"
    )


def test_the_failing_line_stays_in_the_traceback():
    @shaped
    def outer(x: Float[Tensor, " b"]) -> None:
        inner(x[:1])

    @shaped
    def inner(y: Float[Tensor, " 3"]) -> None:
        pass

    with pytest.raises(shapekit.ShapeError, match=re.escape("inner() expected y: (3), got (1,)")
                       ) as info:
        outer(torch.ones(3))
    assert any("inner(x[:1])" in str(entry.statement) for entry in info.traceback)


def test_named_sizes_and_dim_functions():
    @shaped
    def named(x: Float[Tensor, "batch rows=3"]) -> None:
        pass

    named(torch.ones(2, 3))
    assert message(named, torch.ones(2, 4)) == (
        "named() expected x: (batch, 3 = rows), got (2, 4)\n"
        "  bound so far: batch=2\n"
        "  fix: give x size 3 along axis 1 (rows)"
    )

    @shaped
    def clipped(x: Float[Tensor, " n"], y: Float[Tensor, " min(n,2)"]) -> None:
        pass

    clipped(torch.ones(5), torch.ones(2))
    assert message(clipped, torch.ones(5), torch.ones(3)) == (
        "clipped() expected y: (2 = min(n,2)), got (3,)\n"
        "  bound so far: n=5 (from x)\n"
        "  fix: give y size 2 along axis 0 (min(n,2))"
    )


def test_union_members_and_list_elements():
    @shaped
    def either(x: Float[Tensor, " n"] | Float[Tensor, "n n"]) -> None:
        pass

    either(torch.ones(2))
    either(torch.ones(2, 2))
    assert message(either, torch.ones(2, 3)) == (
        "either() expected x: (n) or (n, n), got (2, 3)\n"
        "  fix: give x one of the annotated shapes: (n) or (n, n)"
    )

    @shaped
    def first(xs: list[Float[Tensor, " n"]]) -> None:
        pass

    assert message(first, [torch.ones(2, 2)]) == (
        "first() expected xs[0]: (n), got (2, 2): 2 axes, expected 1\n"
        "  fix: reshape xs[0] to the annotated number of axes, or fix the annotation"
    )

    @shaped
    def named_batch(batch: dict[str, Float[Tensor, " n"]]) -> None:
        pass

    assert message(named_batch, {"x": torch.ones(2, dtype=torch.long)}) == (
        "named_batch() expected batch['x']: float (n), got int64 (2,): float dtype needed\n"
        "  fix: convert batch['x'] with batch['x'].float()"
    )


def test_an_annotation_that_cannot_be_evaluated_leaves_the_others_checked(tmp_path):
    source = (
        "from __future__ import annotations\n"
        "from typing import TYPE_CHECKING\n"
        "from jaxtyping import Float\n"
        "from torch import Tensor\n"
        "from shapekit import shaped\n"
        "if TYPE_CHECKING:\n"
        "    from somewhere import Config\n"
        "@shaped\n"
        "def scale(x: Float[Tensor, 'n 3'], cfg: Config) -> Float[Tensor, 'n 3']:\n"
        "    return x\n"
    )
    namespace: dict = {}
    exec(compile(source, str(tmp_path / "late.py"), "exec"), namespace)
    scale = namespace["scale"]
    assert scale(torch.ones(2, 3), object()).shape == (2, 3)
    assert message(scale, torch.ones(2, 4), object()) == (
        "scale() expected x: (n, 3), got (2, 4)\n"
        "  bound so far: n=2\n"
        "  fix: give x size 3 along axis 1"
    )
