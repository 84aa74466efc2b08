"""shapekit's training loop against the lecture's plain-torch loop, measured side by side.

    python benchmarks/bench_training.py [--threads 1] [--repeats 40] [--steps 50]

Both sides train the lecture's 76K hierarchical model (batch 32, SGD, the step decay) for
``--steps`` steps per round and keep the per-step log10 loss:
  lecture        the lecture's own loop and hand-written layer classes (``lecture_reference.py``)
  shapekit off   ``shapekit.train()`` with shapekit.nn layers, checks off
  shapekit once  the same in the default check mode
  layers only    shapekit.nn layers (checks off) in the lecture's loop: the layers' own cost
Both loops do the same float32 arithmetic in the same order (the losses are bit-identical; see
tests/test_train.py). Target: lecture / shapekit off >= 1.0 (shapekit no slower).
"""

from __future__ import annotations

import functools
import time

import _common
import lecture_reference
import torch

import shapekit
from shapekit import nn
from shapekit._data import Splits
from shapekit._train import train

LECTURE = "lecture's loop (plain torch)"
OFF = "shapekit.train(), checks off"
ONCE = "shapekit.train(), checks once (default)"
LAYERS = "shapekit layers in the lecture's loop, off"


def main() -> None:
    p = _common.parser(__doc__.splitlines()[0])
    p.set_defaults(repeats=40, steps=50)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    X, Y = _common.fake_data()
    splits = Splits(X, Y, X[:0], Y[:0], X[:0], Y[:0])
    lecture, lecture_params = lecture_reference.build_lecture_model()
    model = _common.wavenet(nn)  # shapekit.nn, the same architecture and initialisation
    layers = _common.wavenet(nn)
    layers_params = list(layers.parameters())

    def run_lecture(net, params) -> None:
        with shapekit.checks("off"):
            lecture_reference.lecture_steps(net, params, X, Y, args.steps)

    def run_shapekit(mode: str) -> None:
        with shapekit.checks(mode):
            train(model, splits, steps=args.steps, progress=False)

    times = _common.side_by_side(
        {
            LECTURE: functools.partial(run_lecture, lecture, lecture_params),
            OFF: functools.partial(run_shapekit, "off"),
            ONCE: functools.partial(run_shapekit, "once"),
            LAYERS: functools.partial(run_lecture, layers, layers_params),
        },
        args.repeats,
        clock=time.thread_time,
    )
    _common.report(
        "Training: shapekit vs the lecture's plain-torch loop (76K model, batch 32)",
        times,
        args.steps,
        [
            ("lecture / shapekit off (target >= 1.0)", LECTURE, OFF),
            ("lecture / shapekit once", LECTURE, ONCE),
            ("lecture / layers only", LECTURE, LAYERS),
        ],
    )


if __name__ == "__main__":
    main()
