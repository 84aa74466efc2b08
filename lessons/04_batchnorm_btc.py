"""BatchNorm on (B, T, C): statistics over (0, 1), and the lecture's silent bug.

    python lessons/04_batchnorm_btc.py

In the hierarchical model BatchNorm gets `(B, T, C)` instead of `(B, C)`. The lecture's layer took
its statistics over axis 0 only, and nothing complained: broadcasting made every shape work out.
This lesson reproduces that bug in a small hand-written layer, then shows shapekit's BatchNorm1d
on the same data, checked against a hand computation.
"""

# %% [markdown]
# # The bug: statistics over axis 0 only
#
# The lecture's layer, as first written: mean and variance over `dim=0` with `keepdim=True`.
# For `(B, C)` input that is right. For `(B, T, C)` it gives `(1, T, C)`: a separate mean for
# every time step *and* channel, each from only B numbers.

# %%
import torch

import shapekit

torch.manual_seed(42)


class BuggyBatchNorm1d:
    """The lecture's BatchNorm1d before the fix (plain tensors, as in the lecture)."""

    def __init__(self, dim: int, eps: float = 1e-5, momentum: float = 0.1) -> None:
        self.eps, self.momentum, self.training = eps, momentum, True
        self.gamma, self.beta = torch.ones(dim), torch.zeros(dim)
        self.running_mean, self.running_var = torch.zeros(dim), torch.ones(dim)  # (C,)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            xmean = x.mean(0, keepdim=True)  # (1, T, C) for 3-D input: the bug
            xvar = x.var(0, keepdim=True)  # (1, T, C)
        else:
            xmean, xvar = self.running_mean, self.running_var
        out = self.gamma * (x - xmean) / torch.sqrt(xvar + self.eps) + self.beta
        if self.training:
            with torch.no_grad():
                # (C,) combined with (1, T, C) broadcasts to (1, T, C): the buffer changes shape.
                self.running_mean = (1 - self.momentum) * self.running_mean + self.momentum * xmean
                self.running_var = (1 - self.momentum) * self.running_var + self.momentum * xvar
        return out


# Data like the first BatchNorm of the model sees: 32 examples, 4 fused time steps, 68 channels,
# each channel with its own offset and scale.
x = torch.randn(32, 4, 68) * torch.linspace(0.5, 3.0, 68) + torch.linspace(-2.0, 2.0, 68)
B, T, C = x.shape

bug = BuggyBatchNorm1d(C)
print("running_mean before:      ", tuple(bug.running_mean.shape))
assert bug.running_mean.shape == (C,)
out = bug(x)  # (B, T, C)
print("output:                   ", tuple(out.shape))
print("running_mean after 1 step:", tuple(bug.running_mean.shape))
assert out.shape == (B, T, C)
assert bug.running_mean.shape == (1, T, C)  # silently (1, 4, 68), not (68,)
assert bug.running_var.shape == (1, T, C)

# %% [markdown]
# Nothing crashes. More training steps run, and eval mode runs too: `(B, T, C) - (1, T, C)`
# broadcasts fine. Every shape downstream is exactly what it should be.

# %%
for _ in range(3):
    out = bug(torch.randn(B, T, C) * torch.linspace(0.5, 3.0, 68) + torch.linspace(-2.0, 2.0, 68))
    assert out.shape == (B, T, C)
bug.training = False
out_eval = bug(x)  # (B, T, C)
finite = bool(torch.isfinite(out_eval).all())
print("eval output:              ", tuple(out_eval.shape), "finite:", finite)
assert out_eval.shape == (B, T, C)
assert torch.isfinite(out_eval).all()
assert bug.running_mean.shape == (1, T, C)

# %% [markdown]
# What is wrong is only in the numbers: each of the 4 * 68 statistics averages 32 values
# instead of 32 * 4 = 128, and the layer treats every time step as if it were a different
# channel. In the lecture, fixing it moved the loss from 1.941 / 2.029 to 1.912 / 2.022
# (train / val): a small gain, and no error message ever pointed at it.
#
# Even the lecture's fix, `x.mean((0, 1), keepdim=True)`, still turns the buffer into `(1, 1, C)`;
# harmless, but the buffer's shape still changes.

# %%
assert (0.9 * torch.zeros(C) + 0.1 * x.mean((0, 1), keepdim=True)).shape == (1, 1, C)

# %% [markdown]
# # shapekit's BatchNorm1d: statistics over every axis but the last
#
# Same data. The running statistics stay `(C,)`, and the output is exactly the hand computation
# with mean and (Bessel-corrected, as in the lecture) variance over axes `(0, 1)`.

# %%
bn = shapekit.nn.BatchNorm1d(C)  # unbiased=True: the lecture's normalisation
buffer = bn.running_mean.data_ptr()
out = bn(x)  # (B, T, C)
print("shapekit running_mean after 1 step:", tuple(bn.running_mean.shape))
assert out.shape == (B, T, C)
assert bn.running_mean.shape == bn.running_var.shape == (C,)
assert bn.running_mean.data_ptr() == buffer  # updated in place, never replaced

mean = x.mean((0, 1))  # (C,): one number per channel, from B*T = 128 values
var = x.var((0, 1), unbiased=True)  # (C,)
by_hand = (x - mean) / torch.sqrt(var + 1e-5)  # (B, T, C); gamma = 1, beta = 0 at the start
assert torch.allclose(out, by_hand, atol=1e-5)
assert torch.allclose(bn.running_mean, 0.1 * mean, atol=1e-6)
assert torch.allclose(bn.running_var, 0.9 + 0.1 * var, atol=1e-5)
print("output == (x - x.mean((0, 1))) / sqrt(x.var((0, 1)) + eps): True")

# %% [markdown]
# The buggy layer's first training output was a different normalisation of the same data:

# %%
bug_first = BuggyBatchNorm1d(C)(x)
print("max |buggy - correct| on the same batch:", f"{(bug_first - out).abs().max():.3f}")
assert not torch.allclose(bug_first, out, atol=1e-3)

# %% [markdown]
# Why shapekit's layer cannot have the bug:
#
# - it takes the statistics over `tuple(range(x.ndim - 1))`: every axis but the channels, so
#   `(0,)` for `(B, C)` and `(0, 1)` for `(B, T, C)`, and the result is always `(C,)`;
# - it does the lecture's update in place, `running_mean.mul_(1 - m).add_(m * xmean)`, and an
#   in-place update cannot change a tensor's shape: torch raises rather than broadcast into it.

# %%
try:
    m = bn.momentum
    xmean = x.mean(0, keepdim=True)  # (1, T, C): the buggy statistic
    bn.running_mean.clone().mul_(1 - m).add_(m * xmean)
    raise AssertionError("an in-place add of (1, T, C) into (C,) should fail")
except RuntimeError as err:
    print("in-place update with a (1, T, C) statistic:", err)
    assert "doesn't match the broadcast shape" in str(err)
assert bn.running_mean.shape == (C,)
