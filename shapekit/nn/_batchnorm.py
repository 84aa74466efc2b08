"""BatchNorm1d, channels-last as in the lecture: statistics over every axis but the last."""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from .._arith import add_scaled_
from .._errors import ShapeError
from .._shaped import Failure, shape_text, shaped
from ._guards import dtype_error

# The axes the statistics are taken over, for the usual ranks: (B, C) and channels-last (B, T, C).
_REDUCE = {2: (0,), 3: (0, 1)}


class BatchNorm1d(torch.nn.Module):
    """Normalise each channel over the batch: ``(batch, C)`` or channels-last ``(batch, time, C)``.

    Statistics are taken over every axis but the last (``(0,)`` for 2-D input, ``(0, 1)`` for 3-D),
    so ``running_mean`` and ``running_var`` stay ``(C,)``: the lecture's bug, statistics over axis 0
    only, cannot happen here. Note torch's ``nn.BatchNorm1d`` wants ``(batch, C, length)`` instead.

    ``unbiased=True`` (the lecture's layer) normalises by the Bessel-corrected batch variance;
    ``unbiased=False`` normalises by the biased variance, exactly like ``torch.nn.BatchNorm1d``.
    The running variance is Bessel-corrected in both, as in torch.

    >>> import torch
    >>> bn = BatchNorm1d(68)
    >>> bn(torch.randn(32, 4, 68)).shape
    torch.Size([32, 4, 68])
    >>> bn.running_mean.shape
    torch.Size([68])
    >>> bn(torch.randn(1, 68))
    Traceback (most recent call last):
    ...
    shapekit._errors.ShapeError: BatchNorm1d expected x: more than one value per channel in training mode, got (1, 68): the batch statistics of one value are undefined (variance NaN)
      fix: call model.eval() before feeding a single example (eval uses the running statistics), or train with a batch larger than 1
    """  # noqa: E501 (doctest output: the exact message lines)

    _fix_previous = "or change {previous}"

    def __init__(
        self, dim: int, eps: float = 1e-5, momentum: float = 0.1, *, unbiased: bool = True
    ) -> None:
        super().__init__()
        if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
            raise ValueError(f"BatchNorm1d(dim={dim!r}): dim must be a positive int")
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"BatchNorm1d(momentum={momentum!r}): momentum must be in [0, 1]")
        if eps < 0:
            raise ValueError(f"BatchNorm1d(eps={eps!r}): eps must be >= 0")
        self.dim, self.eps, self.momentum, self.unbiased = dim, eps, momentum, unbiased
        self.gamma = torch.nn.Parameter(torch.ones(dim))
        self.beta = torch.nn.Parameter(torch.zeros(dim))
        self.register_buffer("running_mean", torch.zeros(dim))
        self.register_buffer("running_var", torch.ones(dim))

    @shaped
    def forward(
        self, x: Float[Tensor, "batch *time {self.dim}"]
    ) -> Float[Tensor, "batch *time {self.dim}"]:
        # Parameters and buffers come from their dicts: `self.gamma` goes through
        # nn.Module.__getattr__, which costs more than an elementwise op's overhead here.
        gamma, beta = self._parameters["gamma"], self._parameters["beta"]
        running_mean, running_var = self._buffers["running_mean"], self._buffers["running_var"]
        if x.dtype != gamma.dtype:
            raise dtype_error(self, "x", x, gamma.dtype)
        training = self.training
        if training:
            if x.numel() // x.shape[-1] < 2:
                raise self._single_example(x)
            dims = _REDUCE.get(x.ndim) or tuple(range(x.ndim - 1))  # every axis but the channels
            xmean = x.mean(dims)  # (C,)
            xvar = x.var(dims, unbiased=self.unbiased)  # (C,)
        else:
            xmean, xvar = running_mean, running_var
        xhat = (x - xmean) / torch.sqrt(xvar + self.eps)
        out = gamma * xhat + beta
        if training:
            # running = (1 - momentum) * running + momentum * batch, both statistics in two calls
            # (bit-identical to the lecture's separate operations: see shapekit._arith).
            running = [running_mean, running_var]
            batch = [xmean.detach(), (xvar if self.unbiased else x.var(dims)).detach()]
            torch._foreach_mul_(running, 1 - self.momentum)
            add_scaled_(running, batch, self.momentum)
        return out

    def _single_example(self, x: Tensor) -> ShapeError:
        return ShapeError(
            expected="x: more than one value per channel in training mode",
            got=shape_text(x.shape),
            note="the batch statistics of one value are undefined (variance NaN)",
            where="BatchNorm1d",
            fix="call model.eval() before feeding a single example (eval uses the running "
            "statistics), or train with a batch larger than 1",
        )

    def _shape_fix(self, failure: Failure) -> str | None:
        m, x = failure.mismatch, failure.value
        if failure.kind != "size" or m is None or m.axis != x.ndim - 1:
            return None
        if x.ndim == 3 and x.shape[1] == self.dim:
            return (
                "x looks like torch's (batch, channels, length) layout; this BatchNorm1d is "
                "channels-last (batch, length, channels): pass x.transpose(1, 2)"
            )
        return f"the layer before produces {m.got} features; build BatchNorm1d({m.got})"

    def extra_repr(self) -> str:
        return f"{self.dim}, eps={self.eps}, momentum={self.momentum}, unbiased={self.unbiased}"
