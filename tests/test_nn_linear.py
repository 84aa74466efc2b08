"""shapekit.nn.Linear against torch (F.linear values and gradients), its init and its messages."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F

import shapekit
from shapekit.nn import Embedding, Linear, Sequential


def exact(message: str) -> str:
    """A ``match=`` pattern for exactly this message."""
    return "^" + re.escape(message) + "$"


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(32, 48), (32, 4, 48), (2, 3, 4, 48)])
def test_values_and_gradients_match_torch(shape, bias):
    torch.manual_seed(0)
    layer = Linear(48, 16, bias=bias)
    with torch.no_grad():
        if bias:
            layer.bias.normal_()  # non-zero, so a dropped bias would show
    x = torch.randn(shape, requires_grad=True)
    out = layer(x)

    x_ref = x.detach().clone().requires_grad_()
    w_ref = layer.weight.detach().clone().requires_grad_()
    b_ref = layer.bias.detach().clone().requires_grad_() if bias else None
    ref = F.linear(x_ref, w_ref.T, b_ref)  # torch keeps the weight as (fan_out, fan_in)

    assert out.shape == (*shape[:-1], 16)
    torch.testing.assert_close(out, ref)
    upstream = torch.randn(out.shape)
    out.backward(upstream)
    ref.backward(upstream)
    torch.testing.assert_close(x.grad, x_ref.grad)
    torch.testing.assert_close(layer.weight.grad, w_ref.grad)
    if bias:
        torch.testing.assert_close(layer.bias.grad, b_ref.grad)
    else:
        assert layer.bias is None


def test_parameters_and_init():
    layer = Linear(1000, 500)
    assert layer.weight.shape == (1000, 500)  # the lecture's (fan_in, fan_out), torch's transpose
    assert layer.bias.shape == (500,)
    assert torch.equal(layer.bias, torch.zeros(500))
    assert layer.weight.std().item() == pytest.approx(1000**-0.5, rel=0.02)
    assert layer.weight.mean().item() == pytest.approx(0.0, abs=1e-3)
    assert [name for name, _ in Linear(3, 2, bias=False).named_parameters()] == ["weight"]


def test_init_uses_the_lectures_random_draws():
    """Linear(a, b) draws exactly torch.randn(a, b) / a**0.5 and nothing else, so a model built
    after torch.manual_seed(42) holds the lecture's numbers, and later draws are not shifted."""
    torch.manual_seed(42)
    layer = Linear(30, 200)
    after_layer = torch.randn(5)
    torch.manual_seed(42)
    weight = torch.randn(30, 200) / 30**0.5
    after_weight = torch.randn(5)
    assert torch.equal(layer.weight.detach(), weight)
    assert torch.equal(after_layer, after_weight)


def test_trains_with_sgd():
    torch.manual_seed(0)
    layer = Linear(3, 1)
    true_w = torch.tensor([[1.0], [-2.0], [0.5]])
    x = torch.randn(64, 3)
    y = x @ true_w + 0.3
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    weight_before = layer.weight.detach().clone()
    losses = []
    for step in range(200):
        loss = F.mse_loss(layer(x), y)
        opt.zero_grad()
        loss.backward()
        if step == 0:
            expected_first = weight_before - 0.1 * layer.weight.grad
        opt.step()
        if step == 0:
            torch.testing.assert_close(layer.weight.detach(), expected_first)
        losses.append(loss.item())
    assert losses[-1] < 1e-4 < losses[0]
    torch.testing.assert_close(layer.weight.detach(), true_w, atol=1e-2, rtol=0)
    torch.testing.assert_close(layer.bias.detach(), torch.tensor([0.3]), atol=1e-2, rtol=0)


def test_state_dict_round_trip():
    torch.manual_seed(0)
    layer = Linear(5, 3)
    with torch.no_grad():
        layer.bias.normal_()
    state = layer.state_dict()
    assert {k: tuple(v.shape) for k, v in state.items()} == {"weight": (5, 3), "bias": (3,)}
    copy = Linear(5, 3)
    copy.load_state_dict(state)
    x = torch.randn(4, 5)
    assert torch.equal(copy(x), layer(x))
    assert list(Linear(5, 3, bias=False).state_dict()) == ["weight"]


def test_train_eval_and_repr():
    layer = Linear(5, 3)
    x = torch.randn(2, 5)
    out = layer(x)
    assert layer.eval() is layer and not layer.training
    assert torch.equal(layer(x), out)  # no train/eval difference
    assert repr(layer) == "Linear(fan_in=5, fan_out=3, bias=True)"
    assert repr(Linear(5, 3, bias=False)) == "Linear(fan_in=5, fan_out=3, bias=False)"


