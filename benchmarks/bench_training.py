"""shapekit's training loop against the lecture's plain-torch loop, measured side by side.

    python benchmarks/bench_training.py [--threads 1] [--repeats 40] [--steps 50]

Both sides train the lecture's 76K hierarchical model (batch 32, SGD, the step decay) for
``--steps`` steps per round and keep the per-step log10 loss:
  lecture        the lecture's own loop and hand-written layer classes
                 (``tests/lecture_reference.py``)
  shapekit off   ``shapekit.lecture.train()`` with shapekit.nn layers, checks off
  shapekit once  the same in the default check mode
  layers only    shapekit.nn layers (checks off) in the lecture's loop: the layers' own cost
  compiled       ``shapekit.lecture.train(compile=True)``, checks off and once: forward,
                 backward and update in one torch.compile graph
The eager loops do the same float32 arithmetic in the same order (the losses are bit-identical;
see tests/test_train.py); the compiled one rounds in another order, so the script also trains
2,000 steps both ways from one seed and prints the largest loss difference, and times the first
compiled step (the compilation) in a fresh dynamo cache.
Targets: lecture / shapekit off >= 0.9; lecture / compiled once >= 2 (aim 3); once / off <= 1.10,
eager and compiled.
"""

from __future__ import annotations

import functools
import time

import _common
import torch

import shapekit
from shapekit import nn
from shapekit.lecture import Splits, train

LECTURE = "lecture's loop (plain torch)"
OFF = "shapekit.lecture.train(), checks off"
ONCE = "shapekit.lecture.train(), checks once (default)"
LAYERS = "shapekit layers in the lecture's loop, off"
COMPILED_OFF = "shapekit.lecture.train(compile=True), checks off"
COMPILED_ONCE = "shapekit.lecture.train(compile=True), checks once"


def fidelity(X, Y, steps: int = 2000) -> tuple[float, float]:
    """Train ``steps`` eagerly and compiled from one seed: the largest |loss difference| over the
    run, and the seconds the first compiled step took (tracing and compiling, fresh cache)."""
    splits = Splits(X, Y, X[:0], Y[:0], X[:0], Y[:0])
    losses = []
    for compile in (False, True):
        model = _common.wavenet(nn)
        torch.manual_seed(7)
        losses.append(train(model, splits, steps=steps, progress=False, compile=compile).lossi)
    torch._dynamo.reset()
    model = _common.wavenet(nn)
    start = time.perf_counter()
    train(model, splits, steps=2, progress=False, compile=True)  # eager, then the compiled step
    first = time.perf_counter() - start
    eager, compiled = losses  # log10 losses
    return max(abs(10**a - 10**b) for a, b in zip(eager, compiled, strict=True)), first


def main() -> None:
    p = _common.parser(__doc__.splitlines()[0])
    p.set_defaults(repeats=40, steps=50)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    X, Y = _common.fake_data()
    splits = Splits(X, Y, X[:0], Y[:0], X[:0], Y[:0])
    _common.use_tests_oracle()  # tests/ on sys.path: the lecture's loop and layers
    import lecture_reference

    lecture, lecture_params = lecture_reference.build_lecture_model()
    model = _common.wavenet(nn)  # shapekit.nn, the same architecture and initialisation
    layers = _common.wavenet(nn)
    layers_params = list(layers.parameters())

    def run_lecture(net, params) -> None:
        with shapekit.checks("off"):
            lecture_reference.lecture_steps(net, params, X, Y, args.steps)

    def run_shapekit(mode: str, compile: bool = False) -> None:
        with shapekit.checks(mode):
            train(model, splits, steps=args.steps, progress=False, compile=compile)

    times = _common.side_by_side(
        {
            LECTURE: functools.partial(run_lecture, lecture, lecture_params),
            OFF: functools.partial(run_shapekit, "off"),
            ONCE: functools.partial(run_shapekit, "once"),
            LAYERS: functools.partial(run_lecture, layers, layers_params),
            COMPILED_OFF: functools.partial(run_shapekit, "off", True),
            COMPILED_ONCE: functools.partial(run_shapekit, "once", True),
        },
        args.repeats,
        clock=time.thread_time,
    )
    _common.report(
        "Training: shapekit vs the lecture's plain-torch loop (76K model, batch 32)",
        times,
        args.steps,
        [
            ("lecture / shapekit off (target >= 0.9)", LECTURE, OFF),
            ("lecture / shapekit once", LECTURE, ONCE),
            ("lecture / layers only", LECTURE, LAYERS),
            ("once / off, eager (target <= 1.10)", ONCE, OFF),
            ("lecture / compiled once (target >= 2)", LECTURE, COMPILED_ONCE),
            ("lecture / compiled off", LECTURE, COMPILED_OFF),
            ("once / off, compiled (target <= 1.10)", COMPILED_ONCE, COMPILED_OFF),
        ],
    )
    difference, first = fidelity(X, Y)
    print(f"  compiled vs eager, 2,000 steps from one seed: largest |loss difference| "
          f"{difference:.2e} (target <= 1e-3)")
    print(f"  first compiled step (trace + compile; dynamo reset, inductor's disk cache as "
          f"it is): {first:.1f} s")


if __name__ == "__main__":
    main()
