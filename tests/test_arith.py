"""shapekit._arith and its users against the lecture's two-step update, bit for bit."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from shapekit import nn
from shapekit._arith import add_scaled_
from shapekit._train import sgd_update

# Sizes that leave a remainder past the vectorised loop (27, 648, ...) and ones that do not.
SHAPES = [(27, 24), (48, 128), (128,), (256, 128), (128, 27), (27,), (7,), (3, 5), (1,), (0,)]


@settings(max_examples=200, deadline=None)
@given(
    shape=st.sampled_from(SHAPES),
    scale=st.floats(-1, 1, allow_nan=False, allow_subnormal=False),
    seed=st.integers(0, 2**16),
    dtype=st.sampled_from([torch.float32, torch.float64, torch.float16, torch.bfloat16]),
)
def test_add_scaled_equals_multiply_then_add(shape, scale, seed, dtype):
    gen = torch.Generator().manual_seed(seed)
    target = torch.randn(shape, generator=gen).to(dtype)
    source = (torch.randn(shape, generator=gen) * 10 ** (seed % 7 - 4)).to(dtype)
    expected = target.clone()
    expected += scale * source  # the lecture's p.data += -lr * p.grad
    got = [target.clone()]
    add_scaled_(got, [source], scale)
    assert torch.equal(got[0], expected)


@pytest.mark.parametrize("threads", [1, 2])
def test_sgd_update_equals_the_lectures_loop(threads):
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(0)
        params = [torch.nn.Parameter(torch.randn(s)) for s in SHAPES]
        copies = [p.detach().clone() for p in params]
        for p in params:
            p.grad = torch.randn(p.shape) * 0.01
        params[3].grad = None  # a parameter the loss did not reach is left alone
        for rate in (0.1, 0.01):
            sgd_update(params, rate)
            for c, p in zip(copies, params, strict=True):
                if p.grad is not None:
                    c += -rate * p.grad
        for c, p in zip(copies, params, strict=True):
            assert torch.equal(c, p.detach())
    finally:
        torch.set_num_threads(before)


def test_sgd_update_of_nothing_is_a_no_op():
    sgd_update([], 0.1)
    p = torch.nn.Parameter(torch.ones(2))
    sgd_update([p], 0.1)  # no gradient yet
    assert torch.equal(p.detach(), torch.ones(2))


@pytest.mark.parametrize("unbiased", [True, False])
@pytest.mark.parametrize("shape", [(32, 4, 68), (32, 68), (5, 3, 7)])
def test_batchnorm_running_statistics_equal_the_lectures_formula(shape, unbiased):
    torch.manual_seed(1)
    bn = nn.BatchNorm1d(shape[-1], momentum=0.1, unbiased=unbiased)
    mean, var = bn.running_mean.clone(), bn.running_var.clone()
    for _ in range(5):
        x = torch.randn(shape) * 3 + 1
        bn(x)
        dims = tuple(range(x.ndim - 1))
        mean = (1 - 0.1) * mean + 0.1 * x.mean(dims)  # the lecture's update, out of place
        var = (1 - 0.1) * var + 0.1 * x.var(dims)
    assert torch.equal(bn.running_mean, mean)
    assert torch.equal(bn.running_var, var)
