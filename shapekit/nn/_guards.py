"""Guards the annotations cannot express, shared by the layers."""

from __future__ import annotations

import torch

from .._errors import ShapeError
from .._shaped import shape_text


def require_dtype(layer: torch.nn.Module, name: str, x: torch.Tensor, want: torch.dtype) -> None:
    """Raise a ShapeError when ``x`` is not of the layer's parameter dtype (torch would fail deep
    inside the matmul with "expected both to have the same dtype")."""
    if x.dtype == want:
        return
    have = str(x.dtype).split(".")[-1]
    wanted = str(want).split(".")[-1]
    cast = {torch.float32: ".float()", torch.float64: ".double()", torch.float16: ".half()"}
    raise ShapeError(
        expected=f"{name}: {wanted} (the dtype of the layer's parameters)",
        got=f"{have} {shape_text(x.shape)}",
        where=type(layer).__name__,
        fix=f"convert the input with {name}{cast.get(want, f'.to({want})')}, "
        f"or the model with model.to({x.dtype})",
    )
