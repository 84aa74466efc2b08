"""Annotations written for you: shapekit annotate infers them from one training step.

    python lessons/10_annotate.py

Shape annotations catch bugs only in code that carries them, and writing them is the step people
skip. shapekit sees every tensor that flows through your functions, so it can write them: this
lesson takes the lecture's hierarchical model, written as the lecture writes it (plain classes, no
annotations), and a small GPT attention block, observes one training step and one evaluation,
writes the inferred jaxtyping annotations into the source, and then catches two bugs with them.
"""

# %% [markdown]
# # The code, unannotated
#
# A throwaway package `lecturepkg` in a temporary folder: the lecture's layers, exactly as the
# notebook writes them, and a GPT-style attention block. Nothing in it mentions a shape.

# %%
import importlib
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

import shapekit
from shapekit.annotate import annotate, infer

LAYERS = '''
"""The lecture's layers, and a small attention block."""
import torch


class Linear:
    def __init__(self, fan_in, fan_out, bias=True):
        self.weight = torch.randn((fan_in, fan_out)) / fan_in**0.5  # note: kaiming init
        self.bias = torch.zeros(fan_out) if bias else None

    def __call__(self, x):
        self.out = x @ self.weight
        if self.bias is not None:
            self.out += self.bias
        return self.out


class Tanh:
    def __call__(self, x):
        self.out = torch.tanh(x)
        return self.out


class Embedding:
    def __init__(self, num_embeddings, embedding_dim):
        self.weight = torch.randn((num_embeddings, embedding_dim))

    def __call__(self, IX):
        self.out = self.weight[IX]
        return self.out


class FlattenConsecutive:
    def __init__(self, n):
        self.n = n

    def __call__(self, x):
        B, T, C = x.shape
        x = x.view(B, T // self.n, C * self.n)
        if x.shape[1] == 1:
            x = x.squeeze(1)
        self.out = x
        return self.out


class Sequential:
    def __init__(self, layers):
        self.layers = layers

    def __call__(self, x):
        for layer in self.layers:
            x = layer(x)
        self.out = x
        return self.out


class Attention(torch.nn.Module):
    """Causal self-attention, nanoGPT style."""

    def __init__(self, n_embd, n_head):
        super().__init__()
        self.n_embd, self.n_head = n_embd, n_head
        self.qkv = torch.nn.Linear(n_embd, 3 * n_embd)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(self.n_embd, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, nh, T, hs)
        return y.transpose(1, 2).reshape(B, T, C)
'''.replace("import torch\n", "import torch\nimport torch.nn.functional as F\n", 1)

folder = Path(tempfile.mkdtemp())
(folder / "lecturepkg.py").write_text(LAYERS)
sys.path.insert(0, str(folder))

# %% [markdown]
# # One training step, observed
#
# Everything that runs inside `shapekit.observe(packages=[...])` is recorded: for each call into
# the package, the shape and dtype of every tensor argument and return value, and the `int`
# arguments each layer was built with. One training step on a batch of 32 contexts, then an
# evaluation on 200 (so the batch size is seen to vary), is all the evidence it gets.

# %%
torch.manual_seed(42)
X = torch.randint(0, 27, (1000, 8))  # synthetic contexts of 8 characters
Y = torch.randint(0, 27, (1000,))
with shapekit.observe(packages=["lecturepkg"]) as obs:
    import lecturepkg as L

    n_embd, n_hidden = 24, 128
    layers = [L.Embedding(27, n_embd)]
    fan_in = 2 * n_embd
    for _ in range(3):
        layers += [L.FlattenConsecutive(2), L.Linear(fan_in, n_hidden), L.Tanh()]
        fan_in = 2 * n_hidden
    model = L.Sequential([*layers, L.Linear(n_hidden, 27)])
    params = [p for layer in model.layers for p in vars(layer).values()
              if isinstance(p, torch.Tensor)]
    for p in params:
        p.requires_grad = True
    loss = F.cross_entropy(model(X[:32]), Y[:32])  # the training step
    loss.backward()
    with torch.no_grad():
        model(X[:200])  # an evaluation
        attention = L.Attention(n_embd=16, n_head=4)
        for batch, time in ((2, 5), (3, 7)):
            attention(torch.randn(batch, time, 16))
