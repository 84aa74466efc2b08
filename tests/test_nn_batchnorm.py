"""shapekit.nn.BatchNorm1d against torch.nn.BatchNorm1d (outputs, gradients, running statistics,
eval mode) and against the lecture's formula, plus its messages."""

from __future__ import annotations

import re

import pytest
import torch

import shapekit
from shapekit.nn import BatchNorm1d, Linear, Sequential


def exact(message: str) -> str:
    """A ``match=`` pattern for exactly this message."""
    return "^" + re.escape(message) + "$"


def pair(C: int, **kwargs) -> tuple[BatchNorm1d, torch.nn.BatchNorm1d]:
    """Our layer (torch's normalisation) and torch's, with the same random gamma and beta."""
    ours = BatchNorm1d(C, unbiased=False, **kwargs)
    theirs = torch.nn.BatchNorm1d(C, **kwargs)
    with torch.no_grad():
        ours.gamma.uniform_(0.5, 2.0)
        ours.beta.normal_()
        theirs.weight.copy_(ours.gamma)
        theirs.bias.copy_(ours.beta)
    return ours, theirs


def to_torch_layout(x: torch.Tensor) -> torch.Tensor:
    """(B, L, C) channels-last, ours -> (B, C, L), torch's; 2-D (B, C) is the same for both."""
    return x.transpose(1, 2) if x.ndim == 3 else x


@pytest.mark.parametrize("shape", [(32, 4, 68), (32, 68)])
@pytest.mark.parametrize("kwargs", [{}, {"eps": 1e-3, "momentum": 0.25}])
def test_matches_torch_over_training_steps_then_eval(shape, kwargs):
    torch.manual_seed(0)
    ours, theirs = pair(shape[-1], **kwargs)
    for _ in range(4):
        x = torch.randn(shape) * 3 + 1  # statistics far from the initial running (0, 1)
        x_ours = x.clone().requires_grad_()
        x_theirs = to_torch_layout(x).clone().requires_grad_()
        out_ours = ours(x_ours)
        out_theirs = theirs(x_theirs)
        torch.testing.assert_close(out_ours, to_torch_layout(out_theirs))

        upstream = torch.randn(shape)
        out_ours.backward(upstream)
        out_theirs.backward(to_torch_layout(upstream))
        torch.testing.assert_close(x_ours.grad, to_torch_layout(x_theirs.grad))
        torch.testing.assert_close(ours.gamma.grad, theirs.weight.grad)
        torch.testing.assert_close(ours.beta.grad, theirs.bias.grad)
        torch.testing.assert_close(ours.running_mean, theirs.running_mean)
        torch.testing.assert_close(ours.running_var, theirs.running_var)
        ours.zero_grad()
        theirs.zero_grad()

    ours.eval()
    theirs.eval()
    x = torch.randn(shape)
    torch.testing.assert_close(ours(x), to_torch_layout(theirs(to_torch_layout(x))))
    running = ours.running_mean.clone(), ours.running_var.clone()
    ours(x)
    assert torch.equal(ours.running_mean, running[0])  # eval leaves the statistics alone
    assert torch.equal(ours.running_var, running[1])


def test_statistics_over_every_axis_but_the_last():
    """A 4-D input (B, T1, T2, C) is normalised like torch's (N, C) with N = B*T1*T2."""
    torch.manual_seed(0)
    ours, theirs = pair(5)
    x = torch.randn(3, 4, 2, 5)
    torch.testing.assert_close(ours(x), theirs(x.reshape(-1, 5)).reshape(x.shape))
    torch.testing.assert_close(ours.running_var, theirs.running_var)
    assert ours.running_mean.shape == ours.running_var.shape == (5,)


