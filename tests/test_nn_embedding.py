"""shapekit.nn.Embedding against torch's F.embedding (values and gradients) and its messages."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F

import shapekit
from shapekit.nn import Embedding, Sequential


def exact(message: str) -> str:
    """A ``match=`` pattern for exactly this message."""
    return "^" + re.escape(message) + "$"


@pytest.mark.parametrize("shape", [(32,), (32, 8), (4, 3, 2)])
@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.int16, torch.int8])
def test_values_and_gradients_match_torch(shape, dtype):
    torch.manual_seed(0)
    emb = Embedding(27, 10)
    idx = torch.randint(0, 27, shape, dtype=dtype)  # repeats, so gradients accumulate per row
    out = emb(idx)
    w_ref = emb.weight.detach().clone().requires_grad_()
    ref = F.embedding(idx.long(), w_ref)

    assert out.shape == (*shape, 10)
    assert torch.equal(out, ref)
    upstream = torch.randn(out.shape)
    out.backward(upstream)
    ref.backward(upstream)
    torch.testing.assert_close(emb.weight.grad, w_ref.grad)


def test_init_uses_the_lectures_random_draws():
    """Embedding(27, 10) is the lecture's C = torch.randn((27, 10)) and draws nothing else."""
    torch.manual_seed(42)
    emb = Embedding(27, 10)
    after_layer = torch.randn(5)
    torch.manual_seed(42)
    table = torch.randn((27, 10))
    assert torch.equal(emb.weight.detach(), table)
    assert torch.equal(torch.randn(5), after_layer)


def test_empty_batch():
    assert Embedding(27, 10)(torch.zeros(0, 8, dtype=torch.long)).shape == (0, 8, 10)


def test_trains_with_sgd_and_state_dict_round_trip():
    torch.manual_seed(0)
    emb = Embedding(5, 3)
    opt = torch.optim.SGD(emb.parameters(), lr=0.1)
    idx = torch.tensor([[0, 1], [1, 4]])
    before = emb.weight.detach().clone()
    emb(idx).sum().backward()
    opt.step()
    # Each row moves by -lr times the number of times it was looked up; row 1 twice, 2 and 3 never.
    counts = torch.tensor([1.0, 2.0, 0.0, 0.0, 1.0])[:, None]
    torch.testing.assert_close(emb.weight.detach(), before - 0.1 * counts)

    state = emb.state_dict()
    assert {k: tuple(v.shape) for k, v in state.items()} == {"weight": (5, 3)}
    copy = Embedding(5, 3)
    copy.load_state_dict(state)
    assert torch.equal(copy(idx), emb(idx))
    assert repr(copy.eval()) == "Embedding(num_embeddings=5, embedding_dim=3)"
    assert torch.equal(copy(idx), emb(idx))  # no train/eval difference


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((0, 3), "Embedding(num_embeddings=0): num_embeddings must be a positive int"),
        ((27, -2), "Embedding(embedding_dim=-2): embedding_dim must be a positive int"),
        ((27.0, 3), "Embedding(num_embeddings=27.0): num_embeddings must be a positive int"),
        ((27, False), "Embedding(embedding_dim=False): embedding_dim must be a positive int"),
    ],
)
def test_constructor_validates(args, message):
    with pytest.raises(ValueError, match=exact(message)):
        Embedding(*args)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bool, torch.uint8])
def test_non_integer_indices_message(dtype):
    """Float indices are usually the embeddings passed twice; bool and uint8 would be masks."""
    name = str(dtype).split(".")[-1]
    with pytest.raises(shapekit.ShapeError, match=exact(
        f"Embedding expected idx: integer (batch, *time), got {name} (32, 8): "
        "integer dtype needed\n"
        "  fix: pass integer indices, e.g. idx.long() (a float tensor here is often the "
        "embeddings, not the indices)"
    )):
        Embedding(27, 10)(torch.zeros(32, 8, dtype=dtype))


def test_index_too_large_message():
    idx = torch.tensor([[1, 2, 27], [0, 5, 30]])
    with pytest.raises(shapekit.ShapeError, match=exact(
        "Embedding expected idx: integer indices in [0, 27), got values from 0 to 30 in (2, 3)\n"
        "  fix: build Embedding(31, ...) to cover index 30, or check the encoding (stoi) that "
        "produced idx"
    )):
        Embedding(27, 10)(idx)


def test_negative_index_message():
    """torch would silently wrap -1 around to the last row."""
    with pytest.raises(shapekit.ShapeError, match=exact(
        "Embedding expected idx: integer indices in [0, 27), got values from -1 to 3 in (1, 2)\n"
        "  fix: indices must be >= 0; check the encoding (stoi) that produced idx"
    )):
        Embedding(27, 10)(torch.tensor([[3, -1]]))


def test_single_index_without_batch_axis_message():
    with pytest.raises(shapekit.ShapeError, match=exact(
        "Embedding expected idx: (batch, *time), got (): 0 axes, expected at least 1: "
        "the batch axis is missing\n"
        "  fix: keep the batch axis when picking one example: Xtr[[7]] or Xtr[7:8], not Xtr[7] "
        "(or add it back with idx[None])"
    )):
        Embedding(27, 10)(torch.tensor(7))


def test_messages_inside_a_model_name_the_model_input():
    model = Sequential([Embedding(27, 10)])
    with pytest.raises(shapekit.ShapeError, match=exact(
        "layers[0] Embedding expected idx: integer indices in [0, 27), got values from 0 to 27 "
        "in (2,)\n"
        "  input: model input\n"
        "  fix: build Embedding(28, ...) to cover index 27, or check the encoding (stoi) that "
        "produced idx"
    )):
        model(torch.tensor([0, 27]))
