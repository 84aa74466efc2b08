"""shapekit.nn.Sequential: a list-like container whose errors say where in the model they are."""

from __future__ import annotations

import re

import pytest
import torch

import shapekit
from shapekit.nn import BatchNorm1d, Embedding, FlattenConsecutive, Linear, Sequential, Tanh


def exact(message: str) -> str:
    """A ``match=`` pattern for exactly this message."""
    return "^" + re.escape(message) + "$"


def wavenet(n_embd: int = 24, n_hidden: int = 128, vocab: int = 27) -> Sequential:
    """The lecture's final model."""
    return Sequential([
        Embedding(vocab, n_embd),
        FlattenConsecutive(2), Linear(n_embd * 2, n_hidden, bias=False), BatchNorm1d(n_hidden),
        Tanh(),
        FlattenConsecutive(2), Linear(n_hidden * 2, n_hidden, bias=False), BatchNorm1d(n_hidden),
        Tanh(),
        FlattenConsecutive(2), Linear(n_hidden * 2, n_hidden, bias=False), BatchNorm1d(n_hidden),
        Tanh(),
        Linear(n_hidden, vocab),
    ])


def test_lecture_model_shapes_and_parameter_count():
    model = wavenet()
    assert model(torch.randint(0, 27, (32, 8))).shape == (32, 27)
    # The lecture's performance log: "n_embd 24, n_hidden 128" has 76K parameters (76579).
    assert sum(p.numel() for p in model.parameters()) == 76579


def test_forward_is_the_layers_in_order():
    torch.manual_seed(0)
    model = wavenet(n_embd=4, n_hidden=6)
    idx = torch.randint(0, 27, (5, 8))
    x = idx
    for layer in model.layers:
        x = layer(x)
    torch.testing.assert_close(model(idx), x)


def test_children_indexing_slicing_iteration():
    layers = [Embedding(27, 10), FlattenConsecutive(2), Linear(20, 5), Tanh()]
    model = Sequential(layers)
    assert [name for name, _ in model.named_children()] == ["0", "1", "2", "3"]
    assert model.layers == layers
    assert list(model) == layers
    assert len(model) == 4
    assert model[0] is layers[0] and model[-1] is layers[-1]
    head = model[1:3]
    assert isinstance(head, Sequential)
    assert head.layers == layers[1:3]
    assert [name for name, _ in head.named_children()] == ["0", "1"]
    assert set(model.state_dict()) == {"0.weight", "2.weight", "2.bias"}
    assert model[1:3](torch.randn(2, 4, 10)).shape == (2, 2, 5)
    with pytest.raises(IndexError):
        model[4]


def test_accepts_any_iterable_of_modules():
    model = Sequential(layer for layer in (Linear(3, 4), torch.nn.ReLU()))
    assert model(torch.randn(2, 3)).shape == (2, 4)
    assert len(Sequential([])) == 0


def test_train_eval_reach_every_layer_and_state_dict_round_trips():
    torch.manual_seed(0)
    model = wavenet(n_embd=4, n_hidden=6)
    model(torch.randint(0, 27, (32, 8)))  # move the running statistics
    assert all(layer.training for layer in model.eval().layers) is False
    assert not any(layer.training for layer in model.layers)
    copy = wavenet(n_embd=4, n_hidden=6)
    copy.load_state_dict(model.state_dict())
    assert torch.equal(copy[3].running_var, model[3].running_var)
    idx = torch.randint(0, 27, (1, 8))  # a single example works in eval mode
    torch.testing.assert_close(copy.eval()(idx), model(idx))


@pytest.mark.parametrize(
    ("layers", "message"),
    [
        (
            Linear(3, 4),
            "Sequential takes a list of layers, got Linear; "
            "fix: Sequential([layer1, layer2, ...])",
        ),
        (5, "Sequential takes a list of layers, got int; fix: Sequential([layer1, layer2, ...])"),
        (
            [Linear(3, 4), Tanh, "relu"],
            "Sequential layers[1] is a type, expected a torch.nn.Module; "
            "fix: build it from shapekit.nn or torch.nn layers",
        ),
    ],
)
def test_bad_constructor_input(layers, message):
    with pytest.raises(TypeError, match=exact(message)):
        Sequential(layers)


DESIGN_MESSAGE = (
    "layers[2] Linear expected x: (batch, *time, 48 = fan_in), got (32, 4, 40)\n"
    "  bound so far: batch=32 time=4 (from layers[1] FlattenConsecutive output)\n"
    "  fix: the layer before produces 40 features; build Linear(40, ...) "
    "or change FlattenConsecutive(n)"
)


def test_design_example_message():
    """DESIGN.md's example, exactly: embeddings of 20 paired up give 40 features, not 48."""
    model = Sequential([Embedding(27, 20), FlattenConsecutive(2), Linear(48, 128)])
    with pytest.raises(shapekit.ShapeError, match=exact(DESIGN_MESSAGE)) as info:
        model(torch.zeros(32, 8, dtype=torch.long))
    assert info.value.path == "layers[2]"
    assert str(info.value) == DESIGN_MESSAGE


def test_nested_models_give_the_full_path():
    inner = Sequential([FlattenConsecutive(2), Linear(48, 128)])
    model = Sequential([Embedding(27, 20), inner])
    with pytest.raises(shapekit.ShapeError, match=exact(
        "layers[1].layers[1] Linear expected x: (batch, *time, 48 = fan_in), got (32, 4, 40)\n"
        "  bound so far: batch=32 time=4 (from layers[1].layers[0] FlattenConsecutive output)\n"
        "  fix: the layer before produces 40 features; build Linear(40, ...) "
        "or change FlattenConsecutive(n)"
    )):
        model(torch.zeros(32, 8, dtype=torch.long))
    # A nested model's first layer is fed by the layer before the nested model.
    model = Sequential([Embedding(27, 20), FlattenConsecutive(2), Sequential([Linear(48, 128)])])
    with pytest.raises(shapekit.ShapeError, match=exact(
        DESIGN_MESSAGE.replace("layers[2] Linear", "layers[2].layers[0] Linear")
    )):
        model(torch.zeros(32, 8, dtype=torch.long))