def test_float64_model_takes_float64_input():
    """The dtype message's second fix, model.to(torch.float64), really works."""
    layer = Linear(4, 2).to(torch.float64)
    assert layer(torch.randn(3, 4, dtype=torch.float64)).dtype == torch.float64


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((0, 3), "Linear(fan_in=0): fan_in must be a positive int"),
        ((3, -1), "Linear(fan_out=-1): fan_out must be a positive int"),
        ((3.0, 2), "Linear(fan_in=3.0): fan_in must be a positive int"),
        ((True, 2), "Linear(fan_in=True): fan_in must be a positive int"),
    ],
)
def test_constructor_validates(args, message):
    with pytest.raises(ValueError, match=exact(message)):
        Linear(*args)


def test_last_axis_size_message():
    layer = Linear(48, 128)
    with pytest.raises(shapekit.ShapeError, match=exact(
        "Linear expected x: (batch, *time, 48 = fan_in), got (32, 4, 40)\n"
        "  bound so far: batch=32 time=4\n"
        "  fix: the layer before produces 40 features; build Linear(40, ...)"
    )):
        layer(torch.randn(32, 4, 40))
    with pytest.raises(shapekit.ShapeError, match=exact(
        "Linear expected x: (batch, *time, 48 = fan_in), got (32, 40)\n"
        "  bound so far: batch=32 time=()\n"
        "  fix: the layer before produces 40 features; build Linear(40, ...)"
    )):
        layer(torch.randn(32, 40))


def test_batch_missing_message():
    with pytest.raises(shapekit.ShapeError, match=exact(
        "Linear expected x: (batch, *time, 48 = fan_in), got (48,): 1 axis, expected at least 2: "
        "the batch axis is missing\n"
        "  fix: keep the batch axis when picking one example: Xtr[[7]] or Xtr[7:8], not Xtr[7] "
        "(or add it back with x[None])"
    )):
        Linear(48, 128)(torch.randn(48))


@pytest.mark.parametrize(
    ("shape", "got"),
    [((40,), "(40,): 1 axis, expected at least 2"), ((), "(): 0 axes, expected at least 2")],
)
def test_other_rank_message(shape, got):
    with pytest.raises(shapekit.ShapeError, match=exact(
        f"Linear expected x: (batch, *time, 48 = fan_in), got {got}\n"
        "  fix: reshape x to the annotated number of axes, or fix the annotation"
    )):
        Linear(48, 128)(torch.randn(shape))


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.bool, torch.uint8])
def test_integer_input_message(dtype):
    name = str(dtype).split(".")[-1]
    with pytest.raises(shapekit.ShapeError, match=exact(
        f"Linear expected x: float (batch, *time, 48 = fan_in), got {name} (32, 48): "
        "float dtype needed\n"
        "  fix: convert x with x.float()"
    )):
        Linear(48, 128)(torch.zeros(32, 48, dtype=dtype))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_float_dtype_mismatch_message(dtype):
    name = str(dtype).split(".")[-1]
    with pytest.raises(shapekit.ShapeError, match=exact(
        f"Linear expected x: float32 (the dtype of the layer's parameters), got {name} (32, 48)\n"
        f"  fix: convert the input with x.float(), or the model with model.to({dtype})"
    )):
        Linear(48, 128)(torch.zeros(32, 48, dtype=dtype))


def test_non_tensor_message():
    with pytest.raises(shapekit.ShapeError, match=exact(
        "Linear expected x: (batch, *time, 48 = fan_in), got list\n"
        "  fix: pass a torch.Tensor as x (torch.as_tensor(...) converts lists and arrays)"
    )):
        Linear(48, 128)([[0.0] * 48])


def test_unflattened_time_axis_names_flatten_consecutive():
    """Embedding straight into Linear: the fix is to flatten, not to resize the layer before."""
    model = Sequential([Embedding(27, 10), Linear(20, 200)])
    with pytest.raises(shapekit.ShapeError, match=exact(
        "layers[1] Linear expected x: (batch, *time, 20 = fan_in), got (32, 8, 10)\n"
        "  bound so far: batch=32 time=8 (from layers[0] Embedding output)\n"
        "  fix: the time axis is not flattened: put FlattenConsecutive(2) before this Linear, "
        "turning (32, 8, 10) into (32, 4, 20)"
    )):
        model(torch.zeros(32, 8, dtype=torch.long))
    three = Sequential([Embedding(27, 10), Linear(30, 200)])
    with pytest.raises(shapekit.ShapeError, match=re.escape(
        "put FlattenConsecutive(3) before this Linear, turning (32, 3, 10) into (32, 30)"
    ) + "$"):
        three(torch.zeros(32, 3, dtype=torch.long))
