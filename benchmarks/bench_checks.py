"""What runtime shape checks cost in the lecture's training loop, measured side by side.

    python benchmarks/bench_checks.py [--threads 2] [--repeats 7] [--steps 200]

Contenders (one training step of the lecture's 76K model, batch 32, SGD):
  off     shapekit layers, checks off
  once    shapekit layers, the default mode (each new shape signature checked once)
  always  shapekit layers, every call checked by beartype + jaxtyping
  peer    the same layers with forward decorated by plain jaxtyping + beartype, as a user would
Targets: once/off <= 1.10.
"""

from __future__ import annotations

import functools
import time

import _common
from beartype import beartype
from jaxtyping import jaxtyped

import shapekit
from shapekit import nn


def _peer_layer(base: type) -> type:
    """``base`` with its forward checked by ``@jaxtyped(typechecker=beartype)`` directly."""
    forward = jaxtyped(typechecker=beartype)(base.forward.__wrapped__)
    return type(base.__name__, (base,), {"forward": forward})


class PeerNN:
    """shapekit.nn with plain jaxtyping + beartype checking instead of ``@shaped``."""

    Embedding = _peer_layer(nn.Embedding)
    Linear = _peer_layer(nn.Linear)
    BatchNorm1d = _peer_layer(nn.BatchNorm1d)
    Tanh = _peer_layer(nn.Tanh)
    FlattenConsecutive = _peer_layer(nn.FlattenConsecutive)
    Sequential = nn.Sequential


def main() -> None:
    args = _common.parser(__doc__.splitlines()[0]).parse_args()
    import torch

    torch.set_num_threads(args.threads)
    X, Y = _common.fake_data()
    model = _common.wavenet(nn)
    peer = _common.wavenet(PeerNN)

    def in_mode(mode: str, net) -> None:
        with shapekit.checks(mode):
            _common.sgd_steps(net, X, Y, args.steps)

    contenders = {
        "off": functools.partial(in_mode, "off", model),
        "once (default)": functools.partial(in_mode, "once", model),
        "always": functools.partial(in_mode, "always", model),
        "peer: jaxtyping + beartype": functools.partial(in_mode, "off", peer),
    }
    times = _common.side_by_side(contenders, args.repeats, clock=time.thread_time)
    _common.report(
        "Runtime checks in a training step of the 76K model",
        times,
        args.steps,
        [
            ("once / off (target <= 1.10)", "once (default)", "off"),
            ("always / off", "always", "off"),
            ("peer / off", "peer: jaxtyping + beartype", "off"),
        ],
    )


if __name__ == "__main__":
    main()
