"""What one checked call costs: ``@shaped`` in "once" (a trusted signature) and "always", next to
``jaxtyped(typechecker=beartype)`` on the same functions, measured side by side.

    python benchmarks/bench_shaped.py [--repeats 7] [--calls 2000]

Each round times every contender on ``--calls`` calls (this thread's CPU time), the contenders
interleaved and their order alternated so machine noise hits them alike; the median over rounds
of the per-call time is reported, with the check cost (minus the undecorated call) and the ratio
to jaxtyping + beartype.
Targets: a "once" hit within 2 us of the undecorated call; "always" faster than jaxtyping +
beartype.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from beartype import beartype
from jaxtyping import Float, jaxtyped
from torch import Tensor

import shapekit


def pairwise(x: Float[Tensor, "n d"], y: Float[Tensor, "m d"]) -> Float[Tensor, "n m"]:
    return x @ y.T


class Proj(torch.nn.Module):
    """A layer whose annotation reads ``self``: ``(batch, fan_in) -> (batch, fan_out)``."""

    def __init__(self, fan_in: int, fan_out: int) -> None:
        super().__init__()
        self.fan_in, self.fan_out = fan_in, fan_out
        self.weight = torch.nn.Parameter(torch.randn(fan_in, fan_out))

    def forward(self, x: Float[Tensor, "batch {self.fan_in}"]) -> Float[Tensor, "batch {self.fan_out}"]:  # noqa: E501
        return x @ self.weight  # (batch, fan_out)


def _layer(forward: Callable) -> torch.nn.Module:
    cls = type("Proj", (Proj,), {"forward": forward})
    torch.manual_seed(0)
    return cls(8, 4)


def _per_call(fn: Callable[[], object], calls: int) -> float:
    """Microseconds of this thread's CPU time per call (the machine's other load left out)."""
    start = time.thread_time()
    for _ in range(calls):
        fn()
    return (time.thread_time() - start) / calls * 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=7, help="interleaved rounds (median reported)")
    p.add_argument("--calls", type=int, default=2000, help="calls per contender per round")
    args = p.parse_args()
    torch.set_num_threads(1)
    x, y, z = torch.randn(4, 3), torch.randn(5, 3), torch.randn(2, 8)
    checked_pairwise = shapekit.shaped(pairwise)
    peer_pairwise = jaxtyped(typechecker=beartype)(pairwise)
    plain_layer = Proj(8, 4)
    shaped_layer = _layer(shapekit.shaped(Proj.forward))
    peer_layer = _layer(jaxtyped(typechecker=beartype)(Proj.forward))
    cases = {
        "pairwise(x, y)": {
            "undecorated": lambda: pairwise(x, y),
            "once (hit)": lambda: checked_pairwise(x, y),
            "always": lambda: checked_pairwise(x, y),
            "jaxtyping + beartype": lambda: peer_pairwise(x, y),
        },
        "Proj(x), {self.fan_in}": {
            "undecorated": lambda: plain_layer(z),
            "once (hit)": lambda: shaped_layer(z),
            "always": lambda: shaped_layer(z),
            "jaxtyping + beartype": lambda: peer_layer(z),
        },
    }
    # The mode is set around the timed loop, not per call: a checks() block costs ~1 us itself.
    previous = shapekit.get_checks()
    try:
        for case, contenders in cases.items():
            times: dict[str, list[float]] = {name: [] for name in contenders}
            for name, fn in contenders.items():  # warm up; "once" learns the signature here
                shapekit.set_checks("always" if name == "always" else "once")
                fn()
            for round_ in range(args.repeats):
                order = list(contenders.items())
                for name, fn in order if round_ % 2 else order[::-1]:  # alternate the order
                    shapekit.set_checks("always" if name == "always" else "once")
                    fn()  # a mode switch forgets what "once" trusted: relearn before timing
                    times[name].append(_per_call(fn, args.calls))
            med = {name: statistics.median(t) for name, t in times.items()}
            base, peer = med["undecorated"], med["jaxtyping + beartype"]
            print(f"\n{case}  (median of {args.repeats} rounds x {args.calls} calls)")
            columns = ("us/call", "check us", "vs jaxtyping+beartype")
            print(f"  {'contender':<22} {columns[0]:>8} {columns[1]:>9} {columns[2]:>22}")
            for name, t in med.items():
                print(f"  {name:<22} {t:8.2f} {t - base:9.2f} {t / peer:21.2f}x")
    finally:
        shapekit.set_checks(previous)


if __name__ == "__main__":
    main()
