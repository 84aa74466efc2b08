"""The lecture's training loop and its ``split_loss`` evaluation, for any ``shapekit.nn`` model.

    torch.manual_seed(42); model = build_model("wavenet")   # seed, then build: init draws
    result = train(model, make_splits(load_names().words), steps=200_000)
    evaluate(model, splits.Xdev, splits.Ydev)                # ~1.9937

Random numbers are drawn exactly as in the lecture: one ``torch.randint`` per step from torch's
global generator, continuing from wherever model initialisation left it. Nothing here seeds, so a
resumed run restores the generator state (``TrainResult.rng_state``) and continues the same draws.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ._arith import add_scaled_
from ._data import Splits
from .nn._sequential import direct_call

__all__ = ["TrainResult", "evaluate", "lr_at", "train"]

PRINT_EVERY = 10_000  # plain progress lines, as often as the lecture prints


@dataclass
class TrainResult:
    """What a (possibly interrupted) call to ``train`` did.

    ``steps_done`` counts every completed step of the run including ``start_step``; ``lossi`` is the
    log10 loss of each of them; ``rng_state`` is torch's generator state after the last completed
    step (restore it with ``torch.set_rng_state`` to continue the same batches).
    """

    steps_done: int
    lossi: list[float]
    rng_state: Tensor
    seconds: float
    interrupted: bool = False
    start_step: int = 0

    @property
    def steps_per_second(self) -> float:
        """Steps of this call per second of wall time."""
        return (self.steps_done - self.start_step) / self.seconds if self.seconds > 0 else 0.0


def lr_at(step: int, *, lr: float, lr_final: float, decay_at: int) -> float:
    """The lecture's step decay: ``lr`` before ``decay_at``, ``lr_final`` from it on.

    >>> [lr_at(i, lr=0.1, lr_final=0.01, decay_at=150_000) for i in (149_999, 150_000)]
    [0.1, 0.01]
    """
    return lr if step < decay_at else lr_final


def default_decay_at(steps: int) -> int:
    """Three quarters of the run, as in the lecture (150,000 of 200,000).

    >>> default_decay_at(200_000), default_decay_at(1000)
    (150000, 750)
    """
    return steps * 3 // 4


def train(
    model: torch.nn.Module,
    splits: Splits,
    *,
    steps: int,
    batch_size: int = 32,
    lr: float = 0.1,
    lr_final: float = 0.01,
    decay_at: int | None = None,
    progress: bool = True,
    on_step: Callable[[int, float], None] | None = None,
    start_step: int = 0,
    lossi: list[float] | None = None,
) -> TrainResult:
    """Train ``model`` in place on ``splits.Xtr (N, T) -> splits.Ytr (N,)`` from ``start_step`` up
    to ``steps`` with the lecture's SGD loop; returns a ``TrainResult``.

    Each step: ``ix = torch.randint(0, N, (batch_size,))``, ``logits = model(Xtr[ix])`` ``(B, 27)``,
    cross-entropy, grads to None, backward, ``p.data += -lr * p.grad`` (:func:`sgd_update`), then
    the step's log10 loss is appended to ``lossi`` (pass the earlier run's list to continue it)
    and ``on_step(step, loss)`` is called. Ctrl-C (SIGINT) is deferred to the end of the current
    step: training stops there with ``interrupted=True`` and a consistent model. A
    ``KeyboardInterrupt`` raised by ``on_step`` does the same.

    >>> import torch
    >>> from shapekit import make_splits
    >>> from shapekit._models import build_model
    >>> _ = torch.manual_seed(42); model = build_model("context8")
    >>> result = train(model, make_splits(["emma", "olivia", "ava"]), steps=5, progress=False)
    >>> result.steps_done, len(result.lossi)
    (5, 5)
    """
    if decay_at is None:
        decay_at = default_decay_at(steps)
    Xtr, Ytr = splits.Xtr, splits.Ytr
    parameters = list(model.parameters())
    lossi = [] if lossi is None else lossi
    model.train()
    stop = _SigintFlag()
    reporter = _Reporter(steps, start_step) if progress else None
    step, interrupted = start_step, False
    backward = None  # chosen at the first loss
    start = time.perf_counter()
    with stop:
        try:
            for i in range(start_step, steps):
                ix = torch.randint(0, Xtr.shape[0], (batch_size,))
                Xb, Yb = Xtr[ix], Ytr[ix]  # (B, T), (B,)
                logits = direct_call(model)(Xb)  # (B, 27)
                loss = F.cross_entropy(logits, Yb)
                for p in parameters:
                    p.grad = None
                if backward is None:
                    backward = backward_runner(loss)
                backward(loss)
                sgd_update(parameters, lr_at(i, lr=lr, lr_final=lr_final, decay_at=decay_at))
                lossi.append(loss.log10().item())
                step = i + 1
                if reporter is not None:
                    reporter.update(i, lossi[-1])
                if on_step is not None:
                    on_step(i, lossi[-1])
                if stop.raised:
                    interrupted = True
                    break
        except KeyboardInterrupt:
            interrupted = True
        finally:
            if reporter is not None:
                reporter.close()
    seconds = time.perf_counter() - start
    return TrainResult(step, lossi, torch.get_rng_state(), seconds, interrupted, start_step)


def sgd_update(parameters: list[torch.nn.Parameter], rate: float) -> None:
    """The lecture's update ``p.data += -rate * p.grad`` for every parameter that has a gradient,
    in one batched call instead of two tensor operations per parameter, bit for bit the same
    (see ``shapekit._arith``).

    >>> import torch
    >>> w = torch.nn.Parameter(torch.ones(3, 2)); w.grad = torch.full((3, 2), 2.0)
    >>> sgd_update([w], 0.1); w.data[0]  # 1 - 0.1 * 2
    tensor([0.8000, 0.8000])
    """
    grads = [p.grad for p in parameters]
    with torch.no_grad():
        try:
            add_scaled_(parameters, grads, -rate)
        except TypeError:  # a parameter the loss did not reach has no gradient: leave it be
            kept = [(p, g) for p, g in zip(parameters, grads, strict=True) if g is not None]
            add_scaled_([p for p, _ in kept], [g for _, g in kept], -rate)


def backward_runner(loss: Tensor) -> Callable[[Tensor], None]:
    """How this loop runs backward from losses like ``loss`` (a scalar): ``Tensor.backward``,
    or, for a plain CPU tensor, torch's autograd engine called directly with a kept seed of 1.

    The engine does the same work either way (the same nodes, hooks and anomaly checks; the
    gradients are bit-identical). What the direct call skips is ``torch.autograd.backward``'s
    per-call Python: argument normalisation, a fresh ``ones_like`` seed, a logging-level lookup
    and a context copy that only device threads (CUDA) use; about 1.5% of a training step of the
    lecture's model. Tensor subclasses, other devices, debug logging of autograd, and a torch
    without the engine handle keep ``Tensor.backward``.

    >>> import torch
    >>> w = torch.ones(3, requires_grad=True)
    >>> loss = (2 * w).sum()  # () scalar
    >>> backward_runner(loss)(loss); w.grad
    tensor([2., 2., 2.])
    """
    engine = getattr(torch.autograd.Variable, "_execution_engine", None)
    autograd_log = getattr(torch.autograd.graph, "log", None)
    if (
        engine is None
        or type(loss) is not Tensor
        or loss.ndim != 0
        or loss.device.type != "cpu"
        or (isinstance(autograd_log, logging.Logger) and autograd_log.isEnabledFor(logging.DEBUG))
    ):
        return Tensor.backward
    seed = (torch.ones_like(loss),)  # the gradient of the loss with respect to itself

    def run(loss: Tensor) -> None:
        engine.run_backward(
            (loss,), seed, False, False, (), allow_unreachable=True, accumulate_grad=True
        )

    try:  # confirm the engine takes this call, on a throwaway graph, before the loop relies on it
        probe = torch.zeros((), dtype=loss.dtype, requires_grad=True)
        run(probe * 1)
    except (TypeError, RuntimeError):
        return Tensor.backward
    return run


@torch.no_grad()
def evaluate(model: torch.nn.Module, X: Tensor, Y: Tensor, *, chunk: int | None = None) -> float:
    """The lecture's ``split_loss``: mean cross-entropy of ``model(X) (N, 27)`` against ``Y (N,)``
    in eval mode (BatchNorm uses its running statistics). The model's mode is restored after.

    ``chunk=None`` is the lecture's single forward over the whole split; ``chunk=n`` runs ``n``
    rows at a time (less memory, equal to ~1e-6).

    >>> import torch
    >>> from shapekit._models import build_model
    >>> X, Y = torch.zeros(100, 8, dtype=torch.long), torch.zeros(100, dtype=torch.long)
    >>> round(evaluate(build_model("wavenet"), X, Y), 1)  # an untrained model: about ln(27)
    3.3
    """
    was_training = model.training
    model.eval()
    try:
        if chunk is None or chunk >= X.shape[0]:
            return F.cross_entropy(model(X), Y).item()
        total = torch.zeros((), dtype=torch.float64)
        for i in range(0, X.shape[0], chunk):
            logits = model(X[i : i + chunk])
            total += F.cross_entropy(logits, Y[i : i + chunk], reduction="sum").double()
        return (total / X.shape[0]).item()
    finally:
        model.train(was_training)


class _SigintFlag:
    """Within ``with``: SIGINT sets ``raised`` instead of raising mid-step (main thread only)."""

    def __init__(self) -> None:
        self.raised = False
        self._previous = None

    def __enter__(self) -> _SigintFlag:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.raised:  # a second Ctrl-C: the user insists
            raise KeyboardInterrupt
        self.raised = True

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


class _Reporter:
    """A live progress bar on a terminal; on a pipe or file, one line every 10,000 steps."""

    def __init__(self, steps: int, start_step: int) -> None:
        self.steps, self.start_step = steps, start_step
        self.t0 = time.perf_counter()
        self.bar = None
        if sys.stdout.isatty():
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self.bar = Progress(
                TextColumn("train"), BarColumn(), MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]:.4f}  {task.fields[rate]:,.0f} steps/s"),
                TimeRemainingColumn(),
            )
            self.task = self.bar.add_task(
                "train", total=steps, completed=start_step, loss=0.0, rate=0.0
            )
            self.bar.start()

    def _rate(self, i: int) -> float:
        seconds = time.perf_counter() - self.t0
        return (i + 1 - self.start_step) / seconds if seconds > 0 else 0.0

    def update(self, i: int, log10_loss: float) -> None:
        if self.bar is not None:
            if i % 50 == 0 or i + 1 == self.steps:
                loss = 10**log10_loss
                self.bar.update(self.task, completed=i + 1, loss=loss, rate=self._rate(i))
        elif i % PRINT_EVERY == 0 or i + 1 == self.steps:
            loss = 10**log10_loss
            print(f"{i:7d}/{self.steps:7d}: {loss:.4f}  ({self._rate(i):,.0f} steps/s)", flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
