"""Tests for shapekit.explain(): torch's shape errors re-raised as ShapeError with the op, the
operands' shapes and dtypes, the user's file:line and a fix; everything else passes through.

The oracle is torch itself: each case first checks that torch raises on the same code, then that
explain() turns exactly that error into a ShapeError chained from it.
"""

from __future__ import annotations

import sys

import pytest
import torch
import torch.nn.functional as F

from shapekit import ShapeError
from shapekit import nn as sk
from shapekit.debug._explain import explain, explain_error

HERE = "test_explain.py"
# explain() on its own: under `pytest --shapekit` an outer detect(strict=True) would report some of
# these bugs before torch raises (test_detect.py covers explain inside detect).
pytestmark = pytest.mark.shapekit(enabled=False)


def here() -> int:
    """The caller's line number: ``line = here() + 1`` names the next line."""
    return sys._getframe(1).f_lineno


def explained(fn) -> ShapeError:
    """Run ``fn`` bare (torch must raise) and under explain(); return the ShapeError."""
    with pytest.raises((RuntimeError, ValueError, IndexError)) as bare:
        fn()
    assert not isinstance(bare.value, ShapeError)
    with pytest.raises(ShapeError) as caught, explain():
        fn()
    err = caught.value
    assert type(err.__cause__) is type(bare.value)
    assert str(err.__cause__) == str(bare.value)
    return err


# --- matmul ------------------------------------------------------------------------------------


def test_matmul_inner_dims_names_operands_line_and_fix():
    h, W2 = torch.randn(32, 200), torch.randn(100, 27)

    def step():
        line[0] = here() + 1
        return h @ W2

    line = [0]
    err = explained(step)
    assert err.where == f"tests/{HERE}:{line[0]} h @ W2"
    assert err.expected == "h's last axis == W2's first axis"
    assert err.got == "h: (32, 200) float32, W2: (100, 27) float32"
    assert err.fix == ("build W2 with 200 rows (200, 27), or make the layer that produces h output "
                       "100 features")
    assert str(err).startswith(f"tests/{HERE}:{line[0]} h @ W2 expected h's last axis")


def test_matmul_weight_stored_out_in_suggests_transpose():
    h, W = torch.randn(32, 200), torch.randn(27, 200)
    err = explained(lambda: h @ W)
    assert err.fix.startswith("W looks stored as (out, in), torch's nn.Linear layout: use h @ W.T")


def test_matmul_on_3d_keeps_the_real_shapes_not_torchs_flattened_ones():
    x, W = torch.randn(32, 4, 40), torch.randn(48, 128)
    err = explained(lambda: x @ W)
    assert "x: (32, 4, 40) float32" in err.got  # torch's message says 128x40
    assert "40 != 48" in err.note


def test_batched_matmul_of_q_and_k_suggests_transposing_k():
    q, k = torch.randn(4, 8, 32), torch.randn(4, 8, 32)
    err = explained(lambda: q @ k)
    assert err.fix.endswith("q @ k.transpose(-2, -1)")


def test_torch_linear_module_names_in_features():
    layer = torch.nn.Linear(48, 128)
    x = torch.randn(32, 4, 40)
    err = explained(lambda: layer(x))
    assert err.where.endswith("layer Linear(48, 128)")
    assert err.got == "x: (32, 4, 40) float32"
    assert err.fix.startswith("the input has 40 features: build nn.Linear(40, 128)")


# --- joining and views -------------------------------------------------------------------------


def test_cat_sizes_shows_every_tensor_and_the_axis_that_differs():
    emb = torch.randn(32, 3, 10)
    a, b = emb[:, 0], emb[:-1, 1]
    err = explained(lambda: torch.cat([a, b], dim=1))
    assert err.got == "a: (32, 10) float32, b: (31, 10) float32"
    assert err.expected == "every tensor the same shape except along dim=1"
    assert err.fix.startswith("they differ only along axis 0: concatenate along it with dim=0")


