"""Tests for the ``shapes`` fixture's object: dims bound across calls, messages, batch-size sweeps.

The oracles: the exact message text (where each size was bound, pinned to the line that bound it),
torch's own modules for correct batch behaviour, and the batch-of-one bugs written out by hand.
"""

from __future__ import annotations

import doctest
import sys
from pathlib import Path

import pytest
import torch

from shapekit import ShapeError
from shapekit.pytest import _batch as _pytest_batch
from shapekit.pytest import _shapes as _pytest_shapes
from shapekit.pytest._shapes import Shapes

ROOT = Path(__file__).resolve().parents[1]
HERE = "tests/test_pytest_shapes.py"  # locations are shown relative to the working folder


@pytest.fixture(autouse=True)
def _in_project_root(monkeypatch):
    monkeypatch.chdir(ROOT)


def line() -> int:
    """The caller's line number, so pinned messages survive edits above them."""
    return sys._getframe(1).f_lineno


def test_doctests():
    for module in (_pytest_shapes, _pytest_batch):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0 and result.attempted > 0


def test_check_binds_dims_and_returns_its_argument():
    shapes = Shapes()
    x = torch.zeros(4, 8, 3)
    assert shapes.check(x, "batch time channels") is x
    assert shapes.sizes == {"batch": 4, "time": 8, "channels": 3}
    assert shapes["time"] == 8
    shapes.check(torch.zeros(4, 3), "batch channels")
    shapes.check(torch.zeros(4, 6), "batch 2*channels")  # expressions of bound names
    shapes.check(torch.zeros(7, 4, 8), "_ *rest")
    assert shapes["rest"] == (4, 8)


def test_mismatch_says_expected_got_and_where_each_dim_was_bound():
    shapes = Shapes()
    logits = torch.zeros(4, 8, 27)
    shapes.check(logits, "batch time vocab"); first = line()  # noqa: E702
    targets = torch.zeros(5, 8)
    second = line() + 2
    with pytest.raises(ShapeError) as info:
        shapes.check(targets, "batch time")
    assert str(info.value) == (
        f"shapes.check at {HERE}:{second} expected targets: (4 = batch, 8 = time), got (5, 8)\n"
        f"  bound so far: batch=4 time=8 vocab=27 (from logits at {HERE}:{first})\n"
        f"  fix: give targets size 4 along axis 0 (batch), as bound by logits at {HERE}:{first}"
    )


def test_a_failed_check_binds_nothing():
    shapes = Shapes()
    shapes.check(torch.zeros(4, 3), "batch channels")
    with pytest.raises(ShapeError):
        shapes.check(torch.zeros(4, 5, 2), "batch time channels")
    assert "time" not in shapes.sizes
    shapes.check(torch.zeros(4, 6, 3), "batch time channels")
    assert shapes["time"] == 6


def test_names_come_from_the_call_or_the_assignment():
    shapes = Shapes()
    shapes.check(torch.zeros(2, 3), "n d")
    with pytest.raises(ShapeError, match=r"expected out: \(2 = n, 3 = d\), got \(2, 4\)"):
        out = shapes.check(torch.zeros(2, 4), "n d")  # noqa: F841
    with pytest.raises(ShapeError, match=r"expected y\.T: "):
        y = torch.zeros(4, 2)
        shapes.check(y.T, "n d")
    with pytest.raises(ShapeError, match=r"expected pred: "):
        shapes.check(torch.zeros(3, 3), "n d", name="pred")


def test_rank_and_batch_missing_messages():
    shapes = Shapes()
    shapes.check(torch.zeros(32, 8), "batch time")
    with pytest.raises(ShapeError) as info:
        shapes.check(torch.zeros(8), "batch time", name="x")
    assert "got (8,): 1 axis, expected 2: the batch axis is missing" in str(info.value)
    assert "fix: keep the batch axis when picking one example: x[[7]] or x[7:8]" in str(info.value)
    with pytest.raises(ShapeError) as info:
        shapes.check(torch.zeros(32, 8, 2), "batch time", name="x")
    assert str(info.value).endswith("fix: give x 2 axes (batch time), or fix the pattern")


