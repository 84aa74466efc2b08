"""Functions annotated with ``from __future__ import annotations`` (every annotation a string), for
tests/test_shaped.py: @shaped must resolve them as jaxtyping and beartype do."""

from __future__ import annotations

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from shapekit import shaped


@shaped
def scores(
    q: Float[Tensor, "batch tq d"],
    k: Float[Tensor, "batch tk d"],
    mask: Bool[Tensor, "tq tk"] | None = None,
) -> Float[Tensor, "batch tq tk"]:
    """Attention scores, optionally masked: ``(B, Tq, d), (B, Tk, d) -> (B, Tq, Tk)``."""
    out = q @ k.transpose(1, 2)  # (B, Tq, Tk)
    if mask is not None:
        out = out.masked_fill(~mask, float("-inf"))
    return out


class Head(torch.nn.Module):
    """A key projection whose width comes from ``self``: ``(batch, time, n_embd) -> (batch, time,
    head_size)``."""

    def __init__(self, n_embd: int, head_size: int) -> None:
        super().__init__()
        self.n_embd, self.head_size = n_embd, head_size
        self.key = torch.nn.Linear(n_embd, head_size, bias=False)

    @shaped
    def forward(
        self, x: Float[Tensor, "batch time {self.n_embd}"]
    ) -> Float[Tensor, "batch time {self.head_size}"]:
        return self.key(x)
