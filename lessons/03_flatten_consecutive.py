"""FlattenConsecutive: fuse neighbouring time steps, and the reshape that looks right but is not.

    python lessons/03_flatten_consecutive.py

The WaveNet-style model fuses time steps in pairs: `(B, 8, C) -> (B, 4, 2*C)`, so that step 0 sits
next to step 1, step 2 next to step 3, and so on. Four ways to write it give the same numbers; two
plausible ones give the same *shape* and the wrong numbers. Only the values tell them apart.
"""

# %% [markdown]
# # Four ways to fuse pairs of time steps
#
# `e` is what the embedding returns: B examples, T time steps, C channels each.

# %%
import torch
from einops import rearrange

import shapekit
from shapekit import nn

torch.manual_seed(42)
e = torch.randn(4, 8, 10)
B, T, C = e.shape
n = 2

explicit = torch.cat([e[:, ::2, :], e[:, 1::2, :]], dim=2)  # (B, T/n, n*C): even steps | odd steps
viewed = e.view(B, T // n, C * n)  # (B, T/n, n*C)
pattern = rearrange(e, "b (t n) c -> b t (n c)", n=n)  # (B, T/n, n*C)
layer = nn.FlattenConsecutive(n)(e)  # (B, T/n, n*C)

for name, t in [("torch.cat", explicit), ("view", viewed), ("rearrange", pattern),
                ("FlattenConsecutive", layer)]:
    print(f"{name:<19}", tuple(t.shape))
    assert t.shape == (4, 4, 20)
assert torch.equal(explicit, viewed)
assert torch.equal(explicit, pattern)
assert torch.equal(explicit, layer)
print("all four are equal")

# %% [markdown]
# `view` works because memory is laid out row by row: the 10 channels of step 0 are followed by
# the 10 channels of step 1, so reading 20 numbers at a time picks up exactly one pair of steps.
#
# ## Same shape, wrong values
#
# To *see* which time steps end up together, fill `e` with its own time index: `te[b, t, c] = t`.
# Then each output step's values are the time steps it was built from.

# %%
te = torch.arange(T).view(1, T, 1).expand(B, T, C).contiguous()  # (B, T, C), te[b, t, c] = t


def groups(out: torch.Tensor) -> list[list[int]]:
    """For each fused step of example 0, the time steps its values came from."""
    return [sorted(set(step.tolist())) for step in out[0]]


right = groups(rearrange(te, "b (t n) c -> b t (n c)", n=n))
print("b (t n) c -> b t (n c)   ", right)
assert right == [[0, 1], [2, 3], [4, 5], [6, 7]]

# %% [markdown]
# Swap the order inside the parentheses, `(n t)` instead of `(t n)`, and rearrange reads the
# time axis as n blocks of t steps: step 0 pairs with step 4. Same shape, nothing crashes.

# %%
swapped_te = rearrange(te, "b (n t) c -> b t (n c)", n=n)  # (B, T/n, n*C)
swapped = groups(swapped_te)
print("b (n t) c -> b t (n c)   ", swapped)
assert swapped_te.shape == (B, T // n, n * C)
assert swapped == [[0, 4], [1, 5], [2, 6], [3, 7]]
assert not torch.equal(rearrange(e, "b (n t) c -> b t (n c)", n=n), explicit)

# %% [markdown]
# A view into the "other" order followed by a transpose is worse: the view cuts memory into rows
# of 4 numbers that straddle time steps *and* channels, so every fused step mixes all 8 steps.

# %%
mixed_te = te.view(B, C * n, T // n).transpose(1, 2)  # (B, T/n, n*C), but scrambled
mixed = groups(mixed_te)
print("view(B, C*n, T//n).T     ", mixed)
print("  time step of each of the 20 values in fused step 0:", mixed_te[0, 0].tolist())
assert mixed_te.shape == (B, T // n, n * C)
assert mixed == [list(range(8))] * 4
assert not torch.equal(e.view(B, C * n, T // n).transpose(1, 2), explicit)

# %% [markdown]
# ## Why the rearrange pattern states the intent
#
# `e.view(B, T//n, C*n)` is correct, but nothing in it says *which* steps are grouped; the reader
# has to know the memory layout. `"b (t n) c -> b t (n c)"` says it: the time axis is t groups of
# n neighbours, and the n vectors of a group are laid side by side. shapekit's
# `FlattenConsecutive` is that one line, plus checks.
#
# ## T must be a multiple of n
#
# 8 time steps cannot be cut into groups of 3. A bare `view` fails with an element-count error;
# `FlattenConsecutive(3)` says what is wrong and which n would work.

# %%
try:
    e.view(B, T // 3, C * 3)  # the lecture's FlattenConsecutive body with n=3
    raise AssertionError("view should not cut 8 time steps into groups of 3")
except RuntimeError as err:
    print("view:", err)
    assert "shape '[4, 2, 30]' is invalid for input of size 320" in str(err)

try:
    nn.FlattenConsecutive(3)(e)
    raise AssertionError("8 time steps should not split into groups of 3")
except shapekit.ShapeError as err:
    message = str(err)
    print(message)
assert "time a multiple of n=3, got (4, 8, 10)" in message
assert "time=8 is not a multiple of 3" in message
assert "n one of 1, 2, 4, 8" in message

# %% [markdown]
# ## The squeeze: a time axis of 1 goes away
#
# Fusing all 8 steps at once leaves one time step. The lecture's layer squeezes it, so the last
# Linear and BatchNorm get plain `(B, C)`, as in the flat model. rearrange alone would keep it.

# %%
full = nn.FlattenConsecutive(8)(e)  # (B, 8*C)
kept = rearrange(e, "b (t n) c -> b t (n c)", n=8)  # (B, 1, 8*C)
print("FlattenConsecutive(8):", tuple(full.shape), "  rearrange alone:", tuple(kept.shape))
assert full.shape == (4, 80)
assert kept.shape == (4, 1, 80)
assert torch.equal(full, kept.squeeze(1))
assert torch.equal(full, e.reshape(B, T * C))  # the flat model's view(B, -1)