def test_first_layer_error_names_the_model_input():
    with pytest.raises(shapekit.ShapeError, match=exact(
        "layers[0] Linear expected x: (batch, *time, 10 = fan_in), got (4, 3)\n"
        "  bound so far: batch=4 time=() (from model input)\n"
        "  fix: the layer before produces 3 features; build Linear(3, ...)"
    )):
        Sequential([Linear(10, 5), Tanh()])(torch.randn(4, 3))


def test_later_layers_name_the_nearest_shape_knob():
    """Tanh has no size of its own, so the fix points past it at the Linear that sets the width."""
    model = Sequential([Linear(10, 5), Tanh(), BatchNorm1d(6)])
    with pytest.raises(shapekit.ShapeError, match=exact(
        "layers[2] BatchNorm1d expected x: (batch, *time, 6 = dim), got (4, 5)\n"
        "  bound so far: batch=4 time=() (from layers[1] Tanh output)\n"
        "  fix: the layer before produces 5 features; build BatchNorm1d(5) "
        "or change Linear(..., fan_out)"
    )):
        model(torch.randn(4, 10))


def test_single_example_in_training_mode():
    """The first BatchNorms see 4 and 2 time steps of the one example; the last sees one value."""
    model = wavenet(n_embd=4, n_hidden=6)
    with pytest.raises(shapekit.ShapeError, match=exact(
        "layers[11] BatchNorm1d expected x: more than one value per channel in training mode, "
        "got (1, 6): the batch statistics of one value are undefined (variance NaN)\n"
        "  input: layers[10] Linear output\n"
        "  fix: call model.eval() before feeding a single example (eval uses the running "
        "statistics), or train with a batch larger than 1"
    )):
        model(torch.zeros(1, 8, dtype=torch.long))
    assert model.eval()(torch.zeros(1, 8, dtype=torch.long)).shape == (1, 27)


def _small_model() -> Sequential:
    torch.manual_seed(0)
    return Sequential([Embedding(27, 4), FlattenConsecutive(2), Linear(8, 5), Tanh()])


def test_hooks_on_a_layer_still_fire():
    """Layers without hooks skip nn.Module.__call__; a layer with any hook must not."""
    model, x = _small_model(), torch.randint(0, 27, (3, 2))
    seen = []
    handles = [
        model[2].register_forward_pre_hook(lambda m, args: seen.append("pre")),
        model[2].register_forward_hook(lambda m, a, out: seen.append(("post", tuple(out.shape)))),
        model[3].register_full_backward_hook(lambda m, gin, gout: seen.append("backward")),
        model[1].register_forward_hook(lambda m, args, out: out * 0),  # replaces the output
    ]
    out = model(x)
    out.sum().backward()
    assert seen == ["pre", ("post", (3, 5)), "backward"]
    assert torch.equal(out, torch.tanh(model[2].bias.detach()).expand(3, 5))  # zeros went in
    for handle in handles:
        handle.remove()
    seen.clear()
    assert not torch.equal(model(x), out)  # back to the layers' own outputs
    assert seen == []


def test_global_module_hooks_still_fire():
    from torch.nn.modules.module import register_module_forward_hook

    model, names = _small_model(), []
    handle = register_module_forward_hook(lambda m, args, out: names.append(type(m).__name__))
    try:
        model(torch.randint(0, 27, (3, 2)))
    finally:
        handle.remove()
    assert names == ["Embedding", "FlattenConsecutive", "Linear", "Tanh", "Sequential"]


def test_a_layer_class_with_its_own_call_is_called_through_it():
    class Doubled(Tanh):
        def __call__(self, *args, **kwargs):
            return 2 * super().__call__(*args, **kwargs)

    x = torch.randn(2, 3)
    assert torch.equal(Sequential([Doubled()])(x), 2 * torch.tanh(x))


def test_the_fast_path_gives_the_same_numbers_and_gradients_as_module_calls():
    model, x = _small_model(), torch.randint(0, 27, (6, 2))
    out = model(x)
    out.sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    by_calls = x
    for layer in model:
        by_calls = layer(by_calls)  # nn.Module.__call__, one layer at a time
    by_calls.sum().backward()
    assert torch.equal(out, by_calls)
    assert all(torch.equal(a, p.grad) for a, p in zip(grads, model.parameters(), strict=True))


def test_functional_call_swaps_every_layers_parameters_and_buffers():
    """The layers read parameters from their dicts; torch.func.functional_call must still reach
    them (it is what torch.func.grad and vmap over models build on)."""
    from torch.func import functional_call

    torch.manual_seed(0)
    model = Sequential([Embedding(27, 4), FlattenConsecutive(2), Linear(8, 5), BatchNorm1d(5),
                        Tanh(), Linear(5, 3)]).eval()
    x = torch.randint(0, 27, (6, 2))
    state = {k: torch.zeros_like(v) for k, v in model.state_dict().items()}
    state["3.running_var"] = torch.ones(5)
    state["5.bias"] = torch.full((3,), 0.5)
    out = functional_call(model, state, (x,))
    assert torch.equal(out, torch.full((6, 3), 0.5))  # every weight zero: only the bias is left
    assert not torch.equal(model(x), out)  # the model's own parameters are back
