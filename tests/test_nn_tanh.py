"""shapekit.nn.Tanh against torch.tanh (values and gradients) and its messages."""

from __future__ import annotations

import re

import pytest
import torch

import shapekit
from shapekit.nn import Tanh


def exact(message: str) -> str:
    """A ``match=`` pattern for exactly this message."""
    return "^" + re.escape(message) + "$"


@pytest.mark.parametrize("shape", [(), (5,), (32, 68), (32, 4, 68), (2, 3, 4, 5)])
def test_values_and_gradients_match_torch(shape):
    torch.manual_seed(0)
    x = (torch.randn(shape) * 3).requires_grad_()
    x_ref = x.detach().clone().requires_grad_()
    out, ref = Tanh()(x), torch.tanh(x_ref)
    assert out.shape == shape
    assert torch.equal(out, ref)
    upstream = torch.randn(shape)
    out.backward(upstream)
    ref.backward(upstream)
    assert torch.equal(x.grad, x_ref.grad)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_keeps_float_dtypes(dtype):
    x = torch.randn(3, 4, dtype=dtype)
    assert torch.equal(Tanh()(x), torch.tanh(x))


def test_no_parameters_and_repr():
    assert list(Tanh().parameters()) == []
    assert repr(Tanh()) == "Tanh()"


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.bool, torch.uint8])
def test_non_float_input_message(dtype):
    name = str(dtype).split(".")[-1]
    with pytest.raises(shapekit.ShapeError, match=exact(
        f"Tanh expected x: float (*shape), got {name} (32, 4): float dtype needed\n"
        "  fix: convert x with x.float()"
    )):
        Tanh()(torch.zeros(32, 4, dtype=dtype))
