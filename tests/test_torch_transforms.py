"""shapekit.nn and @shaped under the rest of PyTorch, in every check mode: torch.compile (eager
and inductor backends), autocast, meta and fake tensors, vmap and grad, torch.export,
parametrizations and pruning, copies. Plain eager torch is the oracle for every result."""

from __future__ import annotations

import copy
import pickle
import re

import pytest
import torch
import torch.nn.utils.parametrize as parametrize
import torch.nn.utils.prune as prune
from jaxtyping import Float
from torch import Tensor
from torch.nn.utils.parametrizations import weight_norm

import shapekit
from shapekit import nn, shaped

MODES = ["always", "once", "off"]
GRAPHS_IN_ALWAYS = 0  # measured on torch 2.13: see docs/guide/torch.md


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()  # each test compiles from scratch: no graph cached by an earlier one
    yield
    torch._dynamo.reset()


def lecture_model() -> nn.Sequential:
    """The lecture's hierarchical model, smaller: (B, 8) -> (B, 27)."""
    torch.manual_seed(0)
    return nn.Sequential([
        nn.Embedding(27, 6),
        nn.FlattenConsecutive(2), nn.Linear(12, 16, bias=False), nn.BatchNorm1d(16), nn.Tanh(),
        nn.FlattenConsecutive(2), nn.Linear(32, 16, bias=False), nn.BatchNorm1d(16), nn.Tanh(),
        nn.FlattenConsecutive(2), nn.Linear(32, 16, bias=False), nn.BatchNorm1d(16), nn.Tanh(),
        nn.Linear(16, 27),
    ])


def batch(b: int = 8, t: int = 8) -> Tensor:
    return torch.randint(0, 27, (b, t), generator=torch.Generator().manual_seed(b * 100 + t))


@shaped
def pairwise(x: Float[Tensor, "n d"], y: Float[Tensor, "m d"]) -> Float[Tensor, "n m"]:
    return x @ y.T


def graphs_compiled(fn, *args) -> int:
    """How many graphs torch.compile makes of one call: 1 when nothing breaks the graph."""
    graphs = []

    def backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    torch._dynamo.reset()
    torch.compile(fn, backend=backend)(*args)
    return len(graphs)


# --- torch.compile ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_compiled_model_equals_eager_and_its_guards_still_raise(mode):
    model = lecture_model()
    with shapekit.checks(mode):
        eager = model(batch())
        compiled = torch.compile(model, backend="eager")
        for _ in range(2):
            torch.testing.assert_close(compiled(batch()), model(batch()))
        torch.testing.assert_close(eager, model(batch()))
        with pytest.raises(shapekit.ShapeError, match=r"layers\[5\] FlattenConsecutive expected x: "
                           r".*time a multiple of n=2, got \(8, 3, 16\)"):
            compiled(batch(8, 6))  # 6 -> 3 time steps, which the second flatten cannot halve
        with pytest.raises(shapekit.ShapeError, match=re.escape(
                "Embedding expected idx: integer indices in [0, 27), got values from 0 to 30")):
            compiled(torch.tensor([[0, 1, 2, 3, 4, 5, 6, 30]] * 8))


@pytest.mark.parametrize("mode", ["always", "once"])
def test_compiled_embedding_refuses_negative_indices_unless_off(mode):
    emb = nn.Embedding(27, 4)
    compiled = torch.compile(emb, backend="eager")
    with shapekit.checks(mode), pytest.raises(shapekit.ShapeError, match="values from -1 to 2"):
        compiled(torch.tensor([[-1, 2]]))
    shapekit.set_checks("off")
    try:
        # "off", as plain torch: a negative index wraps around; one past the table still fails
        torch.testing.assert_close(compiled(torch.tensor([[-1]])), emb.weight[26].view(1, 1, 4))
        with pytest.raises(shapekit.ShapeError, match="values from 0 to 27"):
            compiled(torch.tensor([[0, 27]]))
    finally:
        shapekit.set_checks("once")


@pytest.mark.parametrize("mode", MODES)
def test_shaped_function_under_compile(mode):
    with shapekit.checks(mode):
        compiled = torch.compile(pairwise, backend="eager")
        out = compiled(torch.ones(4, 3), torch.ones(5, 3))
        torch.testing.assert_close(out, torch.full((4, 5), 3.0))
        if mode != "off":
            with pytest.raises(shapekit.ShapeError, match=re.escape(
                    "pairwise() expected y: (m, 3 = d), got (5, 2)")):
                compiled(torch.ones(4, 3), torch.ones(5, 2))


