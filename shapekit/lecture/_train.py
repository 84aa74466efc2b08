"""The lecture's training loop and its ``split_loss`` evaluation, for any ``shapekit.nn`` model.

    torch.manual_seed(42); model = build_model("wavenet")   # seed, then build: init draws
    result = train(model, make_splits(load_names().words), steps=200_000)
    evaluate(model, splits.Xdev, splits.Ydev)                # ~1.9937

Random numbers are drawn exactly as in the lecture: one ``torch.randint`` per step from torch's
global generator, continuing from wherever model initialisation left it. Nothing here seeds, so a
resumed run restores the generator state (``TrainResult.rng_state``) and continues the same draws.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ._data import Splits

__all__ = ["TrainResult", "evaluate", "lr_at", "train"]

PRINT_EVERY = 10_000  # plain progress lines, as often as the lecture prints


@dataclass
class TrainResult:
    """What a (possibly interrupted) call to ``train`` did.

    ``steps_done`` counts every completed step of the run including ``start_step``; ``lossi`` is the
    log10 loss of each of them; ``rng_state`` is torch's generator state after the last completed
    step (restore it with ``torch.set_rng_state`` to continue the same batches); ``signal`` is the
    signal that stopped it (``signal.SIGINT`` or ``signal.SIGTERM``), None otherwise.
    """

    steps_done: int
    lossi: list[float]
    rng_state: Tensor
    seconds: float
    interrupted: bool = False
    start_step: int = 0
    signal: int | None = None

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
    compile: bool = False,
) -> TrainResult:
    """Train ``model`` in place on ``splits.Xtr (N, T) -> splits.Ytr (N,)`` from ``start_step`` up
    to ``steps`` with the lecture's SGD loop; returns a ``TrainResult``.

    Each step: ``ix = torch.randint(0, N, (batch_size,))``, ``logits = model(Xtr[ix])`` ``(B, 27)``,
    cross-entropy, grads to None, backward, ``p.data += -lr * p.grad``, then the step's log10 loss
    is appended to ``lossi`` (pass the earlier run's list to continue it) and ``on_step(step,
    loss)`` is called. Ctrl-C (SIGINT) is deferred to the end of the current step: training stops
    there with ``interrupted=True`` and a consistent model. A ``KeyboardInterrupt`` raised by
    ``on_step`` does the same.

    ``compile=True`` runs the forward, backward and update through ``torch.compile`` (see
    :func:`compiled_step`): faster after the first steps, which compile, and equal to the eager
    loop up to float rounding. The default, eager, reproduces the lecture's numbers bit for bit.

    >>> import torch
    >>> from shapekit.lecture import make_splits
    >>> from shapekit.lecture._models import build_model
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
    fast_step = compiled_step(model) if compile else None
    stop = SigintFlag()
    reporter = _Reporter(steps, start_step) if progress else None
    step, interrupted = start_step, False
    start = time.perf_counter()
    with stop:
        try:
            for i in range(start_step, steps):
                ix = torch.randint(0, Xtr.shape[0], (batch_size,))
                Xb, Yb = Xtr[ix], Ytr[ix]  # (B, T), (B,)
                rate = lr_at(i, lr=lr, lr_final=lr_final, decay_at=decay_at)
                if fast_step is None:
                    # forward pass
                    logits = model(Xb)  # (B, 27)
                    loss = F.cross_entropy(logits, Yb)
                    # backward pass
                    for p in parameters:
                        p.grad = None
                    loss.backward()
                    # update
                    for p in parameters:
                        p.data += -rate * p.grad
                else:
                    loss = fast_step(Xb, Yb, rate)
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
    return TrainResult(step, lossi, torch.get_rng_state(), seconds, interrupted, start_step,
                       stop.signum)