def test_unbiased_is_the_lectures_formula():
    """The lecture's layer normalises by the Bessel-corrected batch variance."""
    torch.manual_seed(0)
    bn = BatchNorm1d(68)  # unbiased=True is the default
    with torch.no_grad():
        bn.gamma.uniform_(0.5, 2.0)
        bn.beta.normal_()
    gamma = bn.gamma.detach().clone().requires_grad_()
    beta = bn.beta.detach().clone().requires_grad_()
    running_mean, running_var = torch.zeros(68), torch.ones(68)
    for _ in range(3):
        x = torch.randn(32, 4, 68) * 2 - 1
        x_ours = x.clone().requires_grad_()
        x_ref = x.clone().requires_grad_()
        out = bn(x_ours)

        xmean = x_ref.mean((0, 1), keepdim=True)
        xvar = x_ref.var((0, 1), keepdim=True, correction=1)
        ref = gamma * (x_ref - xmean) / torch.sqrt(xvar + 1e-5) + beta
        with torch.no_grad():
            running_mean = 0.9 * running_mean + 0.1 * xmean.flatten()
            running_var = 0.9 * running_var + 0.1 * xvar.flatten()

        torch.testing.assert_close(out, ref)
        upstream = torch.randn(out.shape)
        out.backward(upstream)
        ref.backward(upstream)
        torch.testing.assert_close(x_ours.grad, x_ref.grad)
        torch.testing.assert_close(bn.gamma.grad, gamma.grad)
        torch.testing.assert_close(bn.beta.grad, beta.grad)
        torch.testing.assert_close(bn.running_mean, running_mean)
        torch.testing.assert_close(bn.running_var, running_var)
        bn.zero_grad()
        gamma.grad = beta.grad = None

    bn.eval()
    x = torch.randn(5, 68)
    expected = bn.gamma * (x - running_mean) / torch.sqrt(running_var + 1e-5) + bn.beta
    torch.testing.assert_close(bn(x), expected)


def test_unbiased_and_biased_differ_only_in_the_normalising_variance():
    torch.manual_seed(0)
    x = torch.randn(4, 3)
    biased, unbiased = BatchNorm1d(3, unbiased=False), BatchNorm1d(3)
    ratio = unbiased(x) / biased(x)  # sqrt((var_biased + eps) / (var_unbiased + eps))
    torch.testing.assert_close(ratio, torch.full_like(ratio, (3 / 4) ** 0.5), atol=1e-4, rtol=0)
    torch.testing.assert_close(biased.running_var, unbiased.running_var)


def test_parameters_buffers_state_dict_and_modes():
    bn = BatchNorm1d(7)
    assert [n for n, _ in bn.named_parameters()] == ["gamma", "beta"]
    assert torch.equal(bn.gamma, torch.ones(7)) and torch.equal(bn.beta, torch.zeros(7))
    bn(torch.randn(8, 3, 7) + 2)
    state = bn.state_dict()
    assert {k: tuple(v.shape) for k, v in state.items()} == {
        "gamma": (7,),
        "beta": (7,),
        "running_mean": (7,),
        "running_var": (7,),
    }
    copy = BatchNorm1d(7)
    copy.load_state_dict(state)
    assert torch.equal(copy.running_mean, bn.running_mean)
    assert torch.equal(copy.running_var, bn.running_var)
    x = torch.randn(2, 7)
    assert torch.equal(copy.eval()(x), bn.eval()(x))
    assert bn.train() is bn and bn.training
    assert repr(bn) == "BatchNorm1d(7, eps=1e-05, momentum=0.1, unbiased=True)"


def test_trains_with_sgd():
    torch.manual_seed(0)
    bn = BatchNorm1d(3)
    opt = torch.optim.SGD(bn.parameters(), lr=0.5)
    target_scale, target_shift = torch.tensor([2.0, 0.5, 1.0]), torch.tensor([1.0, -1.0, 0.0])
    for _ in range(50):
        x = torch.randn(64, 3)
        xhat = (x - x.mean(0)) / x.std(0)
        loss = ((bn(x) - (target_scale * xhat + target_shift)) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.testing.assert_close(bn.gamma.detach(), target_scale, atol=2e-2, rtol=0)
    torch.testing.assert_close(bn.beta.detach(), target_shift, atol=2e-2, rtol=0)


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((0,), {}, "BatchNorm1d(dim=0): dim must be a positive int"),
        ((6.0,), {}, "BatchNorm1d(dim=6.0): dim must be a positive int"),
        ((6,), {"momentum": 1.5}, "BatchNorm1d(momentum=1.5): momentum must be in [0, 1]"),
        *(
            ((6,), {"eps": eps}, f"BatchNorm1d(eps={eps!r}): eps must be > 0 (a channel that is "
             "constant over the batch has variance 0, and x / sqrt(0 + eps) needs eps > 0); the "
             "default is 1e-5")
            for eps in (-1e-5, 0.0, float("nan"))
        ),
    ],
)
def test_constructor_validates(args, kwargs, message):
    with pytest.raises(ValueError, match=exact(message)):
        BatchNorm1d(*args, **kwargs)


ONE_EXAMPLE_FIX = (
    "  fix: call model.eval() before feeding a single example (eval uses the running statistics), "
    "or train with a batch larger than 1"
)


