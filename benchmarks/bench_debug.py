"""What ``shapekit.explain()`` and ``shapekit.detect()`` cost around a training step, side by side.

    python benchmarks/bench_debug.py [--threads 1] [--repeats 7] [--steps 200]

Contenders (one training step of the lecture's 76K model from shapekit.nn, batch 32, SGD, the
whole step inside the block: forward, cross_entropy, backward, update):
  plain     no block
  explain   each step inside ``with explain():``
  detect    each step inside ``with detect():``
  mode      each step inside a bare pass-through TorchFunctionMode: the per-op dispatch cost that
            ``explain()`` avoids by catching at ``__exit__`` (the design it did not take)
Targets (issue 7): explain/plain <= 1.2, detect/plain <= 3.
"""

from __future__ import annotations

import functools
import time
import warnings
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

import _common
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from shapekit import PitfallWarning, nn
from shapekit._detect import detect
from shapekit._explain import explain


class PassThrough(TorchFunctionMode):
    """Runs every torch call unchanged: the floor cost of any per-op function mode."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        return func(*args, **(kwargs or {}))


def steps(model: torch.nn.Module, X: torch.Tensor, Y: torch.Tensor, n: int,
          block: Callable[[], AbstractContextManager]) -> None:
    """``n`` training steps, each one entirely inside ``block()``."""
    params = list(model.parameters())
    for _ in range(n):
        with block():
            ix = torch.randint(0, X.shape[0], (32,))
            loss = F.cross_entropy(model(X[ix]), Y[ix])
            for p in params:
                p.grad = None
            loss.backward()
            for p in params:
                p.data += -0.1 * p.grad


def main() -> None:
    args = _common.parser(__doc__.splitlines()[0]).parse_args()
    torch.set_num_threads(args.threads)
    X, Y = _common.fake_data()
    model = _common.wavenet(nn)
    warnings.simplefilter("error", PitfallWarning)  # the lecture's step is correct code: silent
    run = functools.partial(steps, model, X, Y, args.steps)
    contenders = {
        "plain": functools.partial(run, nullcontext),
        "explain()": functools.partial(run, explain),
        "detect()": functools.partial(run, detect),
        "bare TorchFunctionMode (reference)": functools.partial(run, PassThrough),
    }
    times = _common.side_by_side(contenders, args.repeats, clock=time.thread_time)
    _common.report(
        "explain() / detect() around a training step of the 76K model",
        times,
        args.steps,
        [("explain / plain   (target <= 1.2)", "explain()", "plain"),
         ("detect / plain    (target <= 3)", "detect()", "plain"),
         ("bare mode / plain", "bare TorchFunctionMode (reference)", "plain")],
    )


if __name__ == "__main__":
    main()
