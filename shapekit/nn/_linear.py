"""Linear: ``x @ W + b`` on the last axis, the lecture's layer with checked shapes."""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from ..checking import Failure, shape_text, shaped
from ._guards import cast_input


class Linear(torch.nn.Module):
    """A fully connected layer acting on the last axis: ``(batch, *time, fan_in) -> (batch, *time,
    fan_out)``.

    The weight is ``(fan_in, fan_out)`` (the lecture's layout, the transpose of torch's) and starts
    as ``randn / sqrt(fan_in)``; the bias starts at zero.

    >>> import torch
    >>> layer = Linear(48, 128)
    >>> layer(torch.randn(32, 4, 48)).shape
    torch.Size([32, 4, 128])
    >>> layer(torch.randn(32, 4, 40))
    Traceback (most recent call last):
    ...
    shapekit.ShapeError: Linear expected x: (batch, *time, 48 = fan_in), got (32, 4, 40)
      bound so far: batch=32 time=4
      fix: the layer before produces 40 features; build Linear(40, ...)
    """

    shape_knob = "Linear(..., fan_out)"
    _fix_previous = "or change {previous}"

    def __init__(self, fan_in: int, fan_out: int, bias: bool = True) -> None:
        super().__init__()
        for name, value in (("fan_in", fan_in), ("fan_out", fan_out)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"Linear({name}={value!r}): {name} must be a positive int")
        self.fan_in, self.fan_out = fan_in, fan_out
        self.weight = torch.nn.Parameter(torch.randn((fan_in, fan_out)) / fan_in**0.5)
        if bias:
            self.bias = torch.nn.Parameter(torch.zeros(fan_out))
        else:
            self.register_parameter("bias", None)  # as torch.nn.Linear: `layer.bias` is None

    @shaped
    def forward(
        self, x: Float[Tensor, "batch *time {self.fan_in}"]
    ) -> Float[Tensor, "batch *time {self.fan_out}"]:
        x = cast_input(self, x, self.weight.dtype)
        out = x @ self.weight  # (batch, *time, fan_out): matmul acts on the last axis
        if self.bias is not None:
            out = out + self.bias  # (fan_out,) broadcasts over every leading axis
        return out

    def _shape_fix(self, failure: Failure) -> str | None:
        m, x = failure.mismatch, failure.value
        if failure.kind != "size" or m is None or m.axis != x.ndim - 1:
            return None
        n = self.fan_in // m.got if m.got and self.fan_in % m.got == 0 else 0
        if x.ndim == 3 and n > 1 and x.shape[1] % n == 0:
            # (B, T, C) where n consecutive steps of C features make fan_in: not flattened yet.
            failure.blame_previous = False
            flat = shape_text((x.shape[0], x.shape[1] // n, self.fan_in)).replace(", 1,", ",")
            return (
                f"the time axis is not flattened: put FlattenConsecutive({n}) before this Linear, "
                f"turning {shape_text(x.shape)} into {flat}"
            )
        return f"the layer before produces {m.got} features; build Linear({m.got}, ...)"

    def extra_repr(self) -> str:
        return f"fan_in={self.fan_in}, fan_out={self.fan_out}, bias={self.bias is not None}"
