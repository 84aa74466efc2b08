"""The catalogue of silent shape bugs ``detect()`` looks for, and the shape reasoning behind the
subtle ones (pure Python on tuples of sizes, no torch).

>>> sorted(RULES)[:3]
['batchnorm-channels-last', 'broadcast-n-by-n', 'buffer-shape-change']
>>> docs_url("view-transposes")
'https://shapekit.readthedocs.io/en/latest/pitfalls/view-transposes/'
"""

from __future__ import annotations

import functools
import itertools
import math

__all__ = ["DOCS_URL", "RULES", "docs_url", "reorder_fix", "strip_leading_ones"]

DOCS_URL = "https://shapekit.readthedocs.io/en/latest/pitfalls/"

RULES: dict[str, str] = {
    "view-transposes": "a view/reshape that reorders axes instead of merging or splitting "
    "neighbouring ones",
    "broadcast-n-by-n": "(N,) against (N, 1) in an elementwise op, comparison or loss broadcasts "
    "to (N, N)",
    "reduction-broadcast": "a reduction without keepdim broadcast back against its source along "
    "the wrong axis",
    "batchnorm-channels-last": "torch.nn.BatchNorm1d given channels-last (N, L, C) input",
    "buffer-shape-change": "a module's buffer or parameter changes shape during a forward",
    "squeeze-batch": "squeeze() with no dim also removes a batch axis of size 1",
    "softmax-dim0": "softmax/log_softmax over axis 0 (the batch) of a 2-D or larger tensor",
    "cross-entropy-ambiguous": "cross_entropy logits whose class axis the shapes cannot settle",
    "var-single-element": "variance/std with Bessel's correction over one element (NaN)",
    "linear-weight-matmul": "x @ linear.weight with a square torch.nn.Linear weight, stored "
    "(out, in): multiplies by the transpose",
    "mask-batch-query": "a (B, T) padding mask broadcast against (B, nh, T, T) scores, its batch "
    "axis on the queries (B == T)",
    "conv1d-channels-last": "torch.nn.Conv1d given channels-last (B, L, C) input with "
    "L == C == in_channels",
    "running-stat-growth": "a running statistic (self.x = (1 - m) * self.x + m * new, under "
    "no_grad) that grows by broadcasting, in any object",
}

_MAX_GROUP = 6  # axes per side in one reordered group that are searched exhaustively


def docs_url(rule: str) -> str:
    """The docs page of a rule."""
    return f"{DOCS_URL}{rule}/"


def strip_leading_ones(shape: tuple[int, ...]) -> tuple[int, ...]:
    """``(1, 1, 68) -> (68,)``: leading size-1 axes change no broadcasting result.

    >>> strip_leading_ones((1, 1, 68)), strip_leading_ones((1, 4, 68))
    ((68,), (4, 68))
    """
    i = 0
    while i < len(shape) and shape[i] == 1:
        i += 1
    return tuple(shape[i:])


def _groups(a: tuple[int, ...], b: tuple[int, ...]) -> list[tuple[list[int], list[int]]] | None:
    """The finest split of both shapes' axes (size-1 axes left out) into consecutive groups of
    equal products: ``(B, T, C) -> (B, T, nh, hs)`` gives ``[B]->[B], [T]->[T], [C]->[nh, hs]``."""
    ia = [i for i, s in enumerate(a) if s != 1]
    ib = [j for j, s in enumerate(b) if s != 1]
    groups = []
    i = j = 0
    while i < len(ia) and j < len(ib):
        ga, gb = [ia[i]], [ib[j]]
        pa, pb = a[ia[i]], b[ib[j]]
        i, j = i + 1, j + 1
        while pa != pb:
            if pa < pb and i < len(ia):
                ga.append(ia[i])
                pa *= a[ia[i]]
                i += 1
            elif pb < pa and j < len(ib):
                gb.append(ib[j])
                pb *= b[ib[j]]
                j += 1
            else:
                return None
        groups.append((ga, gb))
    return groups if i == len(ia) and j == len(ib) else None


