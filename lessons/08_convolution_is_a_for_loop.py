"""Convolution is a for loop: the hierarchical model slid over a whole name in one pass.

    python lessons/08_convolution_is_a_for_loop.py

The model of lesson 07 predicts one character from a window of 8. A name of n characters has
n + 1 windows, and running the model on each is a for loop. The loop repeats work: neighbouring
windows fuse the same pairs of characters. Written as dilated causal convolutions, the same
weights compute every pair once and every position in one call, and give the same numbers.
"""

# %% [markdown]
# # A quickly trained hierarchical model
#
# The weights only need to be trained enough to be interesting: 1,000 steps of the lecture's loop
# (written out in lesson 07; `shapekit.lecture.train` runs the same loop) are enough. `load_names()`
# finds makemore's names file, or falls back to the `names` package's first names offline (and
# says so).

# %%
import statistics
import time

import torch
import torch.nn.functional as F

import shapekit
from shapekit.lecture import build_model, pad_names, to_conv, train, windows_loop

names = shapekit.lecture.load_names()
print(f"data: {len(names.words):,} names from {names.source}")
splits = shapekit.lecture.make_splits(names.words)
dev = shapekit.lecture.split_words(names.words)[1]

torch.manual_seed(42)
model = build_model("wavenet")
train(model, splits, steps=1_000, progress=False)
model.eval()  # BatchNorm from now on uses its running statistics: a fixed per-channel affine

# %% [markdown]
# # One name, position by position
#
# `pad_names` puts 8 dots in front of a name. Window `t` is `X[:, t : t + 8]`, and its target is
# the character after it; the window model turns each window into 27 logits.

# %%
word = dev[0]
X, Y = pad_names([word], block_size=8)  # X: (1, 8 + n), Y: (1, n + 1)
n = len(word)
print(f"{word!r}: X {tuple(X.shape)}, Y {tuple(Y.shape)}")
assert X.shape == (1, 8 + n) and Y.shape == (1, n + 1)
for t in range(n + 1):
    window = shapekit.lecture.decode(X[0, t : t + 8])
    print(f"  window {t}: {window} -> {shapekit.lecture.decode([Y[0, t]])}")

with torch.no_grad():
    looped = windows_loop(model, X)  # n + 1 calls of model(X[:, t : t + 8]): (1, n + 1, 27)
print("for loop:", tuple(looped.shape))
assert looped.shape == (1, n + 1, 27)

# %% [markdown]
# # The same weights as convolutions
#
# Level 1 of the model fuses characters `(t, t+1)`: that is a `Conv1d` with kernel 2 sliding one
# step at a time. Level 2 fuses two level-1 outputs that are 2 steps apart, `(t, t+2)`: kernel 2,
# dilation 2. Level 3: dilation 4. The `Linear` weights become the kernels (the earlier step's
# channels first, as `FlattenConsecutive` lays them out), and eval-mode BatchNorm folds into each
# kernel's scale and bias. The result only looks back: position `t` sees `X[:, t : t + 8]`.

# %%
conv = to_conv(model)
print(conv)
assert [c.dilation[0] for c in conv.convs] == [1, 2, 4]
with torch.no_grad():
    convolved = conv(X)  # one call: (1, 8 + n) -> (1, n + 1, 27)
diff = (convolved - looped).abs().max().item()
print(f"conv: {tuple(convolved.shape)}, max |conv - loop| = {diff:.1e}")
assert convolved.shape == looped.shape
assert diff <= 1e-5

# %% [markdown]
# Causal means no position sees the future: change the name's last character and only the last
# window, the one that contains it, changes.

# %%
changed = X.clone()
changed[0, -1] = (changed[0, -1] % 26) + 1  # another letter
with torch.no_grad():
    moved = (conv(changed) - convolved).abs().amax(dim=2)[0]  # (n + 1,): change per position
print("largest change per position:", [f"{m:.2f}" for m in moved.tolist()])
assert (moved[:-1] == 0).all() and moved[-1] > 0

# %% [markdown]
# # Where the loop wastes work
#
# Count the rows each level's weights are applied to. Each window runs 4 pairs through level 1,
# 2 through level 2 and 1 through level 3, so the loop does `4 (n+1)`, `2 (n+1)` and `n+1`. The
# window at `t + 2` repeats three of the four level-1 pairs of the window at `t`. The convolution
# computes each pair once: `(8+n) - 1`, `- 3`, `- 7` positions per level.

# %%
rows = {}


def count_rows(layer, inputs, output):
    rows[layer] = rows.get(layer, 0) + output.numel() // output.shape[-1]


linears = [m for m in model.layers if isinstance(m, shapekit.nn.Linear)][:3]
hooks = [layer.register_forward_hook(count_rows) for layer in linears]
with torch.no_grad():
    windows_loop(model, X)
for hook in hooks:
    hook.remove()
loop_rows = [rows[layer] for layer in linears]
with torch.no_grad():
    h = conv.embedding(X).transpose(1, 2)  # (1, C, 8 + n)
    conv_rows = []
    for level in conv.convs:
        h = torch.tanh(level(h))  # (1, 128, positions left)
        conv_rows.append(h.shape[-1])
print("rows per level, loop:", loop_rows, " conv:", conv_rows)
assert loop_rows == [4 * (n + 1), 2 * (n + 1), n + 1]
assert conv_rows == [n + 7, n + 5, n + 1]
# Those Conv1d calls are the convolution ConvWaveNet computes (as a matmul per tap):
assert (conv.head(h.transpose(1, 2)) - convolved).abs().max().item() <= 1e-5

