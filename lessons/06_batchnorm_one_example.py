"""BatchNorm in training mode on one example: an error, a NaN, or a clear message.

    python lessons/06_batchnorm_one_example.py

In training mode BatchNorm normalises with the mean and variance of the batch. With one example
there is one value per channel, and the (Bessel-corrected) variance of one value is 0 / 0. Torch's
layer refuses, the lecture's hand-written layer returns NaN, shapekit's says what to do. In eval
mode all of them use their running statistics, and one example is fine.
"""

# %% [markdown]
# # Three layers, warmed up on real batches
#
# Torch's `nn.BatchNorm1d`, a lecture-style layer written right here, and shapekit's. Each sees a
# few training batches of 32 first, so its running statistics mean something.

# %%
import warnings

import torch

import shapekit

torch.manual_seed(42)


class LectureBatchNorm1d:
    """The lecture's BatchNorm1d (with the (0, 1) fix): plain tensors, unbiased batch variance."""

    def __init__(self, dim: int, eps: float = 1e-5, momentum: float = 0.1) -> None:
        self.eps, self.momentum, self.training = eps, momentum, True
        self.gamma, self.beta = torch.ones(dim), torch.zeros(dim)
        self.running_mean, self.running_var = torch.zeros(dim), torch.ones(dim)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            dim = 0 if x.ndim == 2 else (0, 1)
            xmean = x.mean(dim, keepdim=True)
            xvar = x.var(dim, keepdim=True)  # unbiased: divides by (N - 1), which is 0 for N = 1
        else:
            xmean, xvar = self.running_mean, self.running_var
        out = self.gamma * (x - xmean) / torch.sqrt(xvar + self.eps) + self.beta
        if self.training:
            with torch.no_grad():
                self.running_mean = (1 - self.momentum) * self.running_mean + self.momentum * xmean
                self.running_var = (1 - self.momentum) * self.running_var + self.momentum * xvar
        return out


C = 10
torch_bn = torch.nn.BatchNorm1d(C)
lecture_bn = LectureBatchNorm1d(C)
ours = shapekit.nn.BatchNorm1d(C)
for _ in range(20):
    batch = torch.randn(32, C) * 2 + 1  # (B, C)
    for layer in (torch_bn, lecture_bn, ours):
        assert layer(batch).shape == (32, C)
print("running_mean after 20 batches (ours):", [round(v, 2) for v in ours.running_mean.tolist()])

one = torch.randn(1, C) * 2 + 1  # (1, C): a batch of one example
torch_before = torch_bn.running_mean.clone(), torch_bn.running_var.clone()
ours_before = ours.running_mean.clone(), ours.running_var.clone()
lecture_before = lecture_bn.running_mean.clone(), lecture_bn.running_var.clone()

# %% [markdown]
# ## Torch: an error

# %%
try:
    torch_bn(one)
    raise AssertionError("torch's BatchNorm1d should refuse one example in training mode")
except ValueError as err:
    message = str(err)
    print("torch:   ", message)
assert message == (
    "Expected more than 1 value per channel when training, got input size torch.Size([1, 10])"
)

# %% [markdown]
# ## The lecture's layer: NaN
#
# `x.var(0)` of one row divides by N - 1 = 0. Torch does print a warning on stderr, easy to miss
# in a training log; the output is NaN everywhere, and so is every loss computed from it.

# %%
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    out = lecture_bn(one)  # (1, C)
print("lecture: ", out)
print("  warning:", str(caught[0].message).split(".")[0])
assert out.shape == (1, C)
assert torch.isnan(out).all()
assert any("degrees of freedom is <= 0" in str(w.message) for w in caught)

# %% [markdown]
# Worse, the NaN went into the running variance too: the layer is now broken in eval mode as well,
# until its statistics are restored or relearned.

# %%
assert torch.isnan(lecture_bn.running_var).all()
assert torch.equal(lecture_bn.running_mean, 0.9 * lecture_before[0] + 0.1 * one)  # mean is fine
print("lecture running_var after that call:", lecture_bn.running_var)

# %% [markdown]
# ## shapekit: a ShapeError that names the fix
#
# It checks before computing anything, so its running statistics are untouched. (Torch's are too.)

# %%
try:
    ours(one)
    raise AssertionError("shapekit's BatchNorm1d should refuse one example in training mode")
except shapekit.ShapeError as err:
    message = str(err)
    print("shapekit:", message)
assert "more than one value per channel in training mode, got (1, 10)" in message
assert "call model.eval() before feeding a single example" in message
assert torch.equal(ours.running_mean, ours_before[0])
assert torch.equal(ours.running_var, ours_before[1])
assert torch.equal(torch_bn.running_mean, torch_before[0])
assert torch.equal(torch_bn.running_var, torch_before[1])

# %% [markdown]
# One example with several time steps is *not* one value per channel: `(1, T, C)` gives T values
# per channel, and all three layers run. (That is why, in lesson 01, only the model's last
# BatchNorm, which sees `(1, 128)`, complained.)

# %%
seq = torch.randn(1, 4, C)  # (B, T, C) with B = 1
assert torch.isfinite(shapekit.nn.BatchNorm1d(C)(seq)).all()
assert torch.isfinite(LectureBatchNorm1d(C)(seq)).all()
assert torch.isfinite(torch.nn.BatchNorm1d(C)(seq.transpose(1, 2))).all()  # torch: (B, C, T)
print("(1, 4, 10) in training mode: all three run")

# %% [markdown]
# ## .eval(): the running statistics, one example is fine
#
# The lecture's layer gets back the statistics it had before the NaN call. All three kept the
# same running statistics (the running variance is Bessel-corrected in each), so they agree.

# %%
torch_bn.eval()
ours.eval()
lecture_bn.running_mean, lecture_bn.running_var = lecture_before
lecture_bn.training = False

outs = {"torch": torch_bn(one), "lecture": lecture_bn(one), "shapekit": ours(one)}
for name, out in outs.items():
    print(f"{name:<8} eval:", [round(v, 3) for v in out[0].tolist()])
    assert out.shape == (1, C)
    assert torch.isfinite(out).all()
by_hand = (one - ours.running_mean) / torch.sqrt(ours.running_var + 1e-5)  # (1, C)
for out in outs.values():
    assert torch.allclose(out, by_hand, atol=1e-5)
