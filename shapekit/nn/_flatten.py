"""FlattenConsecutive: fuse n consecutive time steps into one, the heart of the WaveNet model."""

from __future__ import annotations

import torch
from einops import rearrange
from jaxtyping import Float
from torch import Tensor

from ..checking import ShapeError, shape_text, shaped


class FlattenConsecutive(torch.nn.Module):
    """Concatenate each run of ``n`` consecutive time steps: ``(batch, time, C) -> (batch, time/n,
    n*C)``; when the new time axis is 1 it is squeezed away, as in the lecture: ``(batch, n*C)``.

    The layout is the einops pattern ``"b (t n) c -> b t (n c)"``: a view of the input, never a
    copy, when the input is contiguous.

    >>> import torch
    >>> FlattenConsecutive(2)(torch.randn(32, 8, 24)).shape
    torch.Size([32, 4, 48])
    >>> FlattenConsecutive(8)(torch.randn(32, 8, 24)).shape
    torch.Size([32, 192])
    >>> FlattenConsecutive(3)(torch.randn(32, 8, 24))
    Traceback (most recent call last):
    ...
    shapekit.ShapeError: FlattenConsecutive expected x: (batch, time, channels) with time a multiple of n=3, got (32, 8, 24): time=8 is not a multiple of 3
      fix: use FlattenConsecutive(n) with n one of 1, 2, 4, 8, or a block_size that is a multiple of 3
    """  # noqa: E501 (doctest output: the exact message lines)

    shape_knob = "FlattenConsecutive(n)"

    def __init__(self, n: int) -> None:
        super().__init__()
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"FlattenConsecutive(n={n!r}): n must be a positive int")
        self.n = n

    @shaped
    def forward(
        self, x: Float[Tensor, "batch time channels"]
    ) -> Float[Tensor, "batch *time_out channels_out"]:
        time = x.shape[1]
        if time % self.n:
            raise self._not_divisible(x)
        # "(t n)": the time axis is read as t groups of n neighbours; each group's n vectors are
        # laid side by side in "(n c)". The pattern states the intent that a bare view() hides.
        out = rearrange(x, "b (t n) c -> b t (n c)", n=self.n)  # (B, T/n, n*C)
        if out.shape[1] == 1:
            out = out.squeeze(1)  # (B, n*C), as the lecture's last flatten
        return out

    def _not_divisible(self, x: Tensor) -> ShapeError:
        time = x.shape[1]
        divisors = ", ".join(str(d) for d in range(1, time + 1) if time % d == 0)
        return ShapeError(
            expected=f"x: (batch, time, channels) with time a multiple of n={self.n}",
            got=shape_text(x.shape),
            note=f"time={time} is not a multiple of {self.n}",
            where="FlattenConsecutive",
            fix=f"use FlattenConsecutive(n) with n one of {divisors}, or a block_size that is a "
            f"multiple of {self.n}",
        )

    def extra_repr(self) -> str:
        return f"n={self.n}"
