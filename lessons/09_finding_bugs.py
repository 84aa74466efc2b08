"""Finding shape bugs in the lecture's code with trace, explain and detect.

    python lessons/09_finding_bugs.py

Seven buggy versions of code from the lecture, each as a new user would write it. Two crash, and
the question is only where and why: `shapekit.trace` shows the model layer by layer up to the
failing one, and `shapekit.explain()` turns torch's terse message into one that names the line,
the operands and a fix. The other five crash nowhere, or far from the cause: `shapekit.detect()`
finds them. Every claim below is asserted.
"""

# %% [markdown]
# # Setup: the lecture's hierarchical model, with torch's layers
#
# The lecture's WaveNet, written the way many people first port it to `torch.nn`: torch's
# `Embedding`, `Linear`, `BatchNorm1d` and `Tanh`, with the lecture's `FlattenConsecutive` as a
# small module. It trains on batches of 32 contexts of 8 characters.

# %%
import warnings

import torch
import torch.nn.functional as F

import shapekit

torch.manual_seed(42)


class FlattenConsecutive(torch.nn.Module):
    """The lecture's layer: (B, T, C) -> (B, T // n, C * n), squeezing a time axis of 1."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        x = x.view(B, T // self.n, C * self.n)
        if x.shape[1] == 1:
            x = x.squeeze(1)
        return x


def wavenet(n_embd: int = 24, n_hidden: int = 128, flatten=FlattenConsecutive):
    layers = [torch.nn.Embedding(27, n_embd)]
    fan_in = 2 * n_embd
    for _ in range(3):
        layers += [flatten(2), torch.nn.Linear(fan_in, n_hidden, bias=False),
                   torch.nn.BatchNorm1d(n_hidden), torch.nn.Tanh()]
        fan_in = 2 * n_hidden
    return torch.nn.Sequential(*layers, torch.nn.Linear(n_hidden, 27))


def pitfalls(caught: list) -> list[shapekit.PitfallWarning]:
    """The PitfallWarnings among recorded warnings, printed as a user would see them."""
    found = [w.message for w in caught if issubclass(w.category, shapekit.PitfallWarning)]
    for w in found:
        print(f"PitfallWarning [{w.rule}]: {w}\n")
    return found


Xb = torch.randint(0, 27, (32, 8))  # a batch of 32 contexts of 8 characters
Yb = torch.randint(0, 27, (32,))

# %% [markdown]
# # Bug 1 (a crash): where does it fail? `trace`
#
# Running the model raises deep inside torch. `shapekit.trace` runs one forward with hooks and
# tabulates every layer's input and output shapes. The forward fails, and the table still shows
# every layer up to the failing one, then that layer with its input and the error.

# %%
model = wavenet()
try:
    model(Xb)
except RuntimeError as err:
    print("torch says:", err)

t = shapekit.trace(model, Xb)
print(t)
assert t.failed
bad = t.failed_row
assert bad.type == "BatchNorm1d" and bad.input_shapes == ((32, 4, 128),)

# %% [markdown]
# The layer before it, `Linear`, returned `(32, 4, 128)`: the lecture's layers work on
# `(B, T, C)`, and torch's `BatchNorm1d` wants the channels on axis 1.

# %% [markdown]
# # Bug 1, explained: `explain()`
#
# Inside `shapekit.explain()` torch's error comes back as a `ShapeError`, chained from it, that
# names the user's line, the failing module, its input and a fix.

# %%
try:
    with shapekit.explain():
        logits = model(Xb)
except shapekit.ShapeError as err:
    print(err)
    explained = err
assert isinstance(explained.__cause__, RuntimeError)  # torch's own error is kept
assert "BatchNorm1d(128)" in explained.where
assert explained.where.split(":")[0].endswith(".py")  # the user's own file:line
assert explained.got == "input: (32, 4, 128) float32"
assert "x.transpose(1, 2)" in explained.fix

# %% [markdown]
# # Bug 2 (silent): the "fix" that reshapes instead of transposing
#
# A natural first fix is a layer that hands BatchNorm the `(B, C, T)` it wants... with `view`.
# The shapes now fit and the model trains. But `view` never moves data: it reads the numbers in
# memory order, so the "channels" it hands over are scrambled. `detect()` catches it.


# %%
class ChannelsFirst(torch.nn.Module):
    """Wrap a torch layer that wants (B, C, T) for the lecture's (B, T, C) tensors: buggy."""

    def __init__(self, layer: torch.nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 2:
            return self.layer(x)
        B, T, C = x.shape
        return self.layer(x.view(B, C, T)).view(B, T, C)  # the bug: view is not a transpose


def wavenet_patched(wrap, flatten=FlattenConsecutive):
    model = wavenet(flatten=flatten)
    for i, layer in enumerate(model):
        if isinstance(layer, torch.nn.BatchNorm1d):
            model[i] = wrap(layer)
    return model


torch.manual_seed(42)
patched = wavenet_patched(ChannelsFirst)
assert patched(Xb).shape == (32, 27)  # it runs

with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    with shapekit.detect():
        loss = F.cross_entropy(patched(Xb), Yb)
found = pitfalls(caught)
assert {w.rule for w in found} == {"view-transposes"}
assert "x.transpose(1, 2)" in str(found[0])

# %% [markdown]
# # Bug 3 (a crash): the right fix exposes a `view` on a transposed tensor
#
# So: `transpose(1, 2)` in and out, as both tools said. Now the *next* layer fails. The
# lecture's `FlattenConsecutive` uses `view`, and `view` cannot regroup a transposed tensor
# without copying it. `explain()` names that line and says what to use instead.


# %%
class ChannelsFirstFixed(ChannelsFirst):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 2:
            return self.layer(x)
        return self.layer(x.transpose(1, 2)).transpose(1, 2)  # (B, C, T) in, (B, T, C) out


torch.manual_seed(42)
fixed = wavenet_patched(ChannelsFirstFixed)
try:
    with shapekit.explain():
        fixed(Xb)
except shapekit.ShapeError as err:
    print(err)
    explained = err
assert "x.view(B, T // self.n, C * self.n)" in explained.where
assert explained.fix.startswith("use x.reshape(B, T // self.n, C * self.n)")

# %% [markdown]
# With `reshape` in `FlattenConsecutive` (it copies only when it must), one training step under
# `detect()` is silent; warnings are errors here, to prove it.


# %%
class FlattenConsecutiveReshape(FlattenConsecutive):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        x = x.reshape(B, T // self.n, C * self.n)
        return x.squeeze(1) if x.shape[1] == 1 else x


torch.manual_seed(42)
fixed = wavenet_patched(ChannelsFirstFixed, flatten=FlattenConsecutiveReshape)
with warnings.catch_warnings():
    warnings.simplefilter("error", shapekit.PitfallWarning)
    with shapekit.detect():
        loss = F.cross_entropy(fixed(Xb), Yb)
        loss.backward()
print("fixed model, one step under detect(): loss", round(loss.item(), 4), "and no warning")

# %% [markdown]
# # Bug 4 (silent): the lecture's own BatchNorm bug
#
# The lecture's hand-written `BatchNorm1d`, torchified, as first written: statistics over axis 0
# only. On `(B, T, C)` that gives `(1, T, C)` statistics, and the running buffers silently turn
# from `(C,)` into `(1, T, C)`. The lecture found it by printing shapes; `detect()` flags the
# assignment that changes the buffer's shape.


# %%
class LectureBatchNorm1d(torch.nn.Module):
    first_attempt = True  # statistics over axis 0 only, as the lecture first wrote them

    def __init__(self, dim: int, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self.gamma = torch.nn.Parameter(torch.ones(dim))
        self.beta = torch.nn.Parameter(torch.zeros(dim))
        self.register_buffer("running_mean", torch.zeros(dim))
        self.register_buffer("running_var", torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            dim = 0 if self.first_attempt or x.ndim == 2 else (0, 1)
            xmean = x.mean(dim, keepdim=True)  # the bug: (1, T, C) for (B, T, C) and dim 0
            xvar = x.var(dim, keepdim=True)
        else:
            xmean, xvar = self.running_mean, self.running_var
        out = self.gamma * (x - xmean) / torch.sqrt(xvar + self.eps) + self.beta
        if self.training:
            with torch.no_grad():
                self.running_mean = (1 - self.momentum) * self.running_mean + self.momentum * xmean
                self.running_var = (1 - self.momentum) * self.running_var + self.momentum * xvar
        return out


torch.manual_seed(42)
lecture = wavenet_patched(lambda bn: LectureBatchNorm1d(bn.num_features))
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    with shapekit.detect():
        loss = F.cross_entropy(lecture(Xb), Yb)
found = pitfalls(caught)
assert [w.rule for w in found] == ["buffer-shape-change"] * 2  # running_mean, running_var
assert lecture[3].running_mean.shape == (1, 4, 128)  # it really happened

# %% [markdown]
# `trace` shows the same model without complaint: every layer's output shape is right. The bug is
# in a buffer, and only in the numbers.

# %%
t = shapekit.trace(lecture, Xb)
assert not t.failed
assert [row.output_shape for row in t.rows][-1] == (32, 27)

# %% [markdown]
# The lecture itself writes its layers as plain Python classes, not `nn.Module`s: no registered
# buffers for anything to watch. `detect()` still sees the update
# `self.running_mean = (1 - m) * self.running_mean + m * xmean` broadcast the `(C,)` statistic up
# under `no_grad`, and names the line.


# %%
class PlainBatchNorm1d:
    """The lecture's layer as the lecture writes it, before the fix."""

    def __init__(self, dim: int, eps: float = 1e-5, momentum: float = 0.1) -> None:
        self.eps, self.momentum, self.training = eps, momentum, True
        self.gamma, self.beta = torch.ones(dim), torch.zeros(dim)
        self.running_mean, self.running_var = torch.zeros(dim), torch.ones(dim)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        xmean = x.mean(0, keepdim=True)  # the bug: (1, T, C) for (B, T, C)
        xvar = x.var(0, keepdim=True)
        self.out = self.gamma * (x - xmean) / torch.sqrt(xvar + self.eps) + self.beta
        with torch.no_grad():
            self.running_mean = (1 - self.momentum) * self.running_mean + self.momentum * xmean
            self.running_var = (1 - self.momentum) * self.running_var + self.momentum * xvar
        return self.out


plain = PlainBatchNorm1d(128)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    with shapekit.detect():
        plain(torch.randn(32, 4, 128))
found = pitfalls(caught)
assert [w.rule for w in found] == ["running-stat-growth"] * 2
assert plain.running_mean.shape == (1, 4, 128)

# %% [markdown]
# # Bug 5 (far from the cause): sampling in training mode
#
# The lecture's layer after its fix, statistics over `(0, 1)`. After training, sampling feeds one
# context at a time: a batch of one. With the layers still in training mode, the last
# BatchNorm's batch variance of one example is 0 / 0. The NaN spreads, and the crash comes three
# steps later in `torch.multinomial`, whose own message says nothing about BatchNorm. `detect()`
# warns at the variance, and re-raises the crash with the pitfall that made the NaN.


# %%
class LectureBatchNorm1dFixed(LectureBatchNorm1d):
    first_attempt = False


def trained_sampler() -> torch.nn.Sequential:
    torch.manual_seed(42)
    model = wavenet_patched(lambda bn: LectureBatchNorm1dFixed(bn.num_features))
    model(Xb)  # a training batch: the running statistics now mean something
    return model


sampler = trained_sampler()
context = torch.zeros(1, 8, dtype=torch.long)  # "........"
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    try:
        with shapekit.detect():
            logits = sampler(context)  # (1, 27); model.eval() was forgotten
            probs = F.softmax(logits, dim=1)
            ix = torch.multinomial(probs, num_samples=1)
    except RuntimeError as err:
        print("the crash, under detect():", err, "\n")
        crashed = err
found = pitfalls(caught)
assert "probability tensor contains" in str(crashed.__cause__)
assert "[var-single-element]" in str(crashed)  # tied back to the variance of one example
assert {w.rule for w in found} == {"var-single-element"}
assert "model.eval()" in str(found[0])

sampler = trained_sampler()  # the NaN went into the running statistics: start again
sampler.eval()  # the fix: running statistics for a single example
with torch.no_grad():
    probs = F.softmax(sampler(context), dim=1)
assert torch.isfinite(probs).all()

# %% [markdown]
# # Bug 6 (silent): softmax over the wrong axis while sampling
#
# `F.softmax(logits, dim=0)` on `(1, 27)` normalises each column over the batch of one: every
# probability is 1.0, `multinomial` picks uniformly, and the names come out as noise.

# %%
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    with shapekit.detect(), torch.no_grad():
        probs = F.softmax(sampler(context), dim=0)
found = pitfalls(caught)
assert torch.equal(probs, torch.ones(1, 27))
assert {w.rule for w in found} == {"softmax-dim0"}

# %% [markdown]
# # Bug 7 (silent): makemore's bigram normalisation, and `strict=True`
#
# From makemore part 1: normalise bigram counts row by row. Without `keepdim=True` the row sums
# line up with the columns. `detect(strict=True)` raises a `ShapeError` instead of warning, which
# is what a test suite wants.

# %%
N = torch.randint(1, 100, (27, 27)).float()  # bigram counts
try:
    with shapekit.detect(strict=True):
        P = N / N.sum(1)
except shapekit.ShapeError as err:
    print(err)
    strict_error = err
assert "N.sum(1, keepdim=True)" in strict_error.fix
assert "reduction-broadcast" in str(strict_error)

P = N / N.sum(1, keepdim=True)
assert torch.allclose(P.sum(1), torch.ones(27))

# %% [markdown]
# # Summary
#
# | bug | symptom | found by |
# |---|---|---|
# | torch `BatchNorm1d` on `(B, T, C)` | crash deep in torch | `trace` (where), `explain()` (fix) |
# | `view(B, C, T)` as a transpose | none | `detect()`: [`view-transposes`][vt] |
# | `view` after a transpose | crash in the next layer | `explain()`: use `reshape` |
# | statistics over axis 0 of `(B, T, C)` | none | `detect()`: [`buffer-shape-change`][bsc] |
# | sampling in training mode | crash 3 steps later | `detect()`: [`var-single-element`][vse] |
# | `softmax(dim=0)` while sampling | noise | `detect()`: [`softmax-dim0`][sd0] |
# | `N / N.sum(1)` | rows do not sum to 1 | `detect(strict=True)`: [`reduction-broadcast`][rb] |
#
# [vt]: https://shapekit.readthedocs.io/en/latest/pitfalls/view-transposes/
# [bsc]: https://shapekit.readthedocs.io/en/latest/pitfalls/buffer-shape-change/
# [vse]: https://shapekit.readthedocs.io/en/latest/pitfalls/var-single-element/
# [sd0]: https://shapekit.readthedocs.io/en/latest/pitfalls/softmax-dim0/
# [rb]: https://shapekit.readthedocs.io/en/latest/pitfalls/reduction-broadcast/