print(obs)
assert obs.functions["lecturepkg:Linear.__call__"].total == 8  # 4 layers, 2 passes

# %% [markdown]
# # The annotations, as a diff
#
# `annotate(obs)` infers, for every function, the most specific annotation that every observed
# call satisfies, and returns the change as a unified diff (the command line is
# `pytest --shapekit-infer=mypkg` then `shapekit annotate mypkg`). Read the choices:
#
# - `batch` varied (32, then 200), so it is a name, shared by the input and the output;
# - `*time` is variadic: `Linear` saw `(32, 4, 48)`, `(32, 2, 256)` and `(32, 128)`;
# - `fan_in`, `fan_out`, `embedding_dim` are the `__init__` arguments each size equalled in
#   every call; `{self.n_embd}` is an attribute of the attention block, checked exactly;
# - `8` and `27` never varied and nothing explains them, so they stay literal.

# %%
diff = annotate(obs, root=folder)
print(diff)
assert '+        x: Float[Tensor, "batch *time fan_in"],' in diff
assert '+    ) -> Float[Tensor, "batch *time fan_out"]:' in diff
assert '+    def __call__(self, IX: Int[Tensor, "batch 8"]) -> Float[Tensor, "batch 8 embedding_dim"]:' in diff  # noqa: E501
assert 'x: Float[Tensor, "batch time {self.n_embd}"]' in diff

# %% [markdown]
# Every choice comes with its evidence:

# %%
print(infer(obs)["lecturepkg:Linear.__call__"].report())

# %% [markdown]
# # Written, then checked
#
# `write=True` rewrites the file with libcst, so comments and formatting stay as they were; a
# second run has nothing left to do. Re-imported with `shapekit.shaped` on each layer (what
# `pytest --shapekit-packages=lecturepkg` does for a test suite), the same training step runs.

# %%
annotate(obs, write=True)
assert annotate(obs) == ""  # idempotent
assert "# note: kaiming init" in (folder / "lecturepkg.py").read_text()
sys.modules.pop("lecturepkg")
L = importlib.import_module("lecturepkg")
for cls in (L.Linear, L.Tanh, L.Embedding, L.FlattenConsecutive, L.Sequential):
    cls.__call__ = shapekit.shaped(cls.__call__)
L.Attention.forward = shapekit.shaped(L.Attention.forward)


def build(flatten: int = 2):
    torch.manual_seed(42)
    layers = [L.Embedding(27, 24)]
    fan_in = 24 * flatten
    for _ in range(3):
        layers += [L.FlattenConsecutive(flatten), L.Linear(fan_in, 128), L.Tanh()]
        fan_in = 128 * flatten
    return L.Sequential([*layers, L.Linear(128, 27)])


model = build()
print(tuple(model(X[:32]).shape))
assert model(X[:32]).shape == (32, 27)

# %% [markdown]
# # Two bugs, caught by the new annotations
#
# The lecture's classic: `X[7]` picks one context but drops the batch axis. Without annotations
# it fails three layers down, inside `FlattenConsecutive`, with `not enough values to unpack`.
# With them it stops at the model's door and says what happened.

# %%
try:
    model(X[7])
except shapekit.ShapeError as e:
    print(f"ShapeError: {e}")
    assert "expected x: (batch, 8), got (8,): 1 axis, expected 2: the batch axis is missing" in (
        str(e))
else:
    raise AssertionError("X[7] went through")

# %% [markdown]
# The attention block built for a wider model than the embeddings it is fed: the annotation
# `{self.n_embd}` holds the block's own width, so the message names it.

# %%
try:
    L.Attention(n_embd=32, n_head=4)(torch.randn(2, 5, 16))
except shapekit.ShapeError as e:
    print(f"ShapeError: {e}")
    assert "expected x: (batch, time, 32 = n_embd), got (2, 5, 16)" in str(e)
else:
    raise AssertionError("the wrong width went through")
sys.path.remove(str(folder))
print("done: annotations inferred, written, and checked")
