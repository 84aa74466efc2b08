"""The lecture's ``a = a + c * b``, for lists of tensors in one call and bit for bit.

The lecture updates parameters with ``p.data += -lr * p.grad`` and BatchNorm's running statistics
with ``(1 - m) * running + m * batch``: two tensor operations per tensor, each with its own Python
and dispatch overhead, which for the lecture's small model is a real share of a training step.
``addcmul`` does ``a + (c * b) * 1`` in one pass over each tensor: the product ``c * b`` is rounded
once, exactly as in the separate multiply, and multiplying by one is exact, so even a fused
multiply-add rounds the sum exactly as the separate ``+`` does. The results are bit-identical
for float32 and float64. Half-precision tensors are computed in float32 inside ``addcmul`` and
rounded once at the end, unlike the two rounded steps, so they take two batched calls instead.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

_UNITS: dict[torch.device, Tensor] = {}  # a 0-d one per device: the exact factor 1
# dtypes that addcmul computes in their own precision, so each step is rounded as when separate
_SINGLE_ROUNDING = (torch.float32, torch.float64)


def add_scaled_(targets: Sequence[Tensor], sources: Sequence[Tensor], scale: float) -> None:
    """``targets[i] += scale * sources[i]`` for every ``i``, in place and in one call.

    Bit-identical to the two-step ``t += scale * s``; the targets must not require gradients (pass
    ``p.data``, or call under ``torch.no_grad()``).

    >>> import torch
    >>> running = [torch.zeros(3), torch.ones(2)]  # shapes (3,) and (2,)
    >>> add_scaled_(running, [torch.full((3,), 2.0), torch.full((2,), 4.0)], 0.5)
    >>> running
    [tensor([1., 1., 1.]), tensor([3., 3.])]
    """
    if not targets:
        return
    if not isinstance(targets, list):
        targets = list(targets)
    if not isinstance(sources, list):
        sources = list(sources)
    dtype = targets[0].dtype
    if dtype in _SINGLE_ROUNDING and all([t.dtype == dtype for t in targets]):
        device = targets[0].device
        one = _UNITS.get(device)
        if one is None:
            one = _UNITS[device] = torch.ones((), device=device)
        torch._foreach_addcmul_(targets, sources, [one] * len(targets), value=scale)
    else:
        torch._foreach_add_(targets, torch._foreach_mul(sources, scale))