def test_graph_breaks_per_mode():
    """The documented counts: "off" and a trusted "once" compile the model into one graph;
    "always" runs every checked layer outside the graph: no graph holds a layer's work."""
    model = lecture_model().eval()
    x = batch()
    shapekit.set_checks("off")
    try:
        assert graphs_compiled(model, x) == 1
        shapekit.set_checks("once")
        model(x)  # the eager call that checks, and so trusts, every layer's shapes
        assert graphs_compiled(model, x) == 1
        shapekit.set_checks("always")
        assert graphs_compiled(model, x) == GRAPHS_IN_ALWAYS
    finally:
        shapekit.set_checks("once")


def test_fullgraph_in_off_and_in_a_trusted_once():
    model = lecture_model().eval()
    shapekit.set_checks("off")
    try:
        out = torch.compile(model, backend="eager", fullgraph=True)(batch())
        torch.testing.assert_close(out, model(batch()))
    finally:
        shapekit.set_checks("once")
    torch._dynamo.reset()
    model(batch())  # trusted from now on
    out = torch.compile(model, backend="eager", fullgraph=True)(batch())
    torch.testing.assert_close(out, model(batch()))


def test_inductor_forward_and_backward_equal_eager():
    model = lecture_model()
    reference = copy.deepcopy(model)
    compiled = torch.compile(model)  # inductor, the default backend
    for step in range(2):
        x, y = batch(16), torch.arange(16) % 27
        loss = torch.nn.functional.cross_entropy(compiled(x), y)
        want = torch.nn.functional.cross_entropy(reference(x), y)
        torch.testing.assert_close(loss, want)
        loss.backward()
        want.backward()
        for (name, p), q in zip(model.named_parameters(), reference.parameters(), strict=True):
            torch.testing.assert_close(p.grad, q.grad, msg=f"{name} at step {step}")
    for name, buf in model.named_buffers():
        torch.testing.assert_close(buf, reference.get_buffer(name), msg=name)