@pytest.mark.parametrize(("shape", "got"), [((1, 68), "(1, 68)"), ((1, 1, 68), "(1, 1, 68)")])
def test_training_on_one_example_message_and_eval_fix(shape, got):
    bn = BatchNorm1d(68)
    with pytest.raises(shapekit.ShapeError, match=exact(
        f"BatchNorm1d expected x: more than one value per channel in training mode, got {got}: "
        "the batch statistics of one value are undefined (variance NaN)\n" + ONE_EXAMPLE_FIX
    )):
        bn(torch.randn(shape))
    assert torch.equal(bn.running_var, torch.ones(68))  # the failed call changed nothing
    x = torch.randn(shape)
    out = bn.eval()(x)  # the fix the message names works
    torch.testing.assert_close(out, x / (1 + 1e-5) ** 0.5)


def test_one_example_check_runs_with_checks_off():
    with shapekit.checks("off"), pytest.raises(shapekit.ShapeError, match="training mode"):
        BatchNorm1d(4)(torch.randn(1, 4))


def test_torch_layout_message():
    """torch's BatchNorm1d wants (B, C, L); this one is channels-last (B, L, C)."""
    bn = BatchNorm1d(68)
    x = torch.randn(32, 68, 4)
    with pytest.raises(shapekit.ShapeError, match=exact(
        "BatchNorm1d expected x: (batch, *time, 68 = dim), got (32, 68, 4)\n"
        "  bound so far: batch=32 time=68\n"
        "  fix: x looks like torch's (batch, channels, length) layout; this BatchNorm1d is "
        "channels-last (batch, length, channels): pass x.transpose(1, 2)"
    )):
        bn(x)
    assert bn(x.transpose(1, 2)).shape == (32, 4, 68)


def test_channel_count_message_alone_and_in_a_model():
    with pytest.raises(shapekit.ShapeError, match=exact(
        "BatchNorm1d expected x: (batch, *time, 68 = dim), got (32, 40)\n"
        "  bound so far: batch=32 time=()\n"
        "  fix: the layer before produces 40 features; build BatchNorm1d(40)"
    )):
        BatchNorm1d(68)(torch.randn(32, 40))
    model = Sequential([Linear(10, 40), BatchNorm1d(68)])
    with pytest.raises(shapekit.ShapeError, match=exact(
        "layers[1] BatchNorm1d expected x: (batch, *time, 68 = dim), got (32, 40)\n"
        "  bound so far: batch=32 time=() (from layers[0] Linear output)\n"
        "  fix: the layer before produces 40 features; build BatchNorm1d(40) "
        "or change Linear(..., fan_out)"
    )):
        model(torch.randn(32, 10))


def test_batch_missing_message():
    with pytest.raises(shapekit.ShapeError, match=exact(
        "BatchNorm1d expected x: (batch, *time, 68 = dim), got (68,): 1 axis, expected at least 2: "
        "the batch axis is missing\n"
        "  fix: keep the batch axis when picking one example: Xtr[[7]] or Xtr[7:8], not Xtr[7] "
        "(or add it back with x[None])"
    )):
        BatchNorm1d(68).eval()(torch.randn(68))


@pytest.mark.parametrize(
    ("dtype", "message"),
    [
        (
            torch.float64,
            "BatchNorm1d expected x: float32 (the dtype of the layer's parameters), "
            "got float64 (32, 68)\n"
            "  fix: convert the input with x.float(), or the model with model.to(torch.float64)",
        ),
        (
            torch.int64,
            "BatchNorm1d expected x: float (batch, *time, 68 = dim), got int64 (32, 68): "
            "float dtype needed\n"
            "  fix: convert x with x.float()",
        ),
    ],
)
def test_dtype_messages(dtype, message):
    with pytest.raises(shapekit.ShapeError, match=exact(message)):
        BatchNorm1d(68)(torch.zeros(32, 68, dtype=dtype))


