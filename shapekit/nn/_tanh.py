"""Tanh: elementwise, any shape in, the same shape out."""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from .._shaped import shaped


class Tanh(torch.nn.Module):
    """``tanh`` applied elementwise: ``(*shape) -> (*shape)``.

    >>> import torch
    >>> Tanh()(torch.zeros(32, 4, 68)).shape
    torch.Size([32, 4, 68])
    """

    @shaped
    def forward(self, x: Float[Tensor, "*shape"]) -> Float[Tensor, "*shape"]:
        return torch.tanh(x)
