"""BatchNorm1d, channels-last as in the lecture: statistics over every axis but the last."""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from .. import _torch_compat as _compat
from ..checking import Failure, ShapeError, shape_text, shaped
from ._guards import dtype_error


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
    shapekit.ShapeError: BatchNorm1d expected x: more than one value per channel in training mode, got (1, 68): the batch statistics of one value are undefined (variance NaN)
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
        if not eps > 0:  # torch refuses it too: a constant channel would divide 0 by 0
            raise ValueError(
                f"BatchNorm1d(eps={eps!r}): eps must be > 0 (a channel that is constant over the "
                "batch has variance 0, and x / sqrt(0 + eps) needs eps > 0); the default is 1e-5"
            )
        self.dim, self.eps, self.momentum, self.unbiased = dim, eps, momentum, unbiased
        self.gamma = torch.nn.Parameter(torch.ones(dim))
        self.beta = torch.nn.Parameter(torch.zeros(dim))
        self.register_buffer("running_mean", torch.zeros(dim))
        self.register_buffer("running_var", torch.ones(dim))

    @shaped
    def forward(
        self, x: Float[Tensor, "batch *time {self.dim}"]
    ) -> Float[Tensor, "batch *time {self.dim}"]:
        x = self._cast_input(x)
        if self.training:
            if x.numel() // x.shape[-1] < 2:
                raise self._single_example(x)
            dims = tuple(range(x.ndim - 1))  # every axis but the channels: (0,) or (0, 1)
            xmean = x.mean(dims, keepdim=True)  # (1, C) or (1, 1, C): batch mean
            xvar = x.var(dims, keepdim=True, unbiased=self.unbiased)  # batch variance
        else:
            xmean, xvar = self.running_mean, self.running_var  # (C,)
        xhat = (x - xmean) / torch.sqrt(xvar + self.eps)  # normalise to unit variance
        out = self.gamma * xhat + self.beta  # (batch, *time, C)
        if self.training:
            # The running variance is Bessel-corrected either way, as in torch.
            batch_var = xvar if self.unbiased else x.var(dims, keepdim=True)
            with torch.no_grad():
                m = self.momentum
                # The lecture's (1 - m) * running + m * batch, in place: the (C,) buffers keep
                # their shape (and stay the tensors that state_dict and torch.func hold).
                try:
                    self.running_mean.mul_(1 - m).add_(m * xmean.view(-1))
                    self.running_var.mul_(1 - m).add_(m * batch_var.view(-1))
                except RuntimeError:
                    if not _compat.is_vmapped(x):
                        raise
                    raise self._vmapped_training(x) from None
        return out

    def _vmapped_training(self, x: Tensor) -> ShapeError:
        return ShapeError(
            expected="running statistics with a vmapped axis, to train under torch.func.vmap",
            got=f"x batched by vmap, buffers running_mean and running_var {shape_text((self.dim,))}"
            " shared by every vmapped model",
            where="BatchNorm1d",
            note="each vmapped call would write its own batch statistics into the same buffers",
            fix="call model.eval() to use the running statistics, or vmap over stacked copies: "
            "params, buffers = torch.func.stack_module_state(models), then "
            "torch.func.vmap(lambda p, b, x: torch.func.functional_call(model, (p, b), (x,)))",
        )

    def _cast_input(self, x: Tensor) -> Tensor:
        """``x``, or, under ``torch.autocast``, ``x`` in the parameters' dtype: autocast hands a
        matmul's output over in bfloat16/float16, and normalisation runs in float32 there (as
        autocast runs torch's own normalisation layers). Otherwise dtypes must agree."""
        dtype = self.gamma.dtype
        if x.dtype == dtype:
            return x
        if _compat.autocast_dtype(x.device.type) == x.dtype:
            return x.to(dtype)
        raise dtype_error(self, "x", x, dtype)

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

