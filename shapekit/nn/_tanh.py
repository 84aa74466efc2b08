"""Tanh: elementwise, any shape in, the same shape out."""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from ..checking import ShapeError, shape_text, shaped


class Tanh(torch.nn.Module):
    """``tanh`` applied elementwise: ``(*shape) -> (*shape)``.

    >>> import torch
    >>> Tanh()(torch.zeros(32, 4, 68)).shape
    torch.Size([32, 4, 68])
    """

    @shaped
    def forward(self, x: Float[Tensor, "*shape"]) -> Float[Tensor, "*shape"]:
        if x.dtype.itemsize == 1:  # float8: a storage format, with no arithmetic in torch
            raise ShapeError(
                expected="x: a float dtype that torch computes with (float16, bfloat16, float32, "
                "float64)",
                got=f"{str(x.dtype).split('.')[-1]} {shape_text(x.shape)}",
                note="torch stores float8 but has no tanh (or most other arithmetic) for it",
                where="Tanh",
                fix="convert the input first, e.g. Tanh()(x.float()), or x.to(torch.bfloat16)",
            )
        return torch.tanh(x)
