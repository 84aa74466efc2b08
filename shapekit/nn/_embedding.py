"""Embedding: a lookup table, ``C[idx]`` in the lecture."""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor

from .. import _torch_compat as _compat
from ..checking import Failure, ShapeError, current_mode, shape_text, shaped
from ._guards import index_guard


class Embedding(torch.nn.Module):
    """Look up one row of ``weight`` per integer index: ``(batch, *time) -> (batch, *time,
    embedding_dim)``.

    >>> import torch
    >>> emb = Embedding(27, 10)
    >>> emb(torch.zeros(32, 8, dtype=torch.long)).shape
    torch.Size([32, 8, 10])
    >>> emb(torch.zeros(32, 8))
    Traceback (most recent call last):
    ...
    shapekit.ShapeError: Embedding expected idx: integer (batch, *time), got float32 (32, 8): integer dtype needed
      fix: pass integer indices, e.g. idx.long() (a float tensor here is often the embeddings, not the indices)
    """  # noqa: E501 (doctest output: the exact message lines)

    shape_knob = "Embedding(..., embedding_dim)"

    def __init__(self, num_embeddings: int, embedding_dim: int) -> None:
        super().__init__()
        for name, value in (("num_embeddings", num_embeddings), ("embedding_dim", embedding_dim)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"Embedding({name}={value!r}): {name} must be a positive int")
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.weight = torch.nn.Parameter(torch.randn((num_embeddings, embedding_dim)))

    @shaped
    def forward(
        self, idx: Int[Tensor, "batch *time"]  # noqa: F821 (a dim string, not `batch * time`)
    ) -> Float[Tensor, "batch *time {self.embedding_dim}"]:
        # A negative index would silently wrap around to the last rows, and one past the table
        # fails deep inside torch, so look at the values first.
        idx = self._check_range(idx)
        if idx.dtype not in (torch.int32, torch.int64):
            idx = idx.long()  # torch indexes with int32/int64 only; int8/int16 indices are fine too
        try:
            return self.weight[idx]  # the lecture's C[idx]: one row of weight per index
        except IndexError:  # past the table, in mode "off"
            raise out_of_range(idx, self.num_embeddings) from None

    def _check_range(self, idx: Tensor) -> Tensor:
        """``idx``, once no index is outside ``[0, num_embeddings)``: else :class:`ShapeError`.
        Mode "off" lets negative indices wrap around, as plain torch does. Skipped where the
        values cannot be read (meta and fake tensors, torch.export, inside vmap); under
        torch.compile, a guard in the graph looks at the real indices at run time."""
        negatives_ok = current_mode() == "off"
        if _compat.is_compiling():
            return index_guard(idx, self.num_embeddings, negatives_ok)
        if not negatives_ok and idx.numel() and _compat.values_visible(idx):
            lo, hi = torch.aminmax(idx)
            if lo < 0 or hi >= self.num_embeddings:
                raise out_of_range(idx, self.num_embeddings)
        return idx

    def _shape_fix(self, failure: Failure) -> str | None:
        if failure.kind == "dtype":
            return (
                "pass integer indices, e.g. idx.long() (a float tensor here is often the "
                "embeddings, not the indices)"
            )
        return None

    def extra_repr(self) -> str:
        return f"num_embeddings={self.num_embeddings}, embedding_dim={self.embedding_dim}"


def out_of_range(idx: Tensor, num_embeddings: int) -> ShapeError:
    """The error for indices outside an ``Embedding(num_embeddings, ...)`` table.

    >>> print(out_of_range(torch.tensor([[3, 27]]), 27))
    Embedding expected idx: integer indices in [0, 27), got values from 3 to 27 in (1, 2)
      fix: build Embedding(28, ...) to cover index 27, or check the encoding (stoi) that produced idx
    """  # noqa: E501 (doctest output: the exact message lines)
    lo, hi = int(idx.min()), int(idx.max())
    if lo < 0:
        fix = "indices must be >= 0; check the encoding (stoi) that produced idx"
    else:
        fix = (
            f"build Embedding({hi + 1}, ...) to cover index {hi}, or check the encoding (stoi)"
            " that produced idx"
        )
    return ShapeError(
        expected=f"idx: integer indices in [0, {num_embeddings})",
        got=f"values from {lo} to {hi} in {shape_text(idx.shape)}",
        where="Embedding",
        fix=fix,
    )
