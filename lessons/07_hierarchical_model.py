"""The hierarchical model: every layer's shape, a brief training run, and sampled names.

    python lessons/07_hierarchical_model.py           (2,000 steps)
    python lessons/07_hierarchical_model.py --full    (the lecture's 200,000 steps)

The lecture's final model reads 8 characters and fuses them two at a time, like a WaveNet: 8
embeddings become 4 pairs, then 2 pairs of pairs, then 1. This lesson builds it from shapekit.nn,
follows one batch through every layer and asserts each shape, trains it briefly with the lecture's
loop (written out, as in the lecture), evaluates it and samples names.
"""

# %% [markdown]
# # The data
#
# `load_names()` finds makemore's names file: a path in `SHAPEKIT_NAMES`, the cache, or a
# download. On a machine with none of those (offline, fresh) it falls back to the first names
# that the `names` package ships, and says so: the lesson still runs, but the losses will not be
# the lecture's.

# %%
import math
import sys

import torch
import torch.nn.functional as F

import shapekit
from shapekit import nn

FULL = "--full" in sys.argv[1:]
STEPS = 200_000 if FULL else 2_000

names = shapekit.lecture.load_names()
words = names.words
print(f"data: {len(words):,} names from {names.source}")
if names.source == "fallback":
    print("using the offline fallback (the `names` package's first names): the losses below "
          "will differ from the lecture's")
splits = shapekit.lecture.make_splits(words)  # shuffled with random.seed(42), split 80/10/10
print(splits)
assert splits.Xtr.shape[1] == 8 and splits.Xtr.shape[0] == splits.Ytr.shape[0]

# %% [markdown]
# # The model
#
# The last row of the lecture's performance log: 24-dimensional embeddings, 128 hidden units, and
# three levels of `FlattenConsecutive(2)` -> `Linear` -> `BatchNorm1d` -> `Tanh`, written out
# layer by layer as in the lecture. Seeding first makes the initial weights the lecture's, and the
# last layer starts 10x smaller so the first predictions are not confidently wrong.

# %%
n_embd, n_hidden, vocab_size = 24, 128, len(shapekit.lecture.VOCAB)
torch.manual_seed(42)
model = nn.Sequential([
    nn.Embedding(vocab_size, n_embd),
    nn.FlattenConsecutive(2), nn.Linear(n_embd * 2, n_hidden, bias=False),
    nn.BatchNorm1d(n_hidden), nn.Tanh(),
    nn.FlattenConsecutive(2), nn.Linear(n_hidden * 2, n_hidden, bias=False),
    nn.BatchNorm1d(n_hidden), nn.Tanh(),
    nn.FlattenConsecutive(2), nn.Linear(n_hidden * 2, n_hidden, bias=False),
    nn.BatchNorm1d(n_hidden), nn.Tanh(),
    nn.Linear(n_hidden, vocab_size),
])
with torch.no_grad():
    model.layers[-1].weight *= 0.1  # last layer: make the first predictions less confident
parameters = list(model.parameters())
n_params = sum(p.nelement() for p in parameters)
print(f"{n_params:,} parameters")
assert n_params == 76_579  # the lecture's count for this row

# %% [markdown]
# # Every layer's output shape
#
# Feed four examples through the layers one at a time, as the lecture does with `layer.out`.
# In eval mode and without gradients, so BatchNorm's running statistics and torch's random
# numbers are left exactly as training will find them.

# %%
Xb = splits.Xtr[:4]  # (B, 8) with B = 4
model.eval()
shapes = [tuple(Xb.shape)]
with torch.no_grad():
    x = Xb
    for i, layer in enumerate(model.layers):
        x = layer(x)
        shapes.append(tuple(x.shape))
        print(f"layers[{i:>2}] {type(layer).__name__:<18} : {tuple(x.shape)}")
model.train()

B = Xb.shape[0]
expected = [
    (B, 8),                                   # the context: 8 character ids
    (B, 8, 24),                               # Embedding
    (B, 4, 48), (B, 4, 128), (B, 4, 128), (B, 4, 128),  # pairs of characters
    (B, 2, 256), (B, 2, 128), (B, 2, 128), (B, 2, 128),  # pairs of pairs
    (B, 256), (B, 128), (B, 128), (B, 128),   # one group of 8: the time axis is squeezed away
    (B, 27),                                  # logits for the next character
]
assert shapes == expected, shapes
print(" -> ".join("(B, " + ", ".join(map(str, s[1:])) + ")" for s in shapes[:3]), "-> ... ->",
      f"(B, {shapes[-1][1]})")

