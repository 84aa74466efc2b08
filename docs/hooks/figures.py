"""The pictures the site draws itself, from real shapekit structures and runs.

    python docs/hooks/figures.py OUT_DIR      write every figure as an SVG into OUT_DIR

The docs build calls these at build time (``docs/hooks/site.py``); nothing here is committed as an
image. Each picture is computed, not drawn by hand:

- ``wavenet_tree``: the hierarchical model as a tree of dilated causal convolutions, read from a
  built ``shapekit.nn.Sequential`` (its FlattenConsecutive blocks and their n, the Linear layers'
  sizes) and the shapes one real forward pass produces;
- ``batchnorm_axes``: which input values one channel's statistics are taken over, found by asking
  autograd which inputs one output of a real BatchNorm layer depends on;
- ``dilated_convolution``: the same model as the stack of dilated causal convolutions
  ``shapekit.lecture.to_conv`` builds (lesson 08), over every position of one padded name, the
  dilations read from its ``Conv1d`` levels;
- ``shape_table``: the per-layer shapes of one forward pass, as a markdown table.
"""

from __future__ import annotations

import io
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from shapekit import nn

# A context from the names data set: ".isabell" is followed by "a".
CONTEXT = ".isabell"


def lecture_model(name: str = "wavenet") -> nn.Sequential:
    """The lecture's model ``name`` (``shapekit.lecture.build_model``), seeded as in the lecture."""
    from shapekit.lecture._models import build_model

    torch.manual_seed(42)
    return build_model(name)


def svg_bytes(fig: plt.Figure) -> bytes:
    """The figure as SVG bytes (sharp at any width and pixel ratio); the figure is closed."""
    buffer = io.BytesIO()
    with matplotlib.rc_context({"svg.hashsalt": "shapekit", "svg.fonttype": "path"}):
        fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    return buffer.getvalue()


def layer_shapes(
    model: torch.nn.Module, x: torch.Tensor
) -> list[tuple[str, torch.nn.Module, tuple]]:
    """``(name, layer, output shape)`` of each direct child of ``model``, one forward of ``x``."""
    rows: list[tuple[str, torch.nn.Module, tuple]] = []
    hooks = [
        child.register_forward_hook(
            lambda mod, args, out, name=name: rows.append((name, mod, tuple(out.shape)))
        )
        for name, child in model.named_children()
    ]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for hook in hooks:
            hook.remove()
    return rows


@dataclass
class Level:
    """One FlattenConsecutive(n) block and the layers up to the next one."""

    n: int
    layers: list[str] = field(default_factory=list)
    shape: tuple = ()


@dataclass
class Hierarchy:
    block_size: int
    embedding: str
    embedding_shape: tuple
    levels: list[Level]
    head: str
    head_shape: tuple


def read_hierarchy(model: nn.Sequential) -> Hierarchy:
    """Walk a built hierarchical ``Sequential``: its embedding, FlattenConsecutive levels and head.

    The block size is the product of the levels' n; the shapes come from one forward pass of a
    batch of 4 contexts in eval mode.
    """
    layers = list(model.layers)
    flattens = [layer for layer in layers if isinstance(layer, nn.FlattenConsecutive)]
    if not isinstance(layers[0], nn.Embedding) or not flattens:
        raise ValueError(
            "read_hierarchy expected a Sequential that starts with an Embedding and has "
            f"FlattenConsecutive layers, got {[type(layer).__name__ for layer in layers]}"
        )
    block_size = math.prod(layer.n for layer in flattens)
    model.eval()
    shapes = layer_shapes(model, torch.zeros(4, block_size, dtype=torch.long))
    levels: list[Level] = []
    for (_, layer, shape) in shapes[1:-1]:
        if isinstance(layer, nn.FlattenConsecutive):
            levels.append(Level(layer.n))
        else:
            levels[-1].layers.append(_describe(layer))
            levels[-1].shape = shape
    embedding = shapes[0]
    head = shapes[-1]
    return Hierarchy(block_size, _describe(embedding[1]), embedding[2], levels,
                     _describe(head[1]), head[2])