# --- autocast, meta and fake tensors ----------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_autocast_bfloat16_runs_and_stays_close_to_float32(mode):
    model = lecture_model()
    x = batch(32)
    with shapekit.checks(mode):
        want = copy.deepcopy(model)(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = model(x)
    assert got.shape == (32, 27)
    torch.testing.assert_close(got.float(), want, atol=0.1, rtol=0.05)  # bfloat16's precision
    assert model[3].running_mean.dtype == torch.float32  # statistics kept in float32


@pytest.mark.parametrize("mode", MODES)
def test_meta_device_runs_the_shapes_and_still_checks_them(mode):
    model = lecture_model().to("meta")
    with shapekit.checks(mode):
        out = model(torch.zeros(32, 8, dtype=torch.long, device="meta"))
        assert out.shape == (32, 27) and out.device.type == "meta"
        if mode != "off":
            with pytest.raises(shapekit.ShapeError, match=r"layers\[5\] FlattenConsecutive .* "
                               r"got \(32, 3, 16\)"):
                model(torch.zeros(32, 6, dtype=torch.long, device="meta"))


@pytest.mark.parametrize("mode", MODES)
def test_fake_tensor_mode(mode):
    from torch._subclasses.fake_tensor import FakeTensorMode

    with shapekit.checks(mode), FakeTensorMode():
        model = lecture_model()
        assert model(torch.zeros(32, 8, dtype=torch.long)).shape == (32, 27)
        if mode != "off":
            with pytest.raises(shapekit.ShapeError, match=r"layers\[2\] Linear expected x"):
                nn.Sequential([nn.Embedding(27, 5), nn.FlattenConsecutive(2),
                               nn.Linear(12, 4)])(torch.zeros(3, 8, dtype=torch.long))


# --- torch.func: vmap and grad ------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_vmap_in_eval_equals_a_loop(mode):
    model = lecture_model().eval()
    xs = torch.stack([batch(4), batch(5)[:4]])  # (2, 4, 8): two batches of four
    with shapekit.checks(mode):
        got = torch.func.vmap(model)(xs)
        torch.testing.assert_close(got, torch.stack([model(x) for x in xs]))


@pytest.mark.parametrize("mode", MODES)
def test_vmap_in_training_names_the_shared_buffers_and_its_fix_works(mode):
    model = lecture_model()
    xs = torch.stack([batch(4), batch(5)[:4]])
    with shapekit.checks(mode):
        with pytest.raises(shapekit.ShapeError, match=re.escape(
                "layers[3] BatchNorm1d expected running statistics with a vmapped axis, to train "
                "under torch.func.vmap, got x batched by vmap, buffers running_mean and "
                "running_var (16,) shared by every vmapped model")):
            torch.func.vmap(model, randomness="different")(xs)
        # the fix the message names: stacked copies, one per vmapped model
        models = [copy.deepcopy(model) for _ in range(2)]
        params, buffers = torch.func.stack_module_state(models)

        def call(p, b, x):
            return torch.func.functional_call(model, (p, b), (x,))

        got = torch.func.vmap(call)(params, buffers, xs)
        want = torch.stack([m(x) for m, x in zip(models, xs, strict=True)])
        torch.testing.assert_close(got, want)
        torch.testing.assert_close(buffers["3.running_mean"],
                                   torch.stack([m[3].running_mean for m in models]))


@pytest.mark.parametrize("mode", MODES)
def test_grad_in_training_equals_autograd(mode):
    model = lecture_model()
    twin = copy.deepcopy(model)
    x, y = batch(16), torch.arange(16) % 27
    params, buffers = dict(model.named_parameters()), dict(model.named_buffers())

    def loss_of(p, b):  # buffers passed in: training writes the running statistics into them
        logits = torch.func.functional_call(model, (p, b), (x,))
        return torch.nn.functional.cross_entropy(logits, y)

    with shapekit.checks(mode):
        grads = torch.func.grad(loss_of)(params, buffers)
        torch.nn.functional.cross_entropy(twin(x), y).backward()
    for name, q in twin.named_parameters():
        torch.testing.assert_close(grads[name], q.grad, msg=name)
    torch.testing.assert_close(model[3].running_mean, twin[3].running_mean)


# --- torch.export --------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_export_eval_model(mode):
    model = lecture_model().eval()
    with shapekit.checks(mode):
        exported = torch.export.export(model, (batch(),), strict=False)  # 2.13's default
    for b in (8,):
        torch.testing.assert_close(exported.module()(batch(b)), model(batch(b)))


# --- parametrizations, pruning, copies ------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_weight_norm_on_linear_and_embedding(mode):
    torch.manual_seed(0)
    linear, emb = nn.Linear(6, 4), nn.Embedding(27, 6)
    want_linear = linear(torch.ones(3, 6))
    want_emb = emb(torch.tensor([[1, 2]]))
    weight_norm(linear)
    weight_norm(emb)
    with shapekit.checks(mode):
        torch.testing.assert_close(linear(torch.ones(3, 6)), want_linear)  # same weight, reparam
        torch.testing.assert_close(emb(torch.tensor([[1, 2]])), want_emb)
        linear.parametrizations.weight.original0.data *= 2  # the magnitude is a parameter now
        torch.testing.assert_close(linear(torch.ones(3, 6)), 2 * want_linear - linear.bias)


class Symmetric(torch.nn.Module):
    def forward(self, w: Tensor) -> Tensor:
        return w.triu() + w.triu(1).T


@pytest.mark.parametrize("mode", MODES)
def test_register_parametrization(mode):
    layer = nn.Linear(5, 5, bias=False)
    parametrize.register_parametrization(layer, "weight", Symmetric())
    x = torch.randn(3, 5)
    with shapekit.checks(mode):
        torch.testing.assert_close(layer(x), x @ layer.weight)
    assert torch.equal(layer.weight, layer.weight.T)


@pytest.mark.parametrize("mode", MODES)
def test_pruning_linear_batchnorm_and_embedding(mode):
    torch.manual_seed(0)
    linear, bn, emb = nn.Linear(6, 4), nn.BatchNorm1d(6), nn.Embedding(27, 6)
    with torch.no_grad():
        bn.gamma.uniform_(0.5, 2.0)
    prune.l1_unstructured(linear, "weight", amount=0.5)
    prune.l1_unstructured(bn, "gamma", amount=0.5)
    prune.l1_unstructured(emb, "weight", amount=0.5)
    x = torch.randn(8, 6)
    with shapekit.checks(mode):
        torch.testing.assert_close(linear(x), x @ (linear.weight_orig * linear.weight_mask)
                                   + linear.bias)
        out = bn(x)
        xhat = (x - x.mean(0)) / torch.sqrt(x.var(0) + bn.eps)
        torch.testing.assert_close(out, bn.gamma_orig * bn.gamma_mask * xhat + bn.beta)
        idx = torch.tensor([[1, 2, 3]])
        torch.testing.assert_close(emb(idx), (emb.weight_orig * emb.weight_mask)[idx])
    assert int((linear.weight == 0).sum()) == 12


@pytest.mark.parametrize("clone", [copy.deepcopy, lambda m: pickle.loads(pickle.dumps(m))])
def test_copies_and_state_dict_round_trip(clone):
    model = lecture_model()
    model(batch())  # running statistics away from their start
    twin = clone(model)
    fresh = lecture_model()
    fresh.load_state_dict(model.state_dict())
    model.eval(), twin.eval(), fresh.eval()
    torch.testing.assert_close(twin(batch()), model(batch()))
    torch.testing.assert_close(fresh(batch()), model(batch()))
    twin.train()(batch(16))  # a copy trains its own buffers only
    assert not torch.equal(twin[3].running_mean, model[3].running_mean)


# --- dtypes torch cannot compute with ------------------------------------------------------------


def test_tanh_refuses_float8_and_its_fix_works():
    x = torch.zeros(2, 3).to(torch.float8_e4m3fn)
    with pytest.raises(shapekit.ShapeError, match=re.escape(
            "Tanh expected x: a float dtype that torch computes with (float16, bfloat16, float32, "
            "float64), got float8_e4m3fn (2, 3): torch stores float8 but has no tanh (or most "
            "other arithmetic) for it\n"
            "  fix: convert the input first, e.g. Tanh()(x.float()), or x.to(torch.bfloat16)")):
        nn.Tanh()(x)
    assert torch.equal(nn.Tanh()(x.float()), torch.zeros(2, 3))


def test_batchnorm_with_eps_zero_is_refused_like_torch():
    with pytest.raises(ValueError, match=r"BatchNorm1d\(eps=0.0\): eps must be > 0"):
        nn.BatchNorm1d(4, eps=0.0)
    bn = nn.BatchNorm1d(4)  # the default: a constant channel normalises to 0, not NaN
    out = bn(torch.ones(8, 4))
    assert torch.equal(out, torch.zeros(8, 4))


# --- a user's own @shaped function under each transform ------------------------------------------


class Pairwise(torch.nn.Module):
    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return pairwise(x, y)


WRONG = "pairwise() expected y: (m, 3 = d), got (5, 2)"


@pytest.mark.parametrize("mode", MODES)
def test_shaped_function_under_autocast_meta_fake_vmap_and_export(mode):
    from torch._subclasses.fake_tensor import FakeTensorMode

    x, y = torch.randn(4, 3), torch.randn(5, 3)
    want = x @ y.T
    with shapekit.checks(mode):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            torch.testing.assert_close(pairwise(x, y).float(), want, atol=0.1, rtol=0.05)
        assert pairwise(x.to("meta"), y.to("meta")).shape == (4, 5)
        with FakeTensorMode():
            assert pairwise(torch.randn(4, 3), torch.randn(5, 3)).shape == (4, 5)
        xs = torch.stack([x, 2 * x])  # (2, 4, 3): vmapped over the first axis
        torch.testing.assert_close(torch.func.vmap(pairwise, in_dims=(0, None))(xs, y),
                                   torch.stack([want, 2 * want]))
        exported = torch.export.export(Pairwise(), (x, y), strict=False)
        torch.testing.assert_close(exported.module()(x, y), want)
        if mode != "off":  # and the checks still check, on each
            for make in (lambda t: t.to("meta"), lambda t: t):
                with pytest.raises(shapekit.ShapeError, match=re.escape(WRONG)):
                    pairwise(make(torch.randn(4, 3)), make(torch.randn(5, 2)))
            with pytest.raises(shapekit.ShapeError, match=re.escape(WRONG)):
                torch.func.vmap(pairwise, in_dims=(0, None))(xs, torch.randn(5, 2))
