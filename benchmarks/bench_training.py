"""shapekit's training step against a plain-torch loop of the lecture, measured side by side.

    python benchmarks/bench_training.py [--threads 1] [--repeats 7] [--steps 200]

Both run the same math: the lecture's 76K hierarchical model, batch 32, SGD; the plain-torch side
is the lecture's own hand-written layer classes (``lecture_reference.py``).
Target: plain / shapekit-with-checks-off >= 1.0 (shapekit no slower than the plain loop).
"""

from __future__ import annotations

import functools

import _common
import lecture_reference

import shapekit
from shapekit import nn


def main() -> None:
    args = _common.parser(__doc__.splitlines()[0]).parse_args()
    import torch

    torch.set_num_threads(args.threads)
    X, Y = _common.fake_data()
    plain, _ = lecture_reference.build_lecture_model()
    model = _common.wavenet(nn)

    def run(net, mode: str) -> None:
        with shapekit.checks(mode):
            _common.sgd_steps(net, X, Y, args.steps)

    contenders = {
        "plain torch (the lecture's classes)": functools.partial(run, plain, "off"),
        "shapekit, checks off": functools.partial(run, model, "off"),
        "shapekit, checks once (default)": functools.partial(run, model, "once"),
    }
    medians = _common.side_by_side(contenders, args.repeats)
    _common.report(
        "Training step: shapekit vs a plain-torch loop of the lecture",
        medians,
        args.steps,
        [
            ("plain / shapekit off (target >= 1.0)", "plain torch (the lecture's classes)",
             "shapekit, checks off"),
            ("plain / shapekit once", "plain torch (the lecture's classes)",
             "shapekit, checks once (default)"),
        ],
    )


if __name__ == "__main__":
    main()