def test_view_on_non_contiguous_tensor_suggests_reshape_with_the_users_arguments():
    B, T, C = 4, 8, 32
    y = torch.randn(B, 4, T, 8)
    err = explained(lambda: y.transpose(1, 2).view(B, T, C))
    assert err.expected == "a contiguous tensor (view never copies)"
    assert "non-contiguous" in err.got
    assert err.fix == ("use y.transpose(1, 2).reshape(B, T, C) (copies when needed), or "
                       "y.transpose(1, 2).contiguous().view(B, T, C)")


def test_view_with_wrong_sizes_gives_the_element_count():
    x = torch.randn(4, 5, 6)
    err = explained(lambda: x.view(4, 31))
    assert err.expected == "sizes with product 120, the number of elements of x: (4, 5, 6) float32"
    assert err.got == "[4, 31], product 124"


# --- normalisation -----------------------------------------------------------------------------


def test_torch_batchnorm_given_channels_last_input():
    bn = torch.nn.BatchNorm1d(68)
    x = torch.randn(32, 4, 68)
    err = explained(lambda: bn(x))
    assert err.where.endswith("bn BatchNorm1d(68)")
    assert err.got == "x: (32, 4, 68) float32"
    assert err.note == "channels-last input: the 68 channels are on the last axis"
    assert err.fix.startswith("pass it transposed and transpose back: "
                              "bn(x.transpose(1, 2)).transpose(1, 2)")


class Model(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(10, 68), torch.nn.BatchNorm1d(68))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def test_module_error_deep_inside_a_model_names_the_submodule_and_the_users_line():
    model = Model()
    Xb = torch.randn(32, 4, 10)

    def step():
        return model(Xb)

    err = explained(step)
    # The innermost user frame is Model.forward's line; the failing module is net[1].
    forward_line = Model.forward.__code__.co_firstlineno + 1
    assert err.where == f"tests/{HERE}:{forward_line} self.net.1 BatchNorm1d(68)"
    assert err.got == "input: (32, 4, 68) float32"


def test_batchnorm_training_on_one_example():
    model = Model()
    err = explained(lambda: model(torch.randn(1, 10)))
    assert err.expected == "more than one value per channel in training mode"
    assert err.fix.startswith("call model.eval() before feeding a single example")


# --- losses ------------------------------------------------------------------------------------


def test_cross_entropy_with_classes_on_the_last_axis():
    logits, Yb = torch.randn(4, 8, 27), torch.randint(0, 27, (4, 8))
    err = explained(lambda: F.cross_entropy(logits, Yb))
    assert err.where.endswith("F.cross_entropy(logits, Yb)")
    assert err.got == "logits: (4, 8, 27) float32, Yb: (4, 8) int64"
    assert err.note == "the classes (27) are on the last axis"
    assert err.fix == ("pass logits.transpose(1, 2), or flatten both: "
                       "F.cross_entropy(logits.view(-1, 27), Yb.view(-1))")


def test_cross_entropy_with_transposed_2d_logits():
    logits, Yb = torch.randn(32, 27), torch.randint(0, 27, (32,))
    err = explained(lambda: F.cross_entropy(logits.T, Yb))
    assert err.got == "logits.T: (27, 32) float32, Yb: (32,) int64"
    assert err.fix == "logits.T looks transposed, (C, N): pass logits"


# --- indexing ----------------------------------------------------------------------------------


def test_float_indices_into_an_embedding_table():
    C = torch.randn(27, 10)
    Xb = torch.randint(0, 27, (32, 3)).float()
    err = explained(lambda: C[Xb])
    assert err.expected == "Xb: integer indices (int64)"
    assert err.fix == "use C[Xb.long()]"


def test_float_indices_into_torch_embedding():
    emb = torch.nn.Embedding(27, 10)
    Xb = torch.randint(0, 27, (32, 3)).float()
    err = explained(lambda: emb(Xb))
    assert err.got == "Xb: (32, 3) float32"
    assert err.fix == "pass Xb.long()"


