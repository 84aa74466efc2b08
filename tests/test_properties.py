"""Property tests: every layer fed random ranks, sizes and dtypes either returns the right answer or
raises ShapeError, never a raw torch error and never a silently wrong result.

Each test states when an input is valid (the annotation plus the guards), and computes the right
output with torch; a valid input must give exactly that output, an invalid one a ShapeError.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import shapekit
from shapekit import nn

pytestmark = pytest.mark.parametrize("mode", ["always", "once"])

SETTINGS = settings(max_examples=60, deadline=None)

DTYPES = [
    torch.float16,
    torch.bfloat16,
    torch.float32,
    torch.float64,
    torch.int8,
    torch.int16,
    torch.int32,
    torch.int64,
    torch.bool,
    torch.uint8,
]
FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
INDEX_DTYPES = (torch.int8, torch.int16, torch.int32, torch.int64)


@st.composite
def tensors(draw, last: int | None = None, high: int = 4) -> torch.Tensor:
    """A tensor of random rank (0-4), sizes (0-5) and dtype; when ``last`` is given, the last axis
    is often ``last`` so that valid inputs are common. Integers are drawn from [-1, high]."""
    rank = draw(st.integers(0, 4))
    shape = draw(st.lists(st.integers(0, 5), min_size=rank, max_size=rank))
    if last is not None and shape and draw(st.booleans()):
        shape[-1] = last
    dtype = draw(st.sampled_from(DTYPES))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    if dtype in FLOATS:
        return torch.randn(shape, generator=gen).to(dtype)
    if dtype == torch.bool:
        return torch.randint(0, 2, shape, generator=gen).bool()
    low = 0 if dtype == torch.uint8 else -1
    return torch.randint(low, high + 1, shape, generator=gen, dtype=dtype)


def outcome(layer: torch.nn.Module, x: torch.Tensor) -> torch.Tensor | shapekit.ShapeError:
    """The layer's output, or the ShapeError it raised; any other exception fails the test."""
    try:
        return layer(x)
    except shapekit.ShapeError as err:
        assert str(err).count("fix: ") == 1, str(err)
        return err


def assert_outcome(result, valid: bool, expected=None) -> None:
    if not valid:
        assert isinstance(result, shapekit.ShapeError), f"invalid input was accepted: {result!r}"
        return
    assert not isinstance(result, shapekit.ShapeError), f"valid input was rejected:\n{result}"
    expected = expected()
    assert result.shape == expected.shape
    assert result.dtype == expected.dtype
    torch.testing.assert_close(result, expected, equal_nan=True)


@SETTINGS
@given(data=st.data(), fan_in=st.integers(1, 6), fan_out=st.integers(1, 6), bias=st.booleans())
def test_linear(mode, data, fan_in, fan_out, bias):
    layer = nn.Linear(fan_in, fan_out, bias=bias)
    x = data.draw(tensors(last=fan_in))
    with shapekit.checks(mode), torch.no_grad():
        result = outcome(layer, x)
        valid = x.dtype == torch.float32 and x.ndim >= 2 and x.shape[-1] == fan_in
        assert_outcome(result, valid, lambda: F.linear(x, layer.weight.T, layer.bias))
        if valid:
            assert result.shape == (*x.shape[:-1], fan_out)


@SETTINGS
@given(data=st.data(), num=st.integers(1, 6), dim=st.integers(1, 6))
def test_embedding(mode, data, num, dim):
    layer = nn.Embedding(num, dim)
    idx = data.draw(tensors(high=num))
    with shapekit.checks(mode), torch.no_grad():
        result = outcome(layer, idx)
        in_range = idx.numel() == 0 or (int(idx.min()) >= 0 and int(idx.max()) < num)
        valid = idx.dtype in INDEX_DTYPES and idx.ndim >= 1 and in_range
        assert_outcome(result, valid, lambda: F.embedding(idx.long(), layer.weight))
        if valid:
            assert result.shape == (*idx.shape, dim)


def batchnorm_oracle(layer: nn.BatchNorm1d, x: torch.Tensor) -> torch.Tensor:
    """torch's batch norm on the channels-last input seen as (N, C), N = every axis but the last."""
    flat = x.reshape(-1, layer.dim)
    if not layer.training:
        mean, var = layer.running_mean, layer.running_var
    else:
        mean = flat.mean(0)
        var = flat.var(0, correction=1 if layer.unbiased else 0)
    out = (flat - mean) / torch.sqrt(var + layer.eps) * layer.gamma + layer.beta
    return out.reshape(x.shape)


@SETTINGS
@given(data=st.data(), dim=st.integers(1, 6), training=st.booleans(), unbiased=st.booleans())
def test_batchnorm(mode, data, dim, training, unbiased):
    layer = nn.BatchNorm1d(dim, unbiased=unbiased).train(training)
    with torch.no_grad():  # non-trivial parameters and running statistics
        layer.gamma.uniform_(0.5, 2.0)
        layer.beta.normal_()
        layer.running_mean.normal_()
        layer.running_var.uniform_(0.5, 2.0)
    x = data.draw(tensors(last=dim))
    before = layer.running_mean.clone(), layer.running_var.clone()
    with shapekit.checks(mode), torch.no_grad():
        result = outcome(layer, x)
        enough = not training or (x.ndim >= 1 and x.numel() // max(x.shape[-1], 1) >= 2)
        valid = x.dtype == torch.float32 and x.ndim >= 2 and x.shape[-1] == dim and enough
        # The oracle uses the batch statistics (training) or the running ones, which the call
        # above only updated, so it can be computed after the call.
        assert_outcome(result, valid, lambda: batchnorm_oracle(layer, x))
    if not valid:  # a rejected batch must not have touched the running statistics
        torch.testing.assert_close((layer.running_mean, layer.running_var), before)


@SETTINGS
@given(data=st.data(), n=st.integers(1, 4))
def test_flatten_consecutive(mode, data, n):
    layer = nn.FlattenConsecutive(n)
    x = data.draw(tensors())
    with shapekit.checks(mode):
        result = outcome(layer, x)
        valid = x.dtype in FLOATS and x.ndim == 3 and x.shape[1] % n == 0

        def expected() -> torch.Tensor:
            B, T, C = x.shape
            out = x.reshape(B, T // n, n * C)  # (B, T/n, n*C)
            return out.squeeze(1) if T // n == 1 else out

        assert_outcome(result, valid, expected)


@SETTINGS
@given(data=st.data())
def test_tanh(mode, data):
    x = data.draw(tensors())
    with shapekit.checks(mode):
        result = outcome(nn.Tanh(), x)
        assert_outcome(result, x.dtype in FLOATS, lambda: torch.tanh(x))


@SETTINGS
@given(data=st.data(), n_embd=st.integers(1, 4), n=st.sampled_from([1, 2]))
def test_sequential(mode, data, n_embd, n):
    """A small WaveNet stack: the layers applied one by one, or a ShapeError naming the layer."""
    layers = [
        nn.Embedding(5, n_embd),
        nn.FlattenConsecutive(n),
        nn.Linear(n * n_embd, 3),
        nn.BatchNorm1d(3),
        nn.Tanh(),
    ]
    model = nn.Sequential(layers)
    idx = data.draw(tensors(high=5))
    with shapekit.checks(mode), torch.no_grad():
        result = outcome(model, idx)
        if isinstance(result, shapekit.ShapeError):
            assert str(result).startswith("layers["), str(result)
            return
        x = idx
        for layer in layers:
            x = layer(x)
        torch.testing.assert_close(result, x)