def lecture_batchnorm(x, gamma, beta, running_mean, running_var, eps, momentum):
    """The lecture's training-mode layer, out of place: (output, new running mean, new running
    var), every statistic over all axes but the last."""
    dims = tuple(range(x.ndim - 1))
    xmean = x.mean(dims, keepdim=True)
    xvar = x.var(dims, keepdim=True)
    out = gamma * ((x - xmean) / torch.sqrt(xvar + eps)) + beta
    new_mean = (1 - momentum) * running_mean + momentum * xmean.flatten()
    new_var = (1 - momentum) * running_var + momentum * xvar.flatten()
    return out, new_mean, new_var


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_bit_identical_to_the_lecture_while_its_settings_and_buffers_change(dtype):
    """The layer keeps what its training calls need between calls (buffer views, eps and the
    decay as tensors); every change that must be noticed is: the input's rank, eps, momentum,
    buffers replaced, loaded or converted. Each step equals the lecture's formula bit for bit."""
    torch.manual_seed(0)
    bn = BatchNorm1d(5).to(dtype)
    with torch.no_grad():
        bn.gamma.uniform_(0.5, 2.0)
        bn.beta.normal_()

    def step(shape):
        x = (torch.randn(shape) * 3 + 1).to(bn.gamma.dtype)
        want = lecture_batchnorm(x, bn.gamma, bn.beta, bn.running_mean, bn.running_var, bn.eps,
                                 bn.momentum)
        got = bn(x)
        assert got.dtype == bn.gamma.dtype
        assert torch.equal(got, want[0])
        assert torch.equal(bn.running_mean, want[1]) and torch.equal(bn.running_var, want[2])

    step((8, 3, 5))
    step((8, 3, 5))
    step((16, 5))  # another rank: other statistic shapes
    bn.eps, bn.momentum = 1e-3, 0.25
    step((16, 5))
    bn.running_mean = torch.full((5,), 2.0, dtype=dtype)  # a new buffer, not the old one
    step((8, 3, 5))
    assert torch.equal(bn.state_dict()["running_mean"], bn.running_mean)
    bn.load_state_dict({k: v + 1 for k, v in bn.state_dict().items()})  # copied in place
    step((8, 3, 5))
    if dtype != torch.float64:
        bn.double()  # new buffers of another dtype
        step((8, 3, 5))
    assert list(bn.state_dict()) == ["gamma", "beta", "running_mean", "running_var"]


def test_functional_call_in_training_updates_the_given_buffers_only():
    from torch.func import functional_call

    torch.manual_seed(0)
    bn = BatchNorm1d(4)
    x = torch.randn(6, 3, 4)
    bn(x)  # the layer's own buffers take a step first
    own = {k: v.clone() for k, v in bn.state_dict().items()}
    given = {"running_mean": torch.zeros(4), "running_var": torch.ones(4)}
    functional_call(bn, given, (x,))
    _, want_mean, want_var = lecture_batchnorm(x, bn.gamma, bn.beta, torch.zeros(4),
                                               torch.ones(4), 1e-5, 0.1)
    assert torch.equal(given["running_mean"], want_mean)
    assert torch.equal(given["running_var"], want_var)
    assert all(torch.equal(v, own[k]) for k, v in bn.state_dict().items())
    bn(x)  # and its own buffers again
    assert not torch.equal(bn.running_mean, own["running_mean"])


def test_torch_func_grad_through_a_training_call_equals_autograd():
    from torch.func import functional_call, grad

    torch.manual_seed(0)
    bn, x = BatchNorm1d(4), torch.randn(6, 3, 4)
    params = {k: v.detach().clone() for k, v in bn.named_parameters()}

    def loss(p):
        buffers = {"running_mean": torch.zeros(4), "running_var": torch.ones(4)}
        return functional_call(bn, {**p, **buffers}, (x,)).pow(2).mul(torch.arange(4.0)).sum()

    by_func = grad(loss)(params)
    (bn(x).pow(2).mul(torch.arange(4.0)).sum()).backward()
    assert torch.equal(by_func["gamma"], bn.gamma.grad)
    assert torch.equal(by_func["beta"], bn.beta.grad)


@pytest.mark.parametrize("clone", ["deepcopy", "pickle"])
def test_a_copy_updates_its_own_buffers_only(clone):
    import copy
    import io

    torch.manual_seed(0)
    bn, x = BatchNorm1d(4), torch.randn(6, 3, 4)
    bn(x)  # the original has made what its training calls keep
    if clone == "deepcopy":
        other = copy.deepcopy(bn)
    else:
        buffer = io.BytesIO()
        torch.save(bn, buffer)
        buffer.seek(0)
        other = torch.load(buffer, weights_only=False)
    before = {k: v.clone() for k, v in bn.state_dict().items()}
    want = lecture_batchnorm(x * 5, other.gamma, other.beta, other.running_mean,
                             other.running_var, other.eps, other.momentum)
    assert torch.equal(other(x * 5), want[0])
    assert torch.equal(other.running_mean, want[1]) and torch.equal(other.running_var, want[2])
    assert all(torch.equal(v, before[k]) for k, v in bn.state_dict().items())
