"""Guards the annotations cannot express, shared by the layers."""

from __future__ import annotations

import torch

from .. import _torch_compat as _compat
from ..checking import ShapeError, shape_text


def cast_input(layer: torch.nn.Module, x: torch.Tensor, want: torch.dtype) -> torch.Tensor:
    """``x`` if it has the layer's parameter dtype ``want``; under ``torch.autocast``, where ``x``
    may be autocast's lower-precision output, ``x`` as it is (the matmul autocasts both operands)
    for a Linear; otherwise the :func:`dtype_error`.

    >>> import torch
    >>> from shapekit.nn import Linear
    >>> cast_input(Linear(4, 2), torch.ones(3, 4), torch.float32).dtype
    torch.float32
    """
    if x.dtype == want or _compat.autocast_dtype(x.device.type) in (x.dtype, want):
        return x
    raise dtype_error(layer, "x", x, want)


def dtype_error(
    layer: torch.nn.Module, name: str, x: torch.Tensor, want: torch.dtype
) -> ShapeError:
    """The error for an ``x`` that is not of the layer's parameter dtype ``want`` (torch would fail
    deep inside the matmul with "expected both to have the same dtype"); the layers compare the
    dtypes inline, in their hot path, and raise this.

    >>> import torch
    >>> from shapekit.nn import Linear
    >>> print(dtype_error(Linear(4, 2), "x", torch.ones(3, 4, dtype=torch.float64), torch.float32))
    Linear expected x: float32 (the dtype of the layer's parameters), got float64 (3, 4)
      fix: convert the input with x.float(), or the model with model.to(torch.float64)
    """
    have = str(x.dtype).split(".")[-1]
    wanted = str(want).split(".")[-1]
    cast = {torch.float32: ".float()", torch.float64: ".double()", torch.float16: ".half()"}
    return ShapeError(
        expected=f"{name}: {wanted} (the dtype of the layer's parameters)",
        got=f"{have} {shape_text(x.shape)}",
        where=type(layer).__name__,
        fix=f"convert the input with {name}{cast.get(want, f'.to({want})')}, "
        f"or the model with model.to({x.dtype})",
    )


@torch.library.custom_op(  # the schema spelled out: torch 2.4 cannot read string annotations
    "shapekit::index_guard", mutates_args=(),
    schema="(Tensor idx, SymInt size, bool negatives_ok) -> Tensor",
)
def index_guard(idx: torch.Tensor, size: int, negatives_ok: bool) -> torch.Tensor:
    """``idx`` (a copy) if every index is in ``[0, size)`` (``[-size, size)`` with
    ``negatives_ok``), else the Embedding's :class:`ShapeError`. An operator of its own so that
    ``torch.compile`` keeps it in the graph (``fullgraph=True`` works) and runs it on the real
    indices at every call, where Python code would graph-break or run only while tracing.

    >>> index_guard(torch.tensor([0, 26]), 27, False)
    tensor([ 0, 26])
    """
    if idx.numel():
        lo, hi = torch.aminmax(idx)
        if hi >= size or lo < (-size if negatives_ok else 0):
            from ._embedding import out_of_range

            raise out_of_range(idx, size)
    return idx.clone()  # an operator's output may not alias its input


@index_guard.register_fake
def _(idx: torch.Tensor, size: int, negatives_ok: bool) -> torch.Tensor:
    return torch.empty_like(idx)  # while tracing: the values are not known yet
