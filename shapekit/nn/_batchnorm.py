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
        self._update: _RunningUpdate | None = None  # made by the first training call

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
            # keepdim, as in the lecture: (1, 1, C) statistics broadcast without a reshape, and
            # their backward needs no unsqueeze (a dozen fewer autograd steps per training step).
            xmean = x.mean(dims, keepdim=True)  # (1, ..., 1, C)
            xvar = x.var(dims, keepdim=True, unbiased=self.unbiased)  # (1, ..., 1, C)
            update = self._update
            if update is None or not update.fits(self, x, running_mean, running_var):
                update = self._update = _RunningUpdate(self, x, running_mean, running_var)
            eps = update.eps
        else:
            xmean, xvar, eps = running_mean, running_var, self.eps
        xhat = (x - xmean) / torch.sqrt(xvar + eps)
        out = gamma * xhat + beta
        if training:
            # running = (1 - momentum) * running + momentum * batch, both statistics in two calls
            # (bit-identical to the lecture's separate operations: see shapekit._arith).
            batch_var = xvar if self.unbiased else x.var(dims, keepdim=True)
            update.decay_()
            add_scaled_(update.views, [xmean.detach(), batch_var.detach()], self.momentum)
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


class _RunningUpdate:
    """What a training call of :class:`BatchNorm1d` needs besides the batch, made once and kept
    while the buffers, the input's rank and dtype, ``eps`` and ``momentum`` stay the same:

    - the running buffers as ``(1, ..., 1, C)`` views, which the keepdim batch statistics update
      in place without a reshape of their own;
    - ``eps`` and ``1 - momentum`` as 0-d tensors of the input's dtype. A Python float becomes a
      tensor and is cast on every call; these hold the very value that cast gives, so results
      are bit-identical. Other dtypes than float32/64 keep the floats (a half-precision 0-d
      tensor would round eps differently from the float arithmetic torch uses for a scalar), and
      are multiplied one by one (see ``decay_``).
    """

    __slots__ = ("decay", "dtype", "eps", "eps_value", "momentum_value", "ndim", "views")

    def __init__(self, bn: BatchNorm1d, x: Tensor, running_mean: Tensor, running_var: Tensor):
        self.ndim, self.dtype = x.ndim, x.dtype
        self.eps_value, self.momentum_value = bn.eps, bn.momentum
        shape = (1,) * (x.ndim - 1) + (-1,)
        self.views = [running_mean.view(shape), running_var.view(shape)]
        exact = x.dtype in (torch.float32, torch.float64) and running_mean.dtype == x.dtype
        if exact and running_var.dtype == x.dtype:
            self.eps = torch.tensor(bn.eps, dtype=x.dtype, device=x.device)
            self.decay = torch.tensor(1 - bn.momentum, dtype=x.dtype, device=running_mean.device)
        else:
            self.eps, self.decay = bn.eps, 1 - bn.momentum

    def decay_(self) -> None:
        """running *= 1 - momentum, for both statistics."""
        if isinstance(self.decay, Tensor):
            torch._foreach_mul_(self.views, self.decay)
        else:  # an in-place _foreach_mul_ by a float rounds otherwise than `*` in half precision
            for view in self.views:
                view.mul_(self.decay)

    def fits(self, bn: BatchNorm1d, x: Tensor, running_mean: Tensor, running_var: Tensor) -> bool:
        views = self.views
        return (
            views[0]._base is running_mean
            and views[1]._base is running_var
            and x.ndim == self.ndim
            and x.dtype is self.dtype
            and bn.eps == self.eps_value
            and bn.momentum == self.momentum_value
        )
