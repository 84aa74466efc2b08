"""Picking one example: Xtr[7] drops the batch axis, Xtr[[7]] keeps it.

    python lessons/01_indexing.py

Every layer of the lecture's model expects a batch axis in front. Indexing with an integer removes
an axis; indexing with a list or a slice keeps it. This lesson shows the difference, what a checked
model says when the batch axis is missing, and why a batch of one still fails in training mode.
"""

# %% [markdown]
# # Xtr[7] vs Xtr[[7]]
#
# Small synthetic data stands in for the names: 1000 contexts of 8 characters each, every
# character an integer in [0, 27). The shapes are exactly the lecture's.

# %%
import torch

import shapekit
from shapekit import nn

torch.manual_seed(42)
shapekit.set_checks("once")  # this lesson shows the checks, even if SHAPEKIT_CHECKS=off
Xtr = torch.randint(0, 27, (1000, 8))  # (N, T): 1000 examples, block_size 8
print("Xtr        ", tuple(Xtr.shape))
assert Xtr.shape == (1000, 8)

# %% [markdown]
# An integer index picks a row and *removes* that axis. A list index, a slice, or `[None]` after
# the fact keeps a leading axis of size 1: a batch of one example.

# %%
one = Xtr[7]  # (T,)         the batch axis is gone
kept = Xtr[[7]]  # (1, T)    a batch of one
sliced = Xtr[7:8]  # (1, T)  the same
readded = Xtr[7][None]  # (1, T)  put the axis back
picks = [("Xtr[7]", one), ("Xtr[[7]]", kept), ("Xtr[7:8]", sliced), ("Xtr[7][None]", readded)]
for name, t in picks:
    print(f"{name:<13}", tuple(t.shape))
assert one.shape == (8,)
assert kept.shape == sliced.shape == readded.shape == (1, 8)
assert torch.equal(kept, sliced) and torch.equal(kept, readded) and torch.equal(kept[0], one)

# %% [markdown]
# ## What the model says about Xtr[7]
#
# The lecture's hierarchical model, built from `shapekit.nn`: pairs of characters, then pairs of
# pairs, then pairs of those, each fused by `FlattenConsecutive(2)`.

# %%
model = nn.Sequential([
    nn.Embedding(27, 24),
    nn.FlattenConsecutive(2), nn.Linear(48, 128, bias=False), nn.BatchNorm1d(128), nn.Tanh(),
    nn.FlattenConsecutive(2), nn.Linear(256, 128, bias=False), nn.BatchNorm1d(128), nn.Tanh(),
    nn.FlattenConsecutive(2), nn.Linear(256, 128, bias=False), nn.BatchNorm1d(128), nn.Tanh(),
    nn.Linear(128, 27),
])
logits = model(Xtr[:32])  # a normal training batch
print("model(Xtr[:32])", tuple(logits.shape))
assert logits.shape == (32, 27)

# %% [markdown]
# Now feed it `Xtr[7]`. The embedding happily reads `(8,)` as a batch of 8 with no time axis and
# returns `(8, 24)`; the first layer that needs a time axis, `FlattenConsecutive`, is where the
# missing axis shows, and the message traces it back to the model input `(8,)`. A plain torch
# model would fail deep inside a matmul, or worse, run.

# %%
try:
    model(Xtr[7])
    raise AssertionError("Xtr[7] should not get through the model")
except shapekit.ShapeError as err:
    message = str(err)
    print(message)
assert "layers[1] FlattenConsecutive" in message
assert "got (8, 24)" in message
assert "the batch axis is missing" in message
assert "the model input (8,) has no batch axis" in message
assert "Xtr[[7]] or Xtr[7:8] (a batch of one), not Xtr[7]" in message

# %% [markdown]
# ## A batch of one in training mode
#
# `Xtr[[7]]` has the right shape, but the model is still in training mode, and BatchNorm in
# training mode normalises with the statistics of the batch. The first two BatchNorm layers see
# `(1, 4, 128)` and `(1, 2, 128)`: several values per channel (one per time step), so they run.
# The last one sees `(1, 128)`: one value per channel, whose variance is undefined.
# Lesson 06 looks at this case in detail.

# %%
before = model[3].running_mean.clone()
try:
    model(Xtr[[7]])
    raise AssertionError("a batch of one should not get through BatchNorm in training mode")
except shapekit.ShapeError as err:
    message = str(err)
    print(message)
assert "layers[11] BatchNorm1d" in message
assert "more than one value per channel in training mode" in message
assert "got (1, 128)" in message
assert "model.eval()" in message

# %% [markdown]
# Candidly: the forward pass failed at layer 11, but layers 3 and 7 had already run in training
# mode and nudged their running statistics towards this one example. A failed call is not free.

# %%
assert not torch.equal(model[3].running_mean, before)
print("layers[3].running_mean moved by", f"{(model[3].running_mean - before).abs().max():.4f}")

# %% [markdown]
# ## model.eval(): use the running statistics
#
# In eval mode BatchNorm uses the running mean and variance gathered during training, so a batch
# of one is fine. The batch axis is still required: `Xtr[7]` fails the same way as before.

# %%
model.eval()
for name, x in [("Xtr[[7]]", Xtr[[7]]), ("Xtr[7:8]", Xtr[7:8]), ("Xtr[7][None]", Xtr[7][None])]:
    out = model(x)
    print(f"model({name:<12}) ->", tuple(out.shape))
    assert out.shape == (1, 27)
    assert torch.isfinite(out).all()
assert torch.equal(model(Xtr[[7]]), model(Xtr[7:8]))

try:
    model(Xtr[7])
    raise AssertionError("Xtr[7] should fail in eval mode too")
except shapekit.ShapeError as err:
    assert "the batch axis is missing" in str(err)
print("in eval mode too, Xtr[7] is missing its batch axis")