# %% [markdown]
# # The whole dev set
#
# Pad every dev name into one batch. Positions past a name's end get the target -1, which
# `cross_entropy(..., ignore_index=-1)` skips, so the loss is over exactly the dev examples of
# `build_dataset`, and equals the lecture's `split_loss` on them.

# %%
Xd, Yd = pad_names(dev, block_size=8)
with torch.no_grad():
    conv_logits, loop_logits = conv(Xd), windows_loop(model, Xd)
    conv_loss = F.cross_entropy(conv_logits.flatten(0, 1), Yd.flatten(), ignore_index=-1).item()
    loop_loss = F.cross_entropy(loop_logits.flatten(0, 1), Yd.flatten(), ignore_index=-1).item()
    split_loss = F.cross_entropy(model(splits.Xdev), splits.Ydev).item()
print(f"{len(dev):,} dev names, X {tuple(Xd.shape)}: dev loss conv {conv_loss:.4f}, "
      f"loop {loop_loss:.4f}, one batch of examples {split_loss:.4f}")
assert (conv_logits - loop_logits).abs().max().item() <= 1e-5
assert abs(conv_loss - loop_loss) <= 1e-5 and abs(conv_loss - split_loss) <= 1e-5

# %% [markdown]
# How much less work is that? Each row costs `fan_in * fan_out` multiply-adds at its level (the
# final `Linear` costs the same both ways). For the dev batch, the counts of the previous section:

# %%
B, L = Xd.shape
P = L - 7  # positions per name
sizes = [layer.fan_in * layer.fan_out for layer in linears]  # 48*128, 256*128, 256*128
head = model.layers[-1].fan_in * model.layers[-1].fan_out


def multiply_adds(rows_per_level: list[int]) -> int:
    return sum(r * s for r, s in zip(rows_per_level, sizes, strict=True)) + B * P * head


loop_work = multiply_adds([4 * B * P, 2 * B * P, B * P])
conv_work = multiply_adds([B * (L - 1), B * (L - 3), B * (L - 7)])
print(f"multiply-adds: loop {loop_work / 1e9:.2f} G, conv {conv_work / 1e9:.2f} G "
      f"({loop_work / conv_work:.2f}x less work)")
assert conv_work < loop_work

# %% [markdown]
# Less than one might hope: levels 2 and 3 cost five times level 1 per row, and the saving is
# mostly at level 1. It grows with depth: with 8 levels (a context of 256) the loop would redo
# almost everything, while the convolution's work per position stays the same.
#
# And the time each takes, measured side by side: the ratio of the medians of interleaved rounds,
# on the machine that built this page (on a shared machine it moves). `benchmarks/bench_conv.py`
# measures it with more rounds.

# %%
times = {"conv": [], "loop": []}
with torch.no_grad():
    for _ in range(3):
        for name, run in (("conv", lambda: conv(Xd)), ("loop", lambda: windows_loop(model, Xd))):
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
conv_s, loop_s = statistics.median(times["conv"]), statistics.median(times["loop"])
print(f"time, loop ({P} calls) / conv (1 call): {loop_s / conv_s:.1f}x "
      "(measured on the build machine)")
# Timings are printed, not asserted: a busy machine can reorder two close ones. The counts of
# work and of calls are what holds everywhere, and those are asserted.

# %% [markdown]
# That loop is already batched over all names at once, so each of its calls is big and the only
# saving left is the shared work. The lecture draws it one name at a time: for one name the loop
# calls the whole model once per position, the convolution once per name. Timed name by name
# over the first 100 dev names (`benchmarks/bench_conv.py` times the whole dev set):

# %%
singles = [pad_names([w], block_size=8)[0] for w in dev[:100]]  # each (1, 8 + len(w))
positions = sum(x.shape[1] - 7 for x in singles)
times = {"conv": [], "loop": []}
with torch.no_grad():
    for _ in range(3):
        for name, run in (
            ("conv", lambda: [conv(x) for x in singles]),
            ("loop", lambda: [windows_loop(model, x) for x in singles]),
        ):
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
conv_s, loop_s = statistics.median(times["conv"]), statistics.median(times["loop"])
print(f"name by name, time, loop ({positions:,} calls) / conv ({len(singles)} calls): "
      f"{loop_s / conv_s:.1f}x (measured on the build machine)")
assert positions == sum(len(w) + 1 for w in dev[:100])  # one loop call per dev example

# %% [markdown]
# # Why it is faster
#
# - **Shared computation.** A window's level-1 pairs are its neighbours' pairs too; the loop
#   computes them again for every window that contains them, the convolution once (and
#   likewise for level 2).
# - **One pass.** The loop calls the model once per position, each call a chain of about 20
#   small operations; the convolution makes one call. The fewer the names, the more this
#   per-call cost counts.
# - **A kernel of 2 is two matmuls.** `ConvWaveNet` applies each level as one matmul per tap
#   over every position at once (step `t`, and step `t + d` shifted by `d` rows): the same
#   convolution as calling the `Conv1d` (checked above), without the fixed cost per call that
#   torch's Conv1d kernel has on a CPU.
# - **Folded BatchNorm.** In eval mode BatchNorm is a fixed scale and shift per channel, which
#   the convolution's weights and bias absorb: four elementwise operations fewer per level.
#
# The price: the padded batch also computes positions past each name's end (ignored by the
# loss), which the one batch of `build_dataset` examples never does. The lecture's WaveNet is
# exactly this structure; training on random windows is fine, and the convolution is how you run
# it over whole sequences.