def test_embedding_index_out_of_range():
    emb = torch.nn.Embedding(27, 10)
    Xb = torch.full((32, 3), 27)
    err = explained(lambda: emb(Xb))
    assert err.expected == "Xb: indices in [0, 27)"
    assert err.got == "values from 27 to 27 in (32, 3)"
    assert err.fix.startswith("build Embedding(28, ...) to cover index 27")


# --- broadcasting ------------------------------------------------------------------------------


def test_broadcast_mismatch_in_an_elementwise_op():
    counts = torch.randn(27, 27)
    sums = counts.sum(1)[:5]
    err = explained(lambda: counts / sums)
    assert err.got == "counts: (27, 27) float32, sums: (5,) float32"
    assert err.note == ("aligned from the right, counts (27, 27) and sums (     5) differ at "
                        "axis 1 of the result: 27 vs 5")


def test_broadcast_of_a_transposed_operand():
    a, b = torch.randn(32, 27), torch.randn(27, 32)
    err = explained(lambda: a + b)
    assert err.fix == "b looks transposed: use b.T"


def test_broadcast_of_per_row_values_suggests_a_new_axis():
    x, rowsum = torch.randn(32, 27), torch.randn(32)
    err = explained(lambda: x / rowsum)
    assert err.fix.startswith("rowsum lines up with the last axes of x; to apply it along axis 0 "
                              "add the axis back: rowsum[:, None]")


# --- what passes through ----------------------------------------------------------------------


@pytest.mark.parametrize("error", [RuntimeError("boom"), ValueError("bad value"), KeyError("k"),
                                   IndexError("list index out of range")])
def test_errors_that_are_not_shape_errors_pass_through_untouched(error):
    with pytest.raises(type(error)) as caught, explain():
        raise error
    assert caught.value is error
    assert caught.value.__cause__ is None


def test_shapekits_own_shape_errors_pass_through_unchanged():
    layer = sk.Linear(48, 128)
    with pytest.raises(ShapeError) as bare:
        layer(torch.randn(32, 40))
    with pytest.raises(ShapeError) as caught, explain():
        layer(torch.randn(32, 40))
    assert str(caught.value) == str(bare.value)
    assert caught.value.__cause__ is None


def test_no_error_no_change():
    with explain() as block:
        out = torch.ones(2, 3) @ torch.ones(3, 4)
    assert isinstance(block, explain)
    assert out.shape == (2, 4)


def test_decorator_form_explains_errors_of_the_decorated_function():
    @explain()
    def step(x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, x[1:]], dim=1)

    assert step(torch.ones(1, 2)[:0]).shape == (0, 4)  # fine shapes: the result, untouched
    with pytest.raises(ShapeError, match=r"torch.cat\(\[x, x\[1:\]\], dim=1\)"):
        step(torch.ones(4, 3))


def test_user_frame_is_the_innermost_frame_in_user_code():
    def helper(a, b):
        line[0] = here() + 1
        return a @ b

    line = [0]
    with pytest.raises(ShapeError) as caught, explain():
        helper(torch.ones(2, 3), torch.ones(4, 5))
    assert caught.value.where == f"tests/{HERE}:{line[0]} a @ b"


def test_explain_error_returns_none_for_unknown_messages():
    assert explain_error(RuntimeError("CUDA error: device-side assert")) is None
    assert explain_error(ShapeError(expected="a", got="b", fix="c")) is None


