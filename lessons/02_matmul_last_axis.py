"""Matmul acts on the last axis: (..., 80) @ (80, 200) -> (..., 200).

    python lessons/02_matmul_last_axis.py

The lecture's Linear layer is `x @ W + b`. It works on `(B, C)` and just as well on `(B, T, C)`:
the matrix multiply only touches the last axis of `x`, and every axis in front rides along. This
lesson asserts that, shows how leading axes broadcast when both sides have them, and what the error
looks like when the last axis does not fit.
"""

# %% [markdown]
# # The last axis is the one that gets multiplied
#
# Any number of leading axes: the result keeps them, and replaces the last one.

# %%
import torch

import shapekit
from shapekit import nn

torch.manual_seed(42)
shapekit.set_checks("once")  # this lesson shows the checks, even if SHAPEKIT_CHECKS=off
x = torch.randn(2, 3, 4, 5, 80)  # (b, x, y, z, 80)
W = torch.randn(80, 200)
out = x @ W  # (b, x, y, z, 200)
print("(2, 3, 4, 5, 80) @ (80, 200) ->", tuple(out.shape))
assert out.shape == (2, 3, 4, 5, 200)

# %% [markdown]
# It is exactly "flatten everything in front into one big batch of rows, multiply, unflatten":

# %%
rows = x.reshape(-1, 80)  # (2*3*4*5, 80) = (120, 80)
flat = rows @ W  # (120, 200)
back = flat.reshape(2, 3, 4, 5, 200)  # (b, x, y, z, 200)
print("reshape to 2-D, multiply, reshape back: allclose =", torch.allclose(out, back, atol=1e-5))
assert rows.shape == (120, 80) and flat.shape == (120, 200)
assert torch.allclose(out, back, atol=1e-5)

# %% [markdown]
# This is why the lecture's Linear layer needs no change for the hierarchical model: after
# `FlattenConsecutive(2)` the input is `(B, T, C)` and each of the T time steps goes through the
# same weights.

# %%
layer = nn.Linear(48, 128, bias=False)
h = torch.randn(32, 4, 48)
B, T, C = h.shape
y = layer(h)  # (B, T, 128)
print("Linear(48, 128) on (32, 4, 48) ->", tuple(y.shape))
assert y.shape == (B, T, 128)
assert torch.allclose(y[:, 2], layer(h[:, 2]), atol=1e-6)  # time step 2 on its own: same answer

# %% [markdown]
# ## When both sides have leading axes, they broadcast
#
# `(4, 1, 5, 80) @ (3, 80, 200)`: the last two axes of each side are the matrices, `(5, 80)` and
# `(80, 200)`. The axes in front, `(4, 1)` and `(3,)`, broadcast like in addition: aligned from
# the right, a size 1 stretches, a missing axis counts as 1. So `(4, 1)` and `(3,)` give `(4, 3)`.

# %%
a = torch.randn(4, 1, 5, 80)
b = torch.randn(3, 80, 200)
c = a @ b  # (4, 3, 5, 200)
print("(4, 1, 5, 80) @ (3, 80, 200) ->", tuple(c.shape))
assert c.shape == (4, 3, 5, 200)
for i in range(4):
    for j in range(3):
        assert torch.allclose(c[i, j], a[i, 0] @ b[j], atol=1e-5)  # every pair (i, j)
print("c[i, j] == a[i, 0] @ b[j] for all 4 x 3 pairs")

# %% [markdown]
# ## What fails, and what torch says
#
# The inner sizes must agree: the last axis of the left side with the first matrix axis of the
# right. Torch's message names the shapes *after* it has flattened the leading axes, so
# `(4, 5, 70)` shows up as `20x70`.

# %%
x = torch.randn(4, 5, 70)  # the layer before produced 70 features, not 80
try:
    x @ torch.randn(80, 200)
    raise AssertionError("70 features into an (80, 200) matrix should fail")
except RuntimeError as err:
    torch_message = str(err)
    print("torch:   ", torch_message)
assert "cannot be multiplied" in torch_message
assert "20x70" in torch_message and "80x200" in torch_message

# %% [markdown]
# Leading axes that do not broadcast fail too, with a different message: `(4, 2)` against `(3,)`.

# %%
try:
    torch.randn(4, 2, 5, 80) @ torch.randn(3, 80, 200)
    raise AssertionError("(4, 2) and (3,) should not broadcast")
except RuntimeError as err:
    broadcast_message = str(err)
    print("torch:   ", broadcast_message)
assert "size of tensor a (2) must match the size of tensor b (3)" in broadcast_message

# %% [markdown]
# ## The same mistake in a shapekit Linear
#
# shapekit's `Linear(80, 200)` checks its input against its annotation `(batch, *time, fan_in)`
# before multiplying, so the message keeps the real shape, names the axis sizes it bound, and says
# what to change.

# %%
try:
    nn.Linear(80, 200)(x)
    raise AssertionError("Linear(80, 200) should reject 70 features")
except shapekit.ShapeError as err:
    message = str(err)
    print("shapekit:", message)
assert "Linear expected x: (batch, *time, 80 = fan_in), got (4, 5, 70)" in message
assert "bound so far: batch=4 time=5" in message
assert "build Linear(70, ...)" in message
