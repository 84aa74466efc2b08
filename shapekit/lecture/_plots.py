"""Loss curves as the lecture plots them: the mean log10 loss of each 1,000 steps."""

from __future__ import annotations

import re
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from ._checkpoint import atomic_write

__all__ = ["plot_curves", "smooth"]


def smooth(lossi: Sequence[float], every: int = 1000) -> tuple[list[int], list[float]]:
    """``torch.tensor(lossi).view(-1, every).mean(1)`` as in the lecture, for any length: the mean
    of each full group of ``every`` steps (a run shorter than 20 groups uses smaller groups), with
    the step at each group's end.

    >>> steps, means = smooth([1.0, 3.0] * 20, every=2)  # 20 groups of 2 steps
    >>> steps[:3], set(means)
    ([2, 4, 6], {2.0})
    >>> smooth([1.0, 3.0, 2.0], every=1000)  # a short run: groups shrink, here to 1 step
    ([1, 2, 3], [1.0, 3.0, 2.0])
    """
    every = max(1, min(every, len(lossi) // 20)) if len(lossi) < 20 * every else every
    n = len(lossi) // every
    if n == 0:
        return [], []
    means = torch.tensor(lossi[: n * every]).view(n, every).mean(1)  # (n,)
    return [every * (i + 1) for i in range(n)], means.tolist()


def plot_curves(
    curves: Mapping[str, Sequence[float]],
    path: Path,
    title: str,
    val: Mapping[str, Sequence[tuple[int, float]]] | None = None,
) -> None:
    """Plot one smoothed log10-loss curve per entry of ``curves`` into ``path``, atomically.

    ``val`` adds each run's validation losses, ``(step, loss)`` pairs, as markers in the same
    colour (in log10, as the training curve). A ``.svg`` path is written as SVG; a PNG has 220
    dots per inch, twice the pixels of its width on the page, so it stays sharp on a 2x screen.
    A title that repeats its first part (``"original: original: ..."``) is said once.
    """
    import math

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    fig, ax = plt.subplots(figsize=(7, 4))
    several = len(curves) > 1
    for name, lossi in curves.items():
        steps, means = smooth(lossi)
        label = name if several or not val else f"{name} train"
        (line,) = ax.plot(steps, means, label=label, linewidth=1.2)
        points = (val or {}).get(name)
        if points:
            ax.plot([s for s, _ in points], [math.log10(v) for _, v in points], "o--",
                    color=line.get_color(), markersize=4, linewidth=1,
                    label="_" if several else f"{name} validation")  # "_": not in the legend
    ax.set_xlabel("step")
    ax.set_ylabel("log10 loss (mean per group of steps)")
    # Wrapped, so a long run description is never cut off at the figure's edge.
    ax.set_title(textwrap.fill(re.sub(r"^([^:]+): \1: ", r"\1: ", title), 64))
    if several:
        # One entry per run (its colour) and, with validation, a key for the two line styles;
        # below the axes, where it covers no curve.
        handles, labels = ax.get_legend_handles_labels()
        if val:
            handles += [Line2D([], [], color="0.4", linewidth=1.2),
                        Line2D([], [], color="0.4", linestyle="--", marker="o", markersize=4)]
            labels += ["train", "validation"]
        ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.16),
                  ncol=min(4, len(labels)), frameon=False)
    elif val:
        ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fmt = "svg" if Path(path).suffix == ".svg" else "png"
    atomic_write(Path(path),
                 lambda tmp: fig.savefig(tmp, dpi=220, format=fmt, bbox_inches="tight"))
    plt.close(fig)