def test_variadic_mismatch_names_the_bound_axes():
    shapes = Shapes()
    shapes.check(torch.zeros(2, 4, 8), "b *space", name="a")
    with pytest.raises(ShapeError, match=r"give c the axes \(4, 8\) for \*space, as bound by a"):
        shapes.check(torch.zeros(2, 4, 9), "b *space", name="c")


def test_not_an_array_says_so():
    with pytest.raises(ShapeError, match=r"expected xs: an array of shape \(n, d\), got list"):
        Shapes().check([[1.0]], "n d", name="xs")


# --- batch_sizes --------------------------------------------------------------------------------


class SqueezeAll(torch.nn.Module):
    """One score per example, squeezed with no dim: a batch of one loses its batch axis."""

    def __init__(self) -> None:
        super().__init__()
        self.head = torch.nn.Linear(3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x).squeeze()


class SoftmaxOverBatch(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.head = torch.nn.Linear(3, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x).softmax(dim=0)  # over the batch, not over the classes


class LectureBatchNorm(torch.nn.Module):
    """The lecture's from-scratch BatchNorm statistics (Bessel-corrected variance): NaN on one."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - x.mean(0, keepdim=True)) / (x.var(0, keepdim=True) + 1e-5).sqrt()


def make(b: int) -> torch.Tensor:
    return torch.randn(b, 3, generator=torch.Generator().manual_seed(b))


def test_batch_sizes_passes_correct_models_and_returns_the_outputs():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.BatchNorm1d(8), torch.nn.Tanh())
    outputs = Shapes().batch_sizes(model.eval(), make)
    assert {b: tuple(out.shape) for b, out in outputs.items()} == {1: (1, 8), 2: (2, 8), 7: (7, 8)}
    torch.testing.assert_close(outputs[7], model(make(7)))
    Shapes().batch_sizes(model.train(), make, sizes=(2, 5))  # training mode, more than one example


def test_batch_sizes_catches_squeeze_dropping_the_batch_axis():
    with pytest.raises(ShapeError) as info:
        Shapes().batch_sizes(SqueezeAll().eval(), make)
    message = str(info.value)
    assert "expected output: (1, ...) with the batch axis first as in the input (1, 3), got ()" in (
        message
    )
    assert "fix: a squeeze() with no dim drops the batch axis of a batch of one" in message
    assert f"batch_sizes(SqueezeAll) at {HERE}" in message


@pytest.mark.filterwarnings(r"ignore:var\(\):UserWarning")  # torch warns of the NaN itself
def test_batch_sizes_catches_statistics_of_one_example():
    with pytest.raises(ShapeError) as info:
        Shapes().batch_sizes(LectureBatchNorm(), make, sizes=(2, 1))
    assert "expected output: finite values, got NaN or inf at batch size 1" in str(info.value)
    assert "call model.eval() before single examples" in str(info.value)


def test_batch_sizes_catches_examples_mixed_across_the_batch():
    torch.manual_seed(0)
    with pytest.raises(ShapeError) as info:
        Shapes().batch_sizes(SoftmaxOverBatch().eval(), make, sizes=(1, 7))
    assert "expected output[0] of a batch of 7 to equal the output for example 0 alone" in str(
        info.value
    )
    assert "a softmax or normalisation over dim 0" in str(info.value)


def test_batch_sizes_notes_the_batch_size_on_errors_from_the_model():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4)).train()
    with pytest.raises(ValueError, match="Expected more than 1 value per channel") as info:
        Shapes().batch_sizes(model, make)
    assert any("raised at batch size 1" in note for note in info.value.__notes__)


def test_batch_sizes_checks_tuple_outputs_and_inputs():
    def two_heads(x, scale):
        return x * scale, x.sum()  # the second output has no batch axis

    with pytest.raises(ShapeError, match=r"expected output\[1\]: \(1, \.\.\.\)"):
        Shapes().batch_sizes(two_heads, lambda b: (torch.ones(b, 3), 2.0))


def test_batch_sizes_rejects_inputs_that_ignore_the_size():
    with pytest.raises(ShapeError, match=r"expected make_input\(1\) to return a batch of 1"):
        Shapes().batch_sizes(torch.nn.Identity(), lambda b: torch.ones(4, 3))
    with pytest.raises(ValueError, match=r"expected positive ints"):
        Shapes().batch_sizes(torch.nn.Identity(), make, sizes=(0, 2))
