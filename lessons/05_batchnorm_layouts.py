"""BatchNorm layouts: torch wants (B, C, L), the lecture's layer wants (B, L, C).

    python lessons/05_batchnorm_layouts.py

`torch.nn.BatchNorm1d` takes `(B, C)` or `(B, C, L)`: channels in axis 1. The lecture's layer, and
shapekit's, take `(B, C)` or `(B, L, C)`: channels last, where a Linear layer leaves them. The two
agree exactly after a `transpose(1, 2)`. Without it, torch fails when L != C, and when L == C it
runs and normalises the wrong axis, silently.
"""

# %% [markdown]
# # Same numbers, different layout
#
# `unbiased=False` makes shapekit's layer normalise with the biased batch variance, exactly as
# torch does. Give both the same gamma and beta and compare over a few training steps.

# %%
import warnings

import torch

import shapekit

torch.manual_seed(42)
shapekit.set_checks("once")  # this lesson shows the checks, even if SHAPEKIT_CHECKS=off
B, L, C = 32, 4, 68
offset, scale = torch.linspace(-2.0, 2.0, C), torch.linspace(0.5, 3.0, C)  # per channel

ours = shapekit.nn.BatchNorm1d(C, unbiased=False)
theirs = torch.nn.BatchNorm1d(C)  # eps=1e-5, momentum=0.1, like ours
with torch.no_grad():
    ours.gamma.copy_(torch.randn(C))
    ours.beta.copy_(torch.randn(C))
    theirs.weight.copy_(ours.gamma)
    theirs.bias.copy_(ours.beta)

for step in range(5):
    x = torch.randn(B, L, C) * scale + offset  # (B, L, C): channels last
    a = ours(x)  # (B, L, C)
    b = theirs(x.transpose(1, 2)).transpose(1, 2)  # (B, C, L) in, back to (B, L, C)
    assert a.shape == b.shape == (B, L, C)
    assert torch.allclose(a, b, atol=1e-5), step
    assert torch.allclose(ours.running_mean, theirs.running_mean, atol=1e-6), step
    assert torch.allclose(ours.running_var, theirs.running_var, atol=1e-5), step
print("5 training steps: outputs, running_mean and running_var agree")

ours.eval()
theirs.eval()
x = torch.randn(B, L, C) * scale + offset
a = ours(x)  # (B, L, C)
b = theirs(x.transpose(1, 2)).transpose(1, 2)  # (B, L, C)
assert torch.allclose(a, b, atol=1e-5)
print("eval mode: outputs agree, max difference", f"{(a - b).abs().max():.1e}")

# %% [markdown]
# ## Forgetting the transpose, L != C: torch fails
#
# Hand torch the channels-last `(32, 4, 68)`: it reads 4 channels of length 68, and its running
# statistics hold 68 numbers, so it stops.

# %%
torch_bn = torch.nn.BatchNorm1d(C)
try:
    torch_bn(torch.randn(B, L, C))
    raise AssertionError("torch's BatchNorm1d(68) should reject (32, 4, 68)")
except RuntimeError as err:
    message = str(err)
    print("torch:", message)
assert "running_mean should contain 4 elements not 68" in message

# %% [markdown]
# ## Forgetting the transpose, L == C: torch runs and is wrong
#
# Now 8 time steps and 8 channels. Torch reads `(B, L, C)` as `(B, C', L')` with C' = L: it
# normalises each *time step* over the batch and the channels. No error, no warning, right shape.

# %%
B, L, C = 32, 8, 8
offset, scale = torch.linspace(-2.0, 2.0, C), torch.linspace(0.5, 3.0, C)
x = torch.randn(B, L, C) * scale + offset  # (B, L, C), channel c has mean offset[c]

wrong_bn = torch.nn.BatchNorm1d(C)
with warnings.catch_warnings():
    warnings.simplefilter("error")  # any warning would stop the lesson here
    wrong = wrong_bn(x)  # (B, L, C), no error, no warning
right = shapekit.nn.BatchNorm1d(C, unbiased=False)(x)  # (B, L, C)
by_hand = (x - x.mean((0, 1))) / torch.sqrt(x.var((0, 1), unbiased=False) + 1e-5)
print("torch on channels-last (32, 8, 8):", tuple(wrong.shape), "no error")
print("max |torch - per-channel normalisation|:", f"{(wrong - by_hand).abs().max():.3f}")
assert wrong.shape == right.shape == (B, L, C)
assert torch.allclose(right, by_hand, atol=1e-5)
assert not torch.allclose(wrong, by_hand, atol=1e-2)

# %% [markdown]
# The running mean gives it away: it holds the mean of each *time step*, not of each channel.
# The channels' offsets run from -2 to 2, so the right running mean after one step (momentum
# 0.1) runs from about -0.2 to 0.2; torch's is about 0 everywhere.

# %%
print("torch running_mean:", [round(v, 3) for v in wrong_bn.running_mean.tolist()])
print("0.1 * per channel: ", [round(v, 3) for v in (0.1 * x.mean((0, 1))).tolist()])
assert torch.allclose(wrong_bn.running_mean, 0.1 * x.mean((0, 2)), atol=1e-6)  # over B and C
assert not torch.allclose(wrong_bn.running_mean, 0.1 * x.mean((0, 1)), atol=1e-2)
assert wrong_bn.running_mean.abs().max() < 0.05
assert (0.1 * x.mean((0, 1))).abs().max() > 0.15

# %% [markdown]
# ## The other way round: shapekit given torch's layout
#
# Hand shapekit's channels-last layer torch's `(B, C, L)` and it says so, and says what to do.

# %%
try:
    shapekit.nn.BatchNorm1d(68)(torch.randn(32, 68, 4))
    raise AssertionError("shapekit's BatchNorm1d(68) should reject (32, 68, 4)")
except shapekit.ShapeError as err:
    message = str(err)
    print("shapekit:", message)
assert "BatchNorm1d expected x: (batch, *time, 68 = dim), got (32, 68, 4)" in message
assert "torch's (batch, channels, length) layout" in message
assert "pass x.transpose(1, 2)" in message