def _assign(parts: list[int], wholes: list[int]) -> list[int] | None:
    """Give each of ``parts`` one of ``wholes`` so each whole is the product of its parts, keeping
    the parts' order as much as possible (fewest inversions); None when impossible."""
    best, best_cost = None, math.inf
    for choice in itertools.product(range(len(wholes)), repeat=len(parts)):
        products = [1] * len(wholes)
        for part, whole in zip(parts, choice, strict=True):
            products[whole] *= part
        if products != wholes:
            continue
        cost = sum(1 for x, y in itertools.combinations(choice, 2) if x > y)
        if cost < best_cost:
            best, best_cost = list(choice), cost
    return best


def _axes_text(perm: list[int]) -> str:
    moved = [i for i, p in enumerate(perm) if p != i]
    if len(moved) == 2:
        return f".transpose({moved[0]}, {moved[1]})"
    return f".permute({', '.join(str(p) for p in perm)})"


def _sizes(shape: tuple[int, ...] | list[int]) -> str:
    return ", ".join(str(s) for s in shape)


@functools.lru_cache(maxsize=4096)  # a training loop reshapes the same shapes every step
def reorder_fix(a: tuple[int, ...], b: tuple[int, ...]) -> str | None:
    """When ``view``/``reshape`` from shape ``a`` to ``b`` can only be read as *reordering* axes
    (possibly after splitting one, or before merging), the method chain that does that on purpose;
    ``""`` when no single chain is computed; None when ``b`` is an honest merge/split of neighbours
    (or no reordering explains it).

    >>> reorder_fix((32, 8, 24), (32, 24, 8))
    '.transpose(1, 2)'
    >>> reorder_fix((4, 8, 32), (4, 2, 8, 16))  # heads from (B, T, C): split, then move
    '.view(4, 8, 2, 16).transpose(1, 2)'
    >>> reorder_fix((4, 2, 8, 16), (4, 8, 32))  # (B, nh, T, hs) back to (B, T, C) without transpose
    '.transpose(1, 2).reshape(4, 8, 32)'
    >>> reorder_fix((4, 8, 32), (4, 8, 2, 16)) is None, reorder_fix((4, 8, 32), (32, 32)) is None
    (True, True)
    """
    groups = _groups(a, b)
    if groups is None:
        return None
    mixed = [g for g in groups if len(g[0]) > 1 and len(g[1]) > 1]
    if not mixed or any(len(ga) > _MAX_GROUP or len(gb) > _MAX_GROUP for ga, gb in mixed):
        return None
    plans = []
    for ga, gb in mixed:
        split = _assign([b[j] for j in gb], [a[i] for i in ga])  # b's axes carved out of a's
        merge = _assign([a[i] for i in ga], [b[j] for j in gb])  # a's axes glued into b's
        if split is None and merge is None:
            return None
        plans.append((split, merge))
    simple = len(mixed) == 1 and all(
        len(ga) == len(gb) == 1 for ga, gb in groups if (ga, gb) not in mixed
    ) and 1 not in a and 1 not in b
    if not simple:
        return ""
    (ga, gb), (split, merge) = mixed[0], plans[0]
    if split is not None:
        # Split each of a's axes into its parts (in b's order), then move the parts into place.
        order = sorted(range(len(gb)), key=lambda k: (split[k], k))
        middle = [gb[k] for k in order]
        axes = [gb_[0] for _, gb_ in groups if gb_[0] < gb[0]] + middle + [
            gb_[0] for _, gb_ in groups if gb_[0] > gb[-1]
        ]
        perm = [axes.index(j) for j in range(len(b))]
        view = [b[j] for j in axes]
        head = "" if tuple(view) == tuple(a) else f".view({_sizes(view)})"
        return head + _axes_text(perm)
    # Move a's axes next to the ones they merge with, then merge.
    order = sorted(range(len(ga)), key=lambda k: (merge[k], k))
    perm = list(range(len(a)))
    perm[ga[0]:ga[-1] + 1] = [ga[k] for k in order]
    return _axes_text(perm) + f".reshape({_sizes(b)})"
