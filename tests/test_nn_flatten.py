"""shapekit.nn.FlattenConsecutive against explicit torch.cat of strided slices and view()."""

from __future__ import annotations

import copy
import re

import pytest
import torch
from einops import rearrange

import shapekit
from shapekit.nn import Embedding, FlattenConsecutive, Sequential


def exact(message: str) -> str:
    """A ``match=`` pattern for exactly this message."""
    return "^" + re.escape(message) + "$"


@pytest.mark.parametrize(("n", "T"), [(2, 8), (4, 8), (3, 6), (1, 5)])
def test_matches_cat_of_strided_slices_and_view(n, T):
    """The lecture's explicit form: step i of each group is x[:, i::n, :], laid side by side."""
    torch.manual_seed(0)
    x = torch.randn(4, T, 10)
    out = FlattenConsecutive(n)(x)
    by_cat = torch.cat([x[:, i::n, :] for i in range(n)], dim=2)  # (B, T/n, n*C)
    assert out.shape == (4, T // n, n * 10)
    assert torch.equal(out, by_cat)
    assert torch.equal(out, x.view(4, T // n, n * 10))


def test_lecture_shapes_and_squeeze():
    x = torch.randn(32, 8, 10)
    assert FlattenConsecutive(2)(x).shape == (32, 4, 20)
    assert FlattenConsecutive(8)(x).shape == (32, 80)  # a time axis of 1 is squeezed away
    assert torch.equal(FlattenConsecutive(8)(x), x.view(32, -1))
    assert FlattenConsecutive(1)(torch.randn(3, 1, 5)).shape == (3, 5)
    h = FlattenConsecutive(2)(FlattenConsecutive(2)(FlattenConsecutive(2)(x)))
    assert h.shape == (32, 80)
    assert torch.equal(h, x.view(32, 80))  # three pairings in a row keep the original order


def test_gradient_is_the_inverse_reshape():
    x = torch.randn(2, 6, 3, requires_grad=True)
    out = FlattenConsecutive(3)(x)
    upstream = torch.randn(out.shape)
    out.backward(upstream)
    assert torch.equal(x.grad, upstream.reshape(2, 6, 3))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_keeps_float_dtypes(dtype):
    assert FlattenConsecutive(2)(torch.randn(2, 4, 3, dtype=dtype)).dtype == dtype


def test_no_parameters_and_repr():
    layer = FlattenConsecutive(2)
    assert list(layer.parameters()) == []
    assert layer.state_dict() == {}
    assert repr(layer) == "FlattenConsecutive(n=2)"


@pytest.mark.parametrize("n", [0, -2, 2.0, True, "2"])
def test_constructor_validates(n):
    message = f"FlattenConsecutive(n={n!r}): n must be a positive int"
    with pytest.raises(ValueError, match=exact(message)):
        FlattenConsecutive(n)


def test_time_not_divisible_message():
    with pytest.raises(shapekit.ShapeError, match=exact(
        "FlattenConsecutive expected x: (batch, time, channels) with time a multiple of n=3, "
        "got (32, 8, 24): time=8 is not a multiple of 3\n"
        "  fix: use FlattenConsecutive(n) with n one of 1, 2, 4, 8, or a block_size that is a "
        "multiple of 3"
    )):
        FlattenConsecutive(3)(torch.randn(32, 8, 24))


def test_time_not_divisible_in_a_model():
    model = Sequential([Embedding(27, 24), FlattenConsecutive(2)])
    with pytest.raises(shapekit.ShapeError, match=exact(
        "layers[1] FlattenConsecutive expected x: (batch, time, channels) with time a multiple of "
        "n=2, got (32, 7, 24): time=7 is not a multiple of 2\n"
        "  input: layers[0] Embedding output\n"
        "  fix: use FlattenConsecutive(n) with n one of 1, 7, or a block_size that is a multiple "
        "of 2"
    )):
        model(torch.zeros(32, 7, dtype=torch.long))


def test_batch_missing_message():
    """Xtr[7] is (8,); embedded it is (8, 24), and FlattenConsecutive is the first to notice."""
    model = Sequential([Embedding(27, 24), FlattenConsecutive(2)])
    Xtr = torch.zeros(100, 8, dtype=torch.long)
    with pytest.raises(shapekit.ShapeError, match=exact(
        "layers[1] FlattenConsecutive expected x: (batch, time, channels), got (8, 24): "
        "2 axes, expected 3: the batch axis is missing\n"
        "  input: layers[0] Embedding output\n"
        "  fix: the model input (8,) has no batch axis, so every layer after it is one axis "
        "short; pick one example with Xtr[[7]] or Xtr[7:8] (a batch of one), not Xtr[7]"
    )):
        model(Xtr[7])
    assert model(Xtr[[7]]).shape == model(Xtr[7:8]).shape == (1, 4, 48)


def test_other_rank_and_dtype_messages():
    with pytest.raises(shapekit.ShapeError, match=exact(
        "FlattenConsecutive expected x: (batch, time, channels), got (32, 8, 24, 2): "
        "4 axes, expected 3\n"
        "  fix: reshape x to the annotated number of axes, or fix the annotation"
    )):
        FlattenConsecutive(2)(torch.randn(32, 8, 24, 2))
    with pytest.raises(shapekit.ShapeError, match=exact(
        "FlattenConsecutive expected x: float (batch, time, channels), got int64 (32, 8, 24): "
        "float dtype needed\n"
        "  fix: convert x with x.float()"
    )):
        FlattenConsecutive(2)(torch.zeros(32, 8, 24, dtype=torch.long))


@pytest.mark.parametrize(("n", "T"), [(2, 8), (8, 8), (4, 8), (1, 3)])
def test_equals_einops_and_is_a_view(n, T):
    layer = FlattenConsecutive(n)
    for seed in range(3):
        x = torch.randn(5, T, 6, generator=torch.Generator().manual_seed(seed))
        expected = rearrange(x, "b (t n) c -> b t (n c)", n=n)
        if n == T:
            expected = expected.squeeze(1)
        out = layer(x)
        assert out.shape == expected.shape and torch.equal(out, expected)
        assert out.data_ptr() == x.data_ptr()  # a view of x, never a copy


def test_a_non_contiguous_input_is_copied_in_the_right_order():
    layer = FlattenConsecutive(2)
    x = torch.randn(3, 4, 8).transpose(1, 2)  # (3, 8, 4), not contiguous
    assert torch.equal(layer(x), rearrange(x, "b (t n) c -> b t (n c)", n=2))


def test_gradient_of_a_batch_is_the_inverse_reshape():
    layer = FlattenConsecutive(2)
    x = torch.randn(2, 4, 3, requires_grad=True)
    upstream = torch.randn(2, 2, 6)
    layer(x).backward(upstream)
    assert torch.equal(x.grad, upstream.reshape(2, 4, 3))


def test_any_batch_size_no_state_and_a_copy_works():
    layer = FlattenConsecutive(2)
    for batch in range(1, 20):
        assert layer(torch.randn(batch, 4, 3)).shape == (batch, 2, 6)
    assert layer.state_dict() == {}
    assert torch.equal(copy.deepcopy(layer)(torch.ones(2, 4, 3)), torch.ones(2, 2, 6))
