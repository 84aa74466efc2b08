"""The five models of the lecture's performance log, built from ``shapekit.nn``.

    python -c "from shapekit.lecture._models import build_model; print(build_model('wavenet'))"

Each row of ``ROWS`` records the lecture's architecture and its reported losses; ``build_model``
builds it exactly as the lecture does (layers constructed in model order, so under
``torch.manual_seed(42)`` the Embedding, then each Linear draw ``torch.randn`` in the lecture's
order; the last layer's weight is scaled by 0.1). It seeds nothing: seed before calling it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .. import nn
from ._data import VOCAB

__all__ = ["ROWS", "ModelSpec", "build_model", "count_params", "resolve_row"]


@dataclass(frozen=True)
class ModelSpec:
    """One row of the lecture's performance log: the architecture and the lecture's figures.

    ``hierarchical`` models fuse two time steps at a time (``FlattenConsecutive(2)`` x3);
    flat ones flatten the whole ``block_size`` context at once. ``batchnorm_bug`` marks the row the
    lecture trained with BatchNorm statistics over axis 0 only.
    """

    name: str
    block_size: int
    n_embd: int
    n_hidden: int
    hierarchical: bool
    lecture_params: int
    lecture_train: float
    lecture_val: float
    description: str
    batchnorm_bug: bool = False

    @property
    def row(self) -> int:
        """The row number in the lecture's table, 1 to 5."""
        return list(ROWS).index(self.name) + 1


ROWS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("original", 3, 10, 200, False, 12_097, 2.058, 2.105,
                  "original: 3-char context, 200 hidden"),
        ModelSpec("context8", 8, 10, 200, False, 22_097, 1.918, 2.027,
                  "context 3 -> 8"),
        ModelSpec("hierarchical-bug", 8, 10, 68, True, 22_397, 1.941, 2.029,
                  "flat -> hierarchical (with the BatchNorm bug)", batchnorm_bug=True),
        ModelSpec("hierarchical", 8, 10, 68, True, 22_397, 1.912, 2.022,
                  "fix BatchNorm bug"),
        ModelSpec("wavenet", 8, 24, 128, True, 76_579, 1.769, 1.993,
                  "n_embd 24, n_hidden 128"),
    )
}

DEFAULT_ROW = "wavenet"


def resolve_row(name: str | int) -> ModelSpec:
    """The row called ``name``, or numbered ``name`` (1 to 5, as a number or a string).

    >>> resolve_row(5).name, resolve_row("1").name, resolve_row("hierarchical").n_hidden
    ('wavenet', 'original', 68)
    """
    key = str(name).strip()
    if key.isdigit() and 1 <= int(key) <= len(ROWS):
        return list(ROWS.values())[int(key) - 1]
    if key in ROWS:
        return ROWS[key]
    valid = ", ".join(f"{i} {n}" for i, n in enumerate(ROWS, 1))
    raise ValueError(
        f"unknown model {name!r}; expected a row of the lecture's performance log, by name or "
        f"number: {valid}; fix: e.g. --model wavenet (or --model 5)"
    )


def build_model(
    name: str | int, *, batchnorm: Callable[[int], torch.nn.Module] | None = None
) -> nn.Sequential:
    """Build row ``name`` of the performance log (see ``ROWS``); seeds nothing.

    ``batchnorm`` is the normalisation layer class (default ``shapekit.nn.BatchNorm1d``; for the
    ``hierarchical-bug`` row, the lecture's buggy layer that shapekit ships for it).

    >>> import torch
    >>> model = build_model("wavenet")  # (B, 8) -> (B, 8, 24) -> (B, 4, 48) -> ... -> (B, 27)
    >>> model(torch.zeros(32, 8, dtype=torch.long)).shape
    torch.Size([32, 27])
    >>> count_params(model)
    76579
    """
    spec = resolve_row(name)
    if spec.batchnorm_bug and batchnorm is None:
        from ._buggy_batchnorm import BuggyBatchNorm1d

        batchnorm = BuggyBatchNorm1d
    norm = batchnorm or nn.BatchNorm1d
    vocab_size = len(VOCAB)
    layers: list[torch.nn.Module] = [nn.Embedding(vocab_size, spec.n_embd)]
    if spec.hierarchical:
        fan_in = spec.n_embd
        for _ in range(3):  # 8 -> 4 -> 2 -> 1 time steps
            layers += [
                nn.FlattenConsecutive(2), nn.Linear(fan_in * 2, spec.n_hidden, bias=False),
                norm(spec.n_hidden), nn.Tanh(),
            ]
            fan_in = spec.n_hidden
    else:
        layers += [
            nn.FlattenConsecutive(spec.block_size),
            nn.Linear(spec.n_embd * spec.block_size, spec.n_hidden, bias=False),
            norm(spec.n_hidden), nn.Tanh(),
        ]
    layers.append(nn.Linear(spec.n_hidden, vocab_size))
    model = nn.Sequential(layers)
    with torch.no_grad():
        model.layers[-1].weight *= 0.1  # last layer: make the first predictions less confident
    return model


def count_params(model: torch.nn.Module) -> int:
    """The number of trainable values, as the lecture counts them (buffers excluded).

    >>> count_params(build_model("original"))
    12097
    """
    return sum(p.numel() for p in model.parameters())