def compiled_step(model: torch.nn.Module) -> Callable[[Tensor, Tensor, float], Tensor]:
    """One step of the lecture's loop, ``(Xb (B, T), Yb (B,), lr) -> loss ()``, compiled by
    ``torch.compile`` into one graph: forward, backward (``torch.func.grad_and_value``) and the
    update ``p += -lr * grad``. The same arithmetic as the eager loop, rounded in another order;
    the parameters and running statistics are updated in place, as eagerly.

    The first step with each batch shape runs eagerly, so every layer checks that shape (in the
    current check mode) before anything is compiled. In the default mode ``"once"`` the compiled
    graph then has no checks in it at all; in ``"always"`` every checked layer runs outside the
    graph.

    >>> import torch
    >>> from shapekit.lecture._models import build_model
    >>> step = compiled_step(build_model("context8"))
    >>> X, Y = torch.zeros(32, 8, dtype=torch.long), torch.zeros(32, dtype=torch.long)
    >>> float(step(X, Y, 0.1)) > 0  # eager and checked: the first step with these shapes
    True
    """
    # The parameters without autograd's tracking, sharing their storage: updated in place.
    params = {name: p.detach() for name, p in model.named_parameters()}
    buffers = dict(model.named_buffers())
    parameters = list(model.parameters())

    def loss_of(params: dict, buffers: dict, Xb: Tensor, Yb: Tensor) -> Tensor:
        logits = torch.func.functional_call(model, (params, buffers), (Xb,))  # (B, 27)
        return F.cross_entropy(logits, Yb)

    @torch.compile
    def fused_step(Xb: Tensor, Yb: Tensor, rate: Tensor) -> Tensor:
        grads, loss = torch.func.grad_and_value(loss_of)(params, buffers, Xb, Yb)
        for name, p in params.items():
            p.add_(-rate * grads[name])  # p.data += -lr * p.grad
        return loss

    def step(Xb: Tensor, Yb: Tensor, rate: float) -> Tensor:
        shapes = (Xb.shape, Xb.dtype, Yb.shape)
        if shapes in checked:
            # the rate as a tensor: a new float would compile a new graph
            return fused_step(Xb, Yb, torch.tensor(rate))
        checked.add(shapes)
        loss = F.cross_entropy(model(Xb), Yb)
        grads = torch.autograd.grad(loss, parameters, allow_unused=True)
        with torch.no_grad():
            for p, grad in zip(parameters, grads, strict=True):
                if grad is not None:
                    p.add_(-rate * grad)
        return loss.detach()

    checked: set[tuple] = set()  # batch shapes whose eager, checked step is done
    return step


@torch.no_grad()
def evaluate(model: torch.nn.Module, X: Tensor, Y: Tensor, *, chunk: int | None = None) -> float:
    """The lecture's ``split_loss``: mean cross-entropy of ``model(X) (N, 27)`` against ``Y (N,)``
    in eval mode (BatchNorm uses its running statistics). The model's mode is restored after.

    ``chunk=None`` is the lecture's single forward over the whole split; ``chunk=n`` runs ``n``
    rows at a time (less memory, equal to ~1e-6).

    >>> import torch
    >>> from shapekit.lecture._models import build_model
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


class SigintFlag:
    """Within ``with``: SIGINT (Ctrl-C) and SIGTERM (``kill``, a job scheduler's stop) set
    ``raised`` instead of stopping mid-step (main thread only); ``signum`` says which came.

    A second signal while the first is pending raises ``KeyboardInterrupt``: the user insists.
    A signal ignored on entry (SIGINT under a `cmd &` in a script) stays ignored; on exit the
    handlers found on entry are restored.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.raised = False
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> SigintFlag:
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                previous = signal.signal(signum, self._handle)
                if previous is signal.SIG_IGN:  # ignored by whoever started us (a `cmd &`): keep it
                    signal.signal(signum, previous)
                else:
                    self._previous[signum] = previous
        return self

    def _handle(self, signum, frame) -> None:
        if self.raised:
            raise KeyboardInterrupt
        self.raised, self.signum = True, signum

    def __exit__(self, *exc) -> None:
        for signum, previous in self._previous.items():
            if previous is not None:  # None: set outside Python, cannot be restored
                signal.signal(signum, previous)
        self._previous = {}


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
            # one step is no rate: the first includes warm-up, so it would read "(1 steps/s)"
            rate = f"  ({self._rate(i):,.0f} steps/s)" if i > self.start_step else ""
            print(f"{i:7d}/{self.steps:7d}: {loss:.4f}{rate}", flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