# %% [markdown]
# Only `FlattenConsecutive` changes the time axis: `Linear` acts on the last axis with the time
# steps riding along as batch axes (lesson 02), and `BatchNorm1d` normalises each of the 128
# channels over batch *and* time (lesson 04). At the last level the time axis is 1 and is
# squeezed, so the final `Linear` sees `(B, 128)`, as in the flat model.
#
# # Training, briefly
#
# The lecture's loop, written out: a random batch of 32, cross-entropy, every gradient set to
# `None`, backward, then SGD with learning rate 0.1, and 0.01 for the last quarter. The lecture
# runs 200,000 steps (`--full`); the default here runs 2,000, enough to see the loss fall well
# below that of a uniform guess, ln 27 = 3.30. `lossi` keeps the log10 loss of every step, as the
# lecture's does, for plotting.

# %%
@torch.no_grad()  # no gradients: nothing here is trained
def split_loss(X: torch.Tensor, Y: torch.Tensor) -> float:
    """The lecture's split_loss: the whole split in one batch, in eval mode."""
    model.eval()  # BatchNorm: the running statistics, not this batch's
    logits = model(X)  # (N, 27)
    model.train()
    return F.cross_entropy(logits, Y).item()


batch_size = 32
lossi, vali = [], []  # log10 batch loss of every step; (step, validation loss) now and then
for i in range(STEPS):
    # a minibatch of 32 random contexts
    ix = torch.randint(0, splits.Xtr.shape[0], (batch_size,))
    Xb, Yb = splits.Xtr[ix], splits.Ytr[ix]  # (32, 8), (32,)
    # forward pass
    logits = model(Xb)  # (32, 27)
    loss = F.cross_entropy(logits, Yb)
    # backward pass
    for p in parameters:
        p.grad = None
    loss.backward()
    # update: learning rate 0.1, then 0.01 for the last quarter
    lr = 0.1 if i < STEPS * 3 // 4 else 0.01
    with torch.no_grad():
        for p in parameters:
            p += -lr * p.grad
    if i % (STEPS // 4) == 0:
        print(f"{i:7d}/{STEPS:7d}: {loss.item():.4f}")
    lossi.append(loss.log10().item())
    if (i + 1) % (STEPS // 10) == 0:  # draws no random numbers: training is unchanged
        vali.append((i + 1, split_loss(splits.Xdev, splits.Ydev)))

first, last = 10 ** lossi[0], 10 ** (sum(lossi[-100:]) / 100)
print(f"batch loss {first:.3f} at step 0, {last:.3f} over the last 100 steps")
assert abs(first - math.log(27)) < 0.2  # the x0.1 last layer starts near a uniform guess
assert last < first - 0.5

# %% [markdown]
# The lecture plots the batch loss averaged over groups of steps (`view(-1, 1000).mean(1)`; here
# groups of `STEPS // 20`), since one batch's loss is noisy. The validation loss, measured on the
# whole dev split as training went, follows it down: no overfitting yet at this size.

# %%
import matplotlib.pyplot as plt

group = STEPS // 20
train_curve = torch.tensor(lossi).view(-1, group).mean(1)  # (20,)
fig, ax = plt.subplots(figsize=(7, 3.6))
ax.plot([group * (k + 1) for k in range(len(train_curve))], 10 ** train_curve,
        label=f"train: batch loss, mean of each {group} steps")
ax.plot([s for s, _ in vali], [v for _, v in vali], "o-", label="validation: the dev split")
ax.set_xlabel("step")
ax.set_ylabel("cross-entropy loss")
ax.legend()
ax.grid(alpha=0.3)
fig.tight_layout()
assert vali[-1][1] < vali[0][1]  # validation loss fell while training

# %% [markdown]
# # Evaluation
#
# The lecture's `split_loss`: the whole split in one forward pass, in eval mode, so BatchNorm uses
# its running statistics instead of the statistics of the batch.

# %%
train_loss = split_loss(splits.Xtr, splits.Ytr)
val_loss = split_loss(splits.Xdev, splits.Ydev)
print(f"train {train_loss:.4f}  val {val_loss:.4f}")
if FULL and names.source != "fallback":
    print("the lecture's figures for this model: train 1.7690  val 1.9937")
assert val_loss < 2.6, val_loss  # down from 3.30 after 2,000 steps
assert train_loss < 2.6, train_loss

# %% [markdown]
# # Sampling
#
# Start from eight dots, feed the context `torch.tensor([context])` of shape `(1, 8)` (a batch of
# one: `[context]`, not `context`), draw the next character from the softmax, shift it in, stop at
# a dot. Eval mode matters here too: BatchNorm cannot take statistics of a batch of one.

# %%
samples = shapekit.lecture.sample(model, 10, block_size=8, seed=2147483647)
for name in samples:
    print(name)
assert len(samples) == 10
assert all(set(name) <= set(shapekit.lecture.VOCAB[1:]) for name in samples)
assert 2 <= sum(map(len, samples)) / len(samples) <= 12  # name-like lengths, not noise
