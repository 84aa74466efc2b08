"""Convolution is a for loop: the hierarchical model slid over a whole name in one pass.

    python -c "from shapekit.lecture import to_conv, build_model
    print(to_conv(build_model('wavenet').eval()))"

The window model maps 8 characters of context to the logits of the next one. Running it at every
position of a name is a for loop, and neighbouring windows recompute the same pairs: the window at
``t`` fuses steps ``(t, t+1)``, ``(t+2, t+3)``, ... and so does the window at ``t+2``.
``to_conv`` rewrites the model as dilated causal convolutions (kernel 2, dilation 1, 2, 4, ...),
so each pair, pair of pairs, ... is computed once and the loop runs inside torch's kernels::

    X, Y = pad_names(["emma", "ava"], block_size=8)  # X: (2, 12), Y: (2, 5)
    conv = to_conv(model.eval())
    logits = conv(X)                                 # (2, 5, 27), one row per position
    torch.testing.assert_close(logits, windows_loop(model, X))
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable
from typing import NoReturn

import torch
from jaxtyping import Float, Int
from torch import Tensor

from .. import nn
from ..checking import ShapeError, shape_text, shaped
from ._data import encode

__all__ = ["IGNORE_INDEX", "ConvWaveNet", "dilated", "pad_names", "to_conv", "windows_loop"]

IGNORE_INDEX = -1  # the target beyond a name's end: F.cross_entropy(..., ignore_index=-1)

_LAYOUT = (
    "Embedding, then blocks of [FlattenConsecutive(2), Linear, BatchNorm1d, Tanh], then Linear"
)
_BUILD = "convert the lecture's hierarchical model: build_model('hierarchical') or ('wavenet')"
_BUGGY_FIX = (
    "train the model with shapekit.nn.BatchNorm1d, e.g. build_model('hierarchical'); the "
    "lecture's buggy layer keeps statistics per time step, (1, T, C), and a convolution applies "
    "one kernel at every position, so it cannot normalise each position differently"
)


class ConvWaveNet(torch.nn.Module):
    """A hierarchical model as dilated causal convolutions: the logits at every position at once.

    ``x`` is ``(batch, length)`` character ids whose first ``block_size`` entries are the ``'.'``
    (0) context, as :func:`pad_names` builds them. Output position ``t`` holds the logits the window
    model gives for ``x[:, t : t + block_size]``, so there are ``length - block_size + 1`` of them.
    Level ``i`` is a ``Conv1d`` with kernel 2 and dilation ``2**i`` whose weights are the level's
    ``Linear`` with its eval-mode ``BatchNorm1d`` folded in; build it with :func:`to_conv`. Each
    level is applied by :func:`dilated` (a matmul per tap, the second shifted by the dilation): the
    same convolution, without the fixed cost per call of torch's Conv1d kernel on a CPU.

    >>> import torch
    >>> from shapekit.lecture._models import build_model
    >>> conv = to_conv(build_model("wavenet").eval())
    >>> conv(torch.zeros(32, 23, dtype=torch.long)).shape  # 23 - 8 + 1 positions
    torch.Size([32, 16, 27])
    """

    def __init__(
        self, embedding: nn.Embedding, convs: Iterable[torch.nn.Conv1d], head: nn.Linear
    ) -> None:
        super().__init__()
        self.embedding = embedding
        self.convs = torch.nn.ModuleList(convs)
        self.head = head
        self.block_size = 2 ** len(self.convs)  # each level halves the time steps of a window
        self.vocab_size = head.fan_out

    @shaped
    def forward(
        self, x: Int[Tensor, "batch length"]
    ) -> Float[Tensor, "batch length-{self.block_size}+1 {self.vocab_size}"]:
        if x.shape[1] < self.block_size:
            raise ShapeError(
                expected=f"x: (batch, length) with length >= {self.block_size} = block_size "
                "(the '.' context comes first)",
                got=shape_text(x.shape),
                where="ConvWaveNet",
                fix=f"prepend {self.block_size} zeros ('.') to every name: "
                f"X, Y = pad_names(words, {self.block_size})",
            )
        h = self.embedding(x)  # (B, L, C), channels last as in the window model
        for conv in self.convs:
            h = torch.tanh(dilated(conv, h))  # (B, L - dilation, H): pairs dilation steps apart
        return self.head(h)  # (B, L - block_size + 1, vocab)


def dilated(conv: torch.nn.Conv1d, h: Tensor) -> Tensor:
    """A kernel-2 ``Conv1d`` with dilation ``d`` applied to channels-last ``h``: ``(B, L, C) ->
    (B, L - d, H)``, ``y[t] = W[:, :, 0] @ h[t] + W[:, :, 1] @ h[t + d] + bias``.

    These are ``conv(h.transpose(1, 2)).transpose(1, 2)``'s numbers (to float rounding), computed
    as two matmuls over all ``B * L`` positions at once: one per tap, the second shifted by ``d``
    rows. torch's Conv1d kernels have a large fixed cost per call on a CPU (about 0.25 ms for one
    name here, several window-model calls' worth), which this form does not pay.

    >>> import torch
    >>> conv = torch.nn.Conv1d(3, 4, kernel_size=2, dilation=2)
    >>> h = torch.randn(5, 10, 3)  # (B, L, C)
    >>> y = dilated(conv, h)  # (5, 8, 4)
    >>> torch.allclose(y, conv(h.transpose(1, 2)).transpose(1, 2), atol=1e-6)
    True
    """
    batch, length, channels = h.shape
    d = conv.dilation[0]
    taps = conv.weight.permute(2, 1, 0).contiguous()  # (2, C, H): tap 0 sees t, tap 1 sees t + d
    hidden = taps.shape[2]
    rows = h.reshape(batch * length, channels)  # every position of every name, one per row
    # Row r of y pairs rows r and r + d: (B * L - d, H).
    y = rows[:-d] @ taps[0] if conv.bias is None else torch.addmm(conv.bias, rows[:-d], taps[0])
    y.addmm_(rows[d:], taps[1])
    # Each name's last d rows paired across into the next name: view past them, (B, L - d, H).
    return y.as_strided((batch, length - d, hidden), (length * hidden, hidden, 1))


def to_conv(model: nn.Sequential) -> ConvWaveNet:
    """Convert a trained hierarchical model, in eval mode, to its :class:`ConvWaveNet`.

    The model must be the lecture's hierarchical layout: ``Embedding``, then ``k`` blocks of
    ``[FlattenConsecutive(2), Linear(2C, H), BatchNorm1d(H), Tanh()]``, then ``Linear(H, vocab)``
    (block_size ``2**k``). Anything else raises ``ValueError`` saying which layer and what to do.
    The weights are copied: training the model afterwards does not change the conversion.

    >>> import torch
    >>> from shapekit.lecture._models import build_model
    >>> model = build_model("wavenet").eval()  # (B, 8) -> (B, 8, 24) -> ... -> (B, 27)
    >>> [conv.dilation for conv in to_conv(model).convs]
    [(1,), (2,), (4,)]
    """
    if not isinstance(model, nn.Sequential):
        kind = type(model)
        _refuse("model", f"a shapekit.nn.Sequential ({_LAYOUT})",
                f"{kind.__module__}.{kind.__qualname__}", _BUILD)
    layers = model.layers
    if not layers or not isinstance(layers[0], nn.Embedding):
        got = type(layers[0]).__name__ if layers else "an empty Sequential"
        _refuse("layers[0]", "shapekit.nn.Embedding", got, _BUILD)
    if len(layers) < 6 or (len(layers) - 2) % 4:
        _refuse("model", f"{_LAYOUT}: 4k + 2 layers", f"{len(layers)} layers", _BUILD)
    embedding, head = layers[0], layers[-1]
    channels = embedding.embedding_dim
    levels = []
    for start in range(1, len(layers) - 1, 4):
        flatten, linear, norm, tanh = layers[start : start + 4]
        _check_type(start, flatten, nn.FlattenConsecutive)
        _check_flatten(start, flatten, len(layers))
        _check_type(start + 1, linear, nn.Linear)
        if linear.fan_in != 2 * channels:
            _refuse(f"layers[{start + 1}] Linear", f"fan_in = 2 * {channels} = {2 * channels}",
                    f"fan_in={linear.fan_in}", f"build Linear({2 * channels}, ...)")
        _check_norm(start + 2, norm, linear.fan_out)
        _check_type(start + 3, tanh, nn.Tanh)
        levels.append((linear, norm))
        channels = linear.fan_out
    _check_type(len(layers) - 1, head, nn.Linear)
    if head.fan_in != channels:
        _refuse(f"layers[{len(layers) - 1}] Linear", f"fan_in = {channels}",
                f"fan_in={head.fan_in}", f"build Linear({channels}, vocab_size)")
    training = [f"layers[{name}]" if name else "model" for name, m in model.named_modules()
                if m.training]
    if training:
        _refuse("model", "eval mode (BatchNorm folds in its running statistics only in eval)",
                f"{training[0]} in training mode", "call model.eval() first")

    convs = [_fold(linear, norm, 2**i) for i, (linear, norm) in enumerate(levels)]
    return ConvWaveNet(copy.deepcopy(embedding), convs, copy.deepcopy(head))


def windows_loop(model: torch.nn.Module, x: Tensor, *, block_size: int | None = None) -> Tensor:
    """The for loop ``to_conv`` replaces: the window model at each position, one call per position.

    ``x`` is ``(batch, length)``; position ``t`` is ``model(x[:, t : t + block_size])``.
    ``block_size`` defaults to the product of the model's ``FlattenConsecutive`` sizes (8 for the
    lecture's models). Returns ``(batch, length - block_size + 1, vocab)``, like
    :class:`ConvWaveNet`.

    >>> import torch
    >>> from shapekit.lecture._models import build_model
    >>> windows_loop(build_model("wavenet").eval(), torch.zeros(32, 23, dtype=torch.long)).shape
    torch.Size([32, 16, 27])
    """
    if block_size is None:
        sizes = [m.n for m in model.modules() if isinstance(m, nn.FlattenConsecutive)]
        if not sizes:
            raise ValueError(
                "windows_loop expected a model with FlattenConsecutive layers (their sizes give "
                f"block_size), got {type(model).__name__} without any; fix: pass block_size=8"
            )
        block_size = math.prod(sizes)
    if not isinstance(x, Tensor) or x.ndim != 2 or x.shape[1] < block_size:
        got = shape_text(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ShapeError(
            expected=f"x: (batch, length) with length >= {block_size} = block_size",
            got=got,
            where="windows_loop()",
            fix=f"pad the names first: X, Y = pad_names(words, {block_size})",
        )
    positions = x.shape[1] - block_size + 1
    # The point of the lesson: a Python loop, and each window recomputes its neighbours' pairs.
    return torch.stack([model(x[:, t : t + block_size]) for t in range(positions)], dim=1)


def pad_names(words: Iterable[str], block_size: int = 8) -> tuple[Tensor, Tensor]:
    """Names as one padded batch: ``X`` ``(B, block_size + longest)``, ``Y`` ``(B, longest + 1)``.

    Row ``i`` of ``X`` is ``block_size`` zeros ('.'), then the name's ids, then zeros. ``Y[i, t]``
    is the character that follows window ``t`` (the name then '.'), and ``IGNORE_INDEX`` (-1)
    past the name's end, so ``F.cross_entropy(logits.flatten(0, 1), Y.flatten(),
    ignore_index=-1)`` is the mean loss over exactly the examples of ``build_dataset``.

    >>> X, Y = pad_names(["ab", "c"], block_size=3)  # longest name: 2
    >>> X.tolist()
    [[0, 0, 0, 1, 2], [0, 0, 0, 3, 0]]
    >>> Y.tolist()
    [[1, 2, 0], [3, 0, -1]]
    """
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ValueError(
            f"pad_names expected block_size: an int >= 1 (characters of context), got "
            f"{block_size!r}; fix: pass e.g. block_size=8 as in the lecture"
        )
    if isinstance(words, str):
        raise ValueError(
            f"pad_names expected a list of names, got the string {words!r} (it would be read as "
            f"{len(words)} one-letter names); fix: pad_names([{words!r}], {block_size})"
        )
    ids = [encode(w) for w in words]
    if not ids:
        raise ValueError(
            "pad_names expected at least one name, got none; fix: pass a non-empty list, e.g. "
            "the dev split of split_words(load_names().words)"
        )
    longest = max(map(len, ids))
    X = [[0] * block_size + w + [0] * (longest - len(w)) for w in ids]
    Y = [w + [0] + [IGNORE_INDEX] * (longest - len(w)) for w in ids]
    return torch.tensor(X, dtype=torch.long), torch.tensor(Y, dtype=torch.long)


def _fold(linear: nn.Linear, norm: nn.BatchNorm1d, dilation: int) -> torch.nn.Conv1d:
    """``Linear(2C, H)`` then eval ``BatchNorm1d(H)`` as one ``Conv1d(C, H, 2, dilation)``."""
    fan_in, hidden = linear.weight.shape
    w = linear.weight.detach()
    conv = torch.nn.Conv1d(fan_in // 2, hidden, kernel_size=2, dilation=dilation,
                           dtype=w.dtype, device=w.device)
    with torch.no_grad():
        # Eval BatchNorm is y = (z - mean) / sqrt(var + eps) * gamma + beta = z * scale + shift.
        scale = norm.gamma / torch.sqrt(norm.running_var + norm.eps)  # (H,)
        shift = norm.beta - norm.running_mean * scale  # (H,)
        if linear.bias is not None:
            shift = shift + linear.bias * scale
        # FlattenConsecutive's "b (t n) c -> b t (n c)" puts the earlier step's C inputs first:
        # rows [0, C) of the weight see tap 0 (step t), rows [C, 2C) tap 1 (step t + dilation).
        kernel = w.reshape(2, fan_in // 2, hidden).permute(2, 1, 0)  # (H, C, 2)
        conv.weight.copy_(kernel * scale[:, None, None])
        conv.bias.copy_(shift)
    return conv


def _check_type(index: int, layer: torch.nn.Module, kind: type) -> None:
    if not isinstance(layer, kind):
        _refuse(f"layers[{index}]", f"shapekit.nn.{kind.__name__} ({_LAYOUT})",
                type(layer).__name__, _BUILD)


def _check_flatten(index: int, flatten: nn.FlattenConsecutive, n_layers: int) -> None:
    if flatten.n == 2:
        return
    if n_layers == 6:  # one block: the flat model fuses the whole context in one Linear
        why = (f"a flat model (its {flatten.n} steps fused by one Linear) shares no work between "
               "neighbouring windows, so there is nothing for a convolution to reuse")
    else:
        why = "the convolution form has kernel 2: one pair of steps per level"
    _refuse(f"layers[{index}] FlattenConsecutive", "n=2", f"n={flatten.n}: {why}", _BUILD)


def _check_norm(index: int, norm: torch.nn.Module, hidden: int) -> None:
    stats = getattr(norm, "running_mean", None)
    stats_text = ""
    if isinstance(stats, Tensor):
        stats_text = f" with running_mean {shape_text(stats.shape)}"
    if not isinstance(norm, nn.BatchNorm1d):
        _refuse(f"layers[{index}]", "shapekit.nn.BatchNorm1d (one running mean and variance per "
                "channel)", f"{type(norm).__name__}{stats_text}", _BUGGY_FIX)
    if norm.dim != hidden:
        _refuse(f"layers[{index}] BatchNorm1d", f"dim = {hidden} (the Linear before it)",
                f"dim={norm.dim}", f"build BatchNorm1d({hidden})")


def _refuse(where: str, expected: str, got: str, fix: str) -> NoReturn:
    raise ValueError(f"to_conv: {where} expected {expected}, got {got}; fix: {fix}")
