"""The lecture's BatchNorm1d bug, kept on purpose to reproduce row 3 of its performance log.

    shapekit train --model hierarchical-bug   (builds the model with this layer)

It ships in the package, so an installed shapekit reproduces the row without a checkout. The
layer below is the lecture's ``BatchNorm1d`` as first written: mean and variance over ``dim=0``
only, with ``keepdim=True``. On 2-D input ``(B, C)`` that is right. On the hierarchical model's
3-D input ``(B, T, C)`` the statistics are taken per position ``(1, T, C)`` instead of per
channel, and the running buffers silently turn from ``(C,)`` into ``(1, T, C)``.
``shapekit.nn.BatchNorm1d`` has no such mode; see
``lessons/04_batchnorm_btc.py`` for the bug explained.

>>> import torch
>>> bn = BuggyBatchNorm1d(68)
>>> _ = bn(torch.randn(32, 4, 68))
>>> tuple(bn.running_mean.shape)  # was (68,)
(1, 4, 68)
"""

from __future__ import annotations

import torch
from torch import Tensor


class BuggyBatchNorm1d(torch.nn.Module):
    """The lecture's layer with statistics over axis 0 only: ``(B, T, C)`` gets ``(1, T, C)``
    statistics and buffers. Use only to reproduce the lecture's ``hierarchical-bug`` row."""

    def __init__(self, dim: int, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__()
        self.dim, self.eps, self.momentum = dim, eps, momentum
        self.gamma = torch.nn.Parameter(torch.ones(dim))
        self.beta = torch.nn.Parameter(torch.zeros(dim))
        self.register_buffer("running_mean", torch.zeros(dim))
        self.register_buffer("running_var", torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        if self.training:
            xmean = x.mean(0, keepdim=True)  # (1, T, C) for 3-D input: the bug
            xvar = x.var(0, keepdim=True)  # (1, T, C)
        else:
            xmean, xvar = self.running_mean, self.running_var
        xhat = (x - xmean) / torch.sqrt(xvar + self.eps)
        out = self.gamma * xhat + self.beta
        if self.training:
            with torch.no_grad():  # assigning a registered buffer name replaces the buffer
                self.running_mean = (1 - self.momentum) * self.running_mean + self.momentum * xmean
                self.running_var = (1 - self.momentum) * self.running_var + self.momentum * xvar
        return out

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # A trained layer's buffers are (1, T, C), a fresh one's (C,): take the saved shape.
        for name in ("running_mean", "running_var"):
            saved = state_dict.get(prefix + name)
            if saved is not None and saved.shape != self._buffers[name].shape:
                self._buffers[name] = torch.empty_like(saved)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return f"{self.dim}, eps={self.eps}, momentum={self.momentum}, statistics over axis 0 (bug)"