def test_operands_are_recovered_without_running_user_code_again():
    calls = []

    def make(x: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return x

    x, W = torch.randn(2, 3), torch.randn(4, 5)
    with pytest.raises(ShapeError) as caught, explain():
        make(x) @ W
    assert calls == [1]  # only the user's own call: the evaluator never calls functions
    assert caught.value.where.endswith("make(x) @ W")
    assert caught.value.got == "mat1 (2x3) and mat2 (4x5)"  # from torch's message instead


# --- the cases a peer (tensor-sensor) explains: each suggested fix is applied and must run -----


def fixed(err: ShapeError, prefix: str) -> str:
    """The code a fix names after ``prefix`` (up to the next ``;``, `` (`` or ``, or``)."""
    assert prefix in err.fix, (prefix, err.fix)
    rest = err.fix.split(prefix, 1)[1]
    for stop in (", shape ", "; ", " (", ", or "):
        rest = rest.split(stop)[0]
    return rest.strip()


def runs(code: str, **names) -> torch.Tensor:
    """Evaluate the fixed expression on the same values: it must run without an error."""
    return eval(code, {"torch": torch, "F": F, **names})


def test_dot_of_two_matrices_suggests_row_wise_products():
    a, b = torch.randn(3, 4), torch.randn(3, 4)
    err = explained(lambda: torch.dot(a, b))
    assert err.expected == ("two 1-D tensors (torch.dot multiplies two vectors; it does not "
                            "broadcast)")
    assert err.got == "a: (3, 4) float32, b: (3, 4) float32"
    out = runs(fixed(err, "one dot product per row: "), a=a, b=b)
    assert torch.allclose(out, torch.stack([torch.dot(a[i], b[i]) for i in range(3)]))


def test_dot_of_vectors_of_different_lengths():
    u, v = torch.randn(3), torch.randn(4)
    err = explained(lambda: u.dot(v))
    assert err.expected == "u and v of equal length (a dot product pairs their elements)"
    assert runs(fixed(err, "to pair the first 3 of each: "), u=u, v=v).shape == ()


def test_matrix_vector_never_suggests_transposing_the_batch():
    A, v = torch.randn(3, 4), torch.randn(3)
    err = explained(lambda: torch.mv(A, v))
    assert ".T @" not in err.fix
    assert err.fix.startswith("v needs 4 entries, one per column of A")
    X, W = torch.randn(5, 32), torch.randn(5, 16)
    err = explained(lambda: X @ W)
    assert "X.T" not in err.fix  # X.T @ W would contract the batch of 5 away
    assert err.fix.startswith("build W with 32 rows (32, 16)")
    assert (X @ torch.randn(32, 16)).shape == (5, 16)


def test_bmm_with_different_batches_says_so():
    a, b = torch.randn(2, 3, 4), torch.randn(3, 4, 5)
    err = explained(lambda: torch.bmm(a, b))
    assert err.expected == "a and b with the same batch size (axis 0)"
    assert err.got == "a: (2, 3, 4) float32, b: (3, 4, 5) float32"
    assert runs(fixed(err, "matrix, use "), a=a, b=b).shape == (2, 3, 5)


def test_bmm_contracting_the_wrong_axis_suggests_the_transpose():
    q, k = torch.randn(2, 3, 4), torch.randn(2, 5, 4)
    err = explained(lambda: torch.bmm(q, k))
    assert runs(fixed(err, "transpose the right one: "), q=q, k=k).shape == (2, 3, 5)


def test_einsum_names_each_operands_subscripts_and_an_equation_that_fits():
    x, y = torch.randn(2, 3, 4), torch.randn(2, 5, 4)
    err = explained(lambda: torch.einsum("bij,bjk->bik", x, y))
    assert err.got == "x (2, 3, 4) as bij, y (2, 5, 4) as bjk"
    assert 'the operands fit "bij,bkj->bik": y looks laid out as bkj' in err.fix
    equation = err.fix.split('"')[1]
    assert torch.allclose(torch.einsum(equation, x, y), x @ y.transpose(1, 2), atol=1e-6)


def test_einsum_with_too_few_subscripts():
    x = torch.randn(2, 3)
    err = explained(lambda: torch.einsum("bij->bj", x))
    assert err.got == "x: (2, 3), 2 axes"


def test_lstm_h0_for_the_wrong_batch_names_batch_first_and_its_layout():
    lstm = torch.nn.LSTM(10, 20, batch_first=True)
    x = torch.randn(4, 7, 10)  # (batch, seq, feature)
    h0, c0 = torch.zeros(1, 7, 20), torch.zeros(1, 4, 20)  # h0 made batch-first by mistake
    err = explained(lambda: lstm(x, (h0, c0)))
    assert err.expected == ("h0: (num_layers * num_directions, batch, hidden_size) = (1, 4, 20), "
                            "batch on axis 1 even with batch_first=True")
    assert err.got == "h0: (1, 7, 20) float32"
    assert err.note.startswith("batch_first=True: input (batch, seq, feature)")
    h0 = runs(fixed(err, "make h0 for a batch of 4: "))
    out, _ = lstm(x, (h0, c0))
    assert out.shape == (4, 7, 20)


def test_rnn_given_batch_first_data_without_batch_first():
    rnn = torch.nn.RNN(10, 20)
    x, h0 = torch.randn(4, 7, 10), torch.zeros(1, 4, 20)  # the data is (batch, seq, feature)
    err = explained(lambda: rnn(x, h0))
    assert err.fix == ("x looks (batch, seq, feature): build the layer with batch_first=True "
                       "(h0 keeps its (num_layers, batch, hidden_size) layout)")
    rnn_fixed = torch.nn.RNN(10, 20, batch_first=True)
    assert rnn_fixed(x, h0)[0].shape == (4, 7, 20)


def test_rnn_given_one_sequence_without_its_batch_axis():
    gru = torch.nn.GRU(10, 20, batch_first=True)
    x, h0 = torch.randn(7, 10), torch.zeros(1, 1, 20)  # x lost its batch axis (Xtr[7])
    err = explained(lambda: gru(x, h0))
    assert err.expected.startswith("x: 3-D, with a batch axis")
    assert err.got == "x: (7, 10) float32, h0: (1, 1, 20) float32"
    out, _ = gru(runs(fixed(err, "add the batch axis: "), x=x), h0)
    assert out.shape == (1, 7, 20)


def test_gru_hidden_size_mismatch():
    gru = torch.nn.GRU(10, 20)
    x, h = torch.randn(7, 4, 10), torch.zeros(1, 4, 21)
    err = explained(lambda: gru(x, h))
    assert err.got == "h: (1, 4, 21) float32"
    assert gru(x, runs(fixed(err, "make h ")))[0].shape == (7, 4, 20)


def test_rnn_input_with_features_on_the_wrong_axis():
    gru = torch.nn.GRU(10, 20, batch_first=True)
    x = torch.randn(4, 10, 7)  # (batch, feature, seq)
    err = explained(lambda: gru(x))
    assert "batch_first=True: input (batch, seq, feature)" in err.note
    assert gru(runs(fixed(err, "move the features last: "), x=x))[0].shape == (4, 7, 20)


def test_broadcast_shows_both_shapes_aligned_and_real_expressions():
    x = torch.randn(4, 3)
    err = explained(lambda: x * x.sum(1))
    assert err.got == "x: (4, 3) float32, x.sum(1): (4,) float32"
    assert err.note == ("aligned from the right, x (4, 3) and x.sum(1) (   4) differ at axis 1 "
                        "of the result: 3 vs 4")
    assert runs(fixed(err, "add the axis back: "), x=x).shape == (4, 1)
    assert (x * runs(fixed(err, "add the axis back: "), x=x)).shape == (4, 3)


def test_broadcast_never_indexes_a_constant_or_an_unknown_expression():
    x = torch.randn(4, 3)
    err = explained(lambda: x * torch.randn(3, 1)[:2])  # an operand explain() will not re-run
    assert "3[:, None]" not in err.fix and "x[:, None]" not in err.fix
    assert err.got == "x: (4, 3) float32, torch.randn(3, 1)[:2]: sizes 4 and 2 at axis 0 of the " \
        "result"


def test_long_at_float_converts_the_integer_operand():
    idx, W = torch.randint(0, 3, (4, 3)), torch.randn(3, 5)
    err = explained(lambda: idx @ W)
    assert err.expected == "operands of one dtype (matmul does not promote integers)"
    assert err.got == "idx: (4, 3) int64, W: (3, 5) float32"
    assert (runs(fixed(err, "convert it: "), idx=idx, W=W) @ W).shape == (4, 5)


def test_conv2d_given_channels_last_images_permutes():
    conv = torch.nn.Conv2d(3, 8, 3)
    img = torch.randn(8, 32, 32, 3)
    err = explained(lambda: conv(img))
    assert "transpose(1, 2)" not in err.fix
    assert conv(runs(fixed(err, "channels on the last axis: pass "), img=img)).shape == (
        8, 8, 30, 30)


def test_conv1d_given_channels_last_transposes():
    conv = torch.nn.Conv1d(3, 8, 3)
    x = torch.randn(8, 32, 3)
    err = explained(lambda: conv(x))
    assert conv(runs(fixed(err, "channels on the last axis: pass "), x=x)).shape == (8, 8, 30)


def _compiled(fn):
    torch._dynamo.reset()
    return torch.compile(fn, backend="eager", fullgraph=True)


@pytest.mark.filterwarnings("ignore")
def test_errors_inside_torch_compile_are_unwrapped(caplog):
    def forward(x, w):
        h = x * 2
        return h @ w

    step = _compiled(forward)
    x, w = torch.randn(3, 4), torch.randn(5, 6)
    with pytest.raises(ShapeError) as caught, explain():
        line = forward.__code__.co_firstlineno + 2
        step(x, w)
    err = caught.value
    assert type(err.__cause__).__name__ == "TorchRuntimeError"
    assert err.where == f"tests/{HERE}:{line} h @ w (in torch.compile'd forward)"
    assert err.got == "h: (3, 4) float32, w: (5, 6) float32"
    assert err.fix.startswith("build w with 4 rows (4, 6)")
    assert _compiled(forward)(x, torch.randn(4, 6)).shape == (3, 6)


@pytest.mark.filterwarnings("ignore")
def test_a_value_error_inside_torch_compile_stays_a_value_error():
    step = _compiled(lambda logits, y: F.cross_entropy(logits, y))
    with pytest.raises(ValueError) as caught, explain():
        step(torch.randn(4, 5), torch.randint(0, 5, (3,)))
    assert isinstance(caught.value, ShapeError)


# --- exception compatibility -------------------------------------------------------------------


@pytest.mark.parametrize("make, base", [
    (lambda: F.cross_entropy(torch.randn(4, 5), torch.randint(0, 5, (3,))), ValueError),
    (lambda: torch.randn(3, 4).sum(dim=2), IndexError),
    (lambda: torch.randn(3, 4) @ torch.randn(5, 6), RuntimeError),
], ids=["ValueError", "IndexError", "RuntimeError"])
def test_the_explained_error_is_still_the_class_torch_raised(make, base):
    with pytest.raises(base) as bare:
        make()
    with pytest.raises(base) as caught, explain():
        make()
    err = caught.value
    assert isinstance(err, ShapeError) and isinstance(err, base)
    assert type(err.__cause__) is type(bare.value)
    assert err.__cause__ is not None and str(err.__cause__) == str(bare.value)


def test_the_compatible_classes_are_cached_named_and_picklable():
    import pickle

    from shapekit.checking._errors import shape_error_like

    cls = shape_error_like(ValueError("x"))
    assert cls is shape_error_like(ValueError("y")) and cls.__name__ == "ShapeValueError"
    assert shape_error_like(RuntimeError("x")) is ShapeError
    err = cls(expected="a", got="b", fix="c")
    again = pickle.loads(pickle.dumps(err))
    assert type(again) is cls and str(again) == str(err)


def test_under_detect_an_expression_operand_is_parenthesised_before_indexing():
    from shapekit.debug._detect import detect

    x, w = torch.randn(4, 3), torch.randn(4)
    with pytest.raises(ShapeError) as caught, detect():
        w * 3 + x
    err = caught.value
    assert err.got == "w * 3: (4,) float32, x: (4, 3) float32"
    assert "(w * 3)[:, None]" in err.fix
    assert (runs(fixed(err, "add the axis back: "), w=w) + x).shape == (4, 3)
