"""Shared helpers for the benchmark scripts: the lecture's 76K model, a training step, and a
side-by-side timer that interleaves the contenders so machine noise hits them alike; ratios are
taken within each round, then the median over rounds is reported."""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F


def use_tests_oracle() -> None:
    """Put ``tests/`` on ``sys.path``: the lecture's plain-torch loop (``lecture_reference``) and
    its layer classes live there, as the tests' oracle; the benchmarks time the same code."""
    tests = str(Path(__file__).resolve().parents[1] / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--threads", type=int, default=torch.get_num_threads(),
                   help="torch threads (default: torch's default, %(default)s here)")
    p.add_argument("--repeats", type=int, default=7, help="interleaved rounds (median is reported)")
    p.add_argument("--steps", type=int, default=200, help="training steps per round")
    return p


def wavenet(nn) -> torch.nn.Module:
    """The lecture's 76K hierarchical model built from ``nn`` (shapekit.nn or a look-alike)."""
    n_embd, n_hidden, vocab = 24, 128, 27
    torch.manual_seed(42)
    layers = [nn.Embedding(vocab, n_embd)]
    fan_in = n_embd * 2
    for _ in range(3):
        layers += [nn.FlattenConsecutive(2), nn.Linear(fan_in, n_hidden, bias=False),
                   nn.BatchNorm1d(n_hidden), nn.Tanh()]
        fan_in = n_hidden * 2
    layers.append(nn.Linear(n_hidden, vocab))
    model = nn.Sequential(layers)
    with torch.no_grad():
        model.layers[-1].weight *= 0.1
    return model


def fake_data(n: int = 20_000, block_size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    X = torch.randint(0, 27, (n, block_size), generator=g)  # (N, T)
    Y = torch.randint(0, 27, (n,), generator=g)  # (N,)
    return X, Y


def sgd_steps(model: torch.nn.Module, X: torch.Tensor, Y: torch.Tensor, steps: int,
              wrap: Callable | None = None) -> None:
    """``steps`` of the lecture's loop: randint batch, forward, cross_entropy, backward, SGD."""
    params = list(model.parameters())
    for _ in range(steps):
        ix = torch.randint(0, X.shape[0], (32,))
        if wrap is None:
            loss = F.cross_entropy(model(X[ix]), Y[ix])
        else:
            with wrap():
                loss = F.cross_entropy(model(X[ix]), Y[ix])
        for p in params:
            p.grad = None
        loss.backward()
        for p in params:
            p.data += -0.1 * p.grad


def side_by_side(
    contenders: dict[str, Callable[[], None]], repeats: int,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, list[float]]:
    """Seconds per call of each contender in each of ``repeats`` rounds, after a warm-up round.

    Every round runs each contender once, in the given order on even rounds and reversed on odd
    ones: whoever runs right after another model pays for the caches that model left behind, and
    alternating the order shares that cost out evenly. Rounds are paired, so ``ratio`` compares
    contenders within a round. ``clock=time.thread_time`` counts only this thread's CPU time
    (single-threaded torch work), so another process taking the core for a moment is not counted.
    """
    for run in contenders.values():
        run()
    times: dict[str, list[float]] = {name: [] for name in contenders}
    names = list(contenders)
    for round_ in range(repeats):
        for name in names if round_ % 2 == 0 else reversed(names):
            start = clock()
            contenders[name]()
            times[name].append(clock() - start)
    return times


def ratio(times: dict[str, list[float]], num: str, den: str) -> float:
    """The median over rounds of ``num``'s time / ``den``'s time in the same round: a slow spell
    of the machine hits both sides of each ratio, so it cancels."""
    return statistics.median(a / b for a, b in zip(times[num], times[den], strict=True))


def median(times: dict[str, list[float]], name: str) -> float:
    return statistics.median(times[name])


def report(
    title: str, times: dict[str, list[float]], per: int, ratios: list[tuple[str, str, str]]
) -> None:
    """Print median per-step times and the paired ratios ``(label, numerator, denominator)``."""
    print(f"\n{title}  (torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
          f"{len(next(iter(times.values())))} rounds)")
    for name in times:
        print(f"  {name:<40} {median(times, name) / per * 1e3:8.3f} ms/step")
    for label, num, den in ratios:
        print(f"  {label:<40} {ratio(times, num, den):8.2f}x")