def _describe(layer: torch.nn.Module) -> str:
    if isinstance(layer, nn.Linear):
        return f"Linear({layer.fan_in}, {layer.fan_out})"
    if isinstance(layer, nn.Embedding):
        vocab, dim = layer.weight.shape
        return f"Embedding({vocab}, {dim})"
    if isinstance(layer, nn.BatchNorm1d):
        return f"BatchNorm1d({layer.gamma.shape[0]})"
    return type(layer).__name__


def _shape(shape: tuple) -> str:
    return "(B, " + ", ".join(str(s) for s in shape[1:]) + ")"


def wavenet_tree(model: nn.Sequential, context: str = CONTEXT) -> plt.Figure:
    """Draw ``model`` as WaveNet's tree of dilated causal convolutions.

    Inputs at the bottom, one per time step; each level fuses n neighbours of the level below
    (dilation = the product of the n below it); faint dots are the positions a convolution over
    every time step would also compute (lesson 08); the output at the top.
    """
    tree = read_hierarchy(model)
    T = tree.block_size
    context = (context * T)[-T:] if len(context) < T else context[-T:]
    n_levels = len(tree.levels)
    fig, ax = plt.subplots(figsize=(11, 1.6 * (n_levels + 2)))
    ax.set_xlim(-1.2, T + 7.5)
    ax.set_ylim(-1.1, n_levels + 1.7)
    ax.axis("off")

    ink, faint, accent = "#263238", "#cfd8dc", "#3f51b5"
    positions = list(range(T))  # x of each node of the current level: its last (newest) input
    for t, char in enumerate(context):
        ax.add_patch(plt.Rectangle((t - 0.32, -0.32), 0.64, 0.64, fc="#fff8e1", ec=ink, lw=1.2))
        ax.text(t, 0, char, ha="center", va="center", fontsize=15, family="monospace")
    ax.text(T - 0.2, 0, f"{tree.embedding} → {_shape(tree.embedding_shape)}\n"
            f"{T} input characters", va="center", fontsize=12, color=ink)

    dilation = 1
    for k, level in enumerate(tree.levels, 1):
        for t in range(T):
            ax.plot(t, k, "o", ms=7, color=faint, zorder=1)
        parents = []
        for j in range(len(positions) // level.n):
            children = positions[j * level.n:(j + 1) * level.n]
            x = children[-1]  # causal: the node sits at its newest input
            for c in children:
                ax.plot([c, x], [k - 1 + (0.32 if k == 1 else 0.1), k - 0.1], color=accent,
                        lw=1.6, zorder=2)
            ax.plot(x, k, "o", ms=11, color=accent, zorder=3)
            parents.append(x)
        positions = parents
        ax.text(T - 0.2, k, f"FlattenConsecutive({level.n}) → " + " → ".join(level.layers)
                + f"\ndilation {dilation} · {_shape(level.shape)}", va="center", fontsize=12,
                color=ink)
        dilation *= level.n

    top = n_levels + 1
    ax.plot([positions[-1], positions[-1]], [n_levels + 0.1, top - 0.25], color=accent, lw=1.6)
    ax.add_patch(plt.Rectangle((positions[-1] - 0.45, top - 0.25), 0.9, 0.5, fc="#e8eaf6",
                               ec=accent, lw=1.4))
    ax.text(positions[-1], top, "27", ha="center", va="center", fontsize=10, color=accent)
    ax.text(T - 0.2, top, f"{tree.head} → logits {_shape(tree.head_shape)}\n"
            "the next character", va="center", fontsize=12, color=ink)
    ax.set_title(f"The hierarchical model: {n_levels} levels of FlattenConsecutive over a block of "
                 f"{T} characters", fontsize=14)
    return fig


def reduced_mask(layer: torch.nn.Module, shape: tuple, index: tuple) -> torch.Tensor:
    """Which input values the output at ``index`` depends on: the values its statistics used.

    A BatchNorm output depends on its own input and, through the batch mean and variance, on every
    other value its channel's statistics are taken over; autograd finds exactly those.
    """
    torch.manual_seed(0)
    x = torch.randn(shape, requires_grad=True)
    layer.train()
    layer(x)[index].backward()
    return x.grad != 0


def _voxels(ax, mask: torch.Tensor, title: str, labels: tuple[str, ...], note: str) -> None:
    """Draw a 2-D or 3-D tensor as boxes, the values in ``mask`` highlighted.

    Axis 0 (the batch) goes into the page, axis 1 down the rows, axis 2 across the columns.
    """
    if mask.ndim == 2:
        mask = mask[:, :, None].transpose(1, 2)  # (B, 1, C): one row of C columns per example
    depth, rows, cols = mask.shape
    # voxels index [x, y, z]: columns across, the batch into the page, rows upwards (flipped so
    # that row 0 is on top). Two calls, so each set draws its own faces where the two meet.
    grid = mask.permute(2, 0, 1).flip(2).numpy()
    ax.voxels(~grid, facecolors=(0.80, 0.85, 0.89, 0.25), edgecolor=(0.3, 0.3, 0.3, 0.35),
              linewidth=0.5)
    ax.voxels(grid, facecolors=(1.0, 0.6, 0.0, 0.9), edgecolor=(0.45, 0.25, 0.0, 0.8),
              linewidth=0.6)
    ax.set_box_aspect((cols, depth, rows))
    ax.set_axis_off()
    ax.view_init(elev=22, azim=-62)
    ax.text(cols / 2, 0, -0.7, labels[-1] + " →", ha="center", va="top", fontsize=14)
    if len(labels) == 3:
        ax.text(-0.4, 0, rows / 2, labels[1] + " ↓", ha="right", va="center", fontsize=14)
    ax.text(cols + 0.3, depth / 2, -0.3, labels[0] + " ↗", ha="left", fontsize=14)
    ax.set_title(title, fontsize=13)
    ax.text2D(0.5, -0.1, note, transform=ax.transAxes, ha="center", va="top", fontsize=12)


def batchnorm_axes() -> plt.Figure:
    """Four real BatchNorm calls; in each, the values one channel's statistics average over."""
    B, C, L = 4, 5, 3
    c = 1
    panels = [
        (nn.BatchNorm1d(C), (B, C), (0, c), "shapekit / torch: (B, C)", ("B", "C"),
         "mean over B: one statistic per channel"),
        (torch.nn.BatchNorm1d(C), (B, C, L), (0, c, 0), "torch.nn.BatchNorm1d: (B, C, L)",
         ("B", "C", "L"), "mean over B and L (axes 0, 2)"),
        (nn.BatchNorm1d(C), (B, L, C), (0, 0, c), "shapekit.nn.BatchNorm1d: (B, L, C)",
         ("B", "L", "C"), "mean over B and L (axes 0, 1)"),
        (torch.nn.BatchNorm1d(4), (B, 4, 4), (0, c, 0), "torch given (B, L, C), L == C: wrong",
         ("B", "L", "C"), "silently averages over B and C, per time step"),
    ]
    # Two by two, so the labels stay readable at the width of the text column.
    fig = plt.figure(figsize=(9, 9))
    for i, (layer, shape, index, title, labels, note) in enumerate(panels, 1):
        ax = fig.add_subplot(2, 2, i, projection="3d")
        _voxels(ax, reduced_mask(layer, shape, index), title, labels, note)
    fig.suptitle("Which values BatchNorm averages for one channel (orange),\n"
                 "found with autograd from the real layers", fontsize=14)
    fig.subplots_adjust(wspace=0.05, hspace=0.35, left=0.01, right=0.99, top=0.86, bottom=0.08)
    return fig


def shape_table(model: torch.nn.Module, x: torch.Tensor) -> str:
    """A markdown table of one forward pass: ``shapekit.trace(...).to_markdown()`` when shapekit
    has a trace (``shapekit/debug/_trace.py``); otherwise each direct child's output shape and
    params."""
    try:
        from shapekit.debug._trace import trace
    except ImportError:
        trace = None
    if trace is not None:
        return trace(model, x).to_markdown()
    lines = ["| layer | type | output shape | params |", "|---|---|---|---:|",
             f"| input | | `{tuple(x.shape)}` | |"]
    for name, layer, shape in layer_shapes(model, x):
        params = sum(p.numel() for p in layer.parameters())
        lines.append(f"| `layers[{name}]` | `{_describe(layer)}` | `{shape}` | {params:,} |")
    return "\n".join(lines)


def dilated_convolution(model: nn.Sequential, word: str = "emma") -> plt.Figure:
    """Draw ``shapekit.lecture.to_conv(model)`` over every position of one padded name (lesson 08).

    Bottom: the 8 dots and the name; each level k has a node at every position it can compute,
    joined to the positions ``t`` and ``t - dilation`` below it (kernel 2, the dilations read from
    the Conv1d levels); the tree of the last position is highlighted: the for loop of lesson 08
    would compute only that tree, once per position, repeating the shared nodes.
    """
    from shapekit.lecture import to_conv

    model.eval()
    levels = [(c.kernel_size[0], c.dilation[0]) for c in to_conv(model).convs]
    chars = "." * 8 + word
    L = len(chars)
    fig, ax = plt.subplots(figsize=(10, 1.5 * (len(levels) + 2)))
    ax.set_xlim(-1, L + 0.2)
    ax.set_ylim(-0.8, len(levels) + 1.2)
    ax.axis("off")
    ink, faint, accent = "#263238", "#b0bec5", "#3f51b5"
    for t, char in enumerate(chars):
        ax.add_patch(plt.Rectangle((t - 0.32, -0.32), 0.64, 0.64, fc="#fff8e1", ec=ink, lw=1.2))
        ax.text(t, 0, char, ha="center", va="center", fontsize=15, family="monospace")
    # the tree of the last position: which node of each level it reads
    tree = [{L - 1}]
    for kernel, dilation in reversed(levels):
        tree.insert(0, {t - j * dilation for t in tree[0] for j in range(kernel)})
    first = 0  # the first position the current level can compute
    for k, (kernel, dilation) in enumerate(levels, 1):
        first += (kernel - 1) * dilation
        for t in range(first, L):
            hot = t in tree[k]
            for j in range(kernel):
                ax.plot([t - j * dilation, t], [k - 1 + (0.32 if k == 1 else 0.12), k - 0.12],
                        color=accent if hot else faint, lw=2 if hot else 1, zorder=3 if hot else 1)
            ax.plot(t, k, "o", ms=10 if hot else 7, color=accent if hot else faint, zorder=4)
        ax.text(-0.7, k, f"level {k}\ndilation {dilation}", ha="right", va="center", fontsize=12,
                color=ink)
    top = len(levels) + 1
    for t in range(first, L):
        ax.annotate("", (t, top - 0.25), (t, top - 0.88), arrowprops={"arrowstyle": "->",
                    "color": accent if t == L - 1 else faint})
    ax.text((first + L - 1) / 2, top, f"logits at every position: (1, {L - first}, 27)",
            ha="center", va="center", fontsize=12, color=ink)
    ax.set_title(f"Dilated causal convolutions over '{'.' * 8}{word}' ({L} characters): "
                 f"every node computed once", fontsize=13)
    return fig


def all_figures() -> dict[str, bytes]:
    """Every picture, as ``{file name: SVG bytes}``."""
    model = lecture_model("wavenet")
    return {
        "wavenet.svg": svg_bytes(wavenet_tree(model)),
        "batchnorm_axes.svg": svg_bytes(batchnorm_axes()),
        "dilated_convolution.svg": svg_bytes(dilated_convolution(model)),
    }


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "figures")
    out.mkdir(parents=True, exist_ok=True)
    for name, data in all_figures().items():
        (out / name).write_bytes(data)
        print(out / name)
