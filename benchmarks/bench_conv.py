"""Convolution vs the for loop: the dev set's logits at every position, measured side by side.

    python benchmarks/bench_conv.py [--data names.txt] [--threads 2] [--repeats 7] [--checks once]

Contenders (the lecture's 76K hierarchical model in eval mode, every dev name padded into one
batch with ``pad_names``, no gradients):
  conv     ``to_conv(model)(X)``: dilated Conv1d levels, one pass over every position
  loop     ``windows_loop(model, X)``: the window model called once per position
  windows  ``model(Xdev)``: every example of ``build_dataset`` as one batch (the lecture's
           split_loss; it computes only real positions, but recomputes shared pairs like the loop)
Target: loop / conv >= 3x. Also printed: the ratio of multiply-adds, the part of the speed-up
that does not depend on the machine. The data is names.txt's dev split when ``load_names``
finds the file (``--data``, ``SHAPEKIT_NAMES``, the cache or a download), else the offline
fallback's.
"""

from __future__ import annotations

import argparse

import _common
import torch
import torch.nn.functional as F

import shapekit
from shapekit._conv import pad_names, to_conv, windows_loop
from shapekit._models import build_model
from shapekit._train import train


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", help="a names file (default: load_names() finds one)")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(),
                   help="torch threads (default: torch's default, %(default)s here)")
    p.add_argument("--repeats", type=int, default=7, help="interleaved rounds (median is reported)")
    p.add_argument("--checks", default="once", choices=["always", "once", "off"],
                   help="shapekit check mode for all contenders (default: %(default)s)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    shapekit.set_checks(args.checks)

    names = shapekit.load_names(args.data)
    splits = shapekit.make_splits(names.words)
    dev = shapekit.split_words(names.words)[1]
    torch.manual_seed(42)
    model = build_model("wavenet")
    train(model, splits, steps=200, progress=False)  # realistic BatchNorm statistics, briefly
    model.eval()
    conv = to_conv(model)
    X, Y = pad_names(dev, 8)  # X: (names, 8 + longest), Y: (names, longest + 1)

    with torch.no_grad():
        conv_logits, loop_logits = conv(X), windows_loop(model, X)
        diff = (conv_logits - loop_logits).abs().max().item()
        assert diff <= 1e-5, f"conv and loop disagree by {diff:.2e}"
        loss = F.cross_entropy(conv_logits.flatten(0, 1), Y.flatten(), ignore_index=-1).item()
        medians = _common.side_by_side(
            {
                "conv": lambda: conv(X),
                "loop": lambda: windows_loop(model, X),
                "windows": lambda: model(splits.Xdev),
            },
            args.repeats,
        )

    print(f"\nconv vs loop on the dev set  (torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s), checks {args.checks})")
    print(f"  data: {names.source}, {len(dev):,} dev names, X {tuple(X.shape)}, "
          f"{splits.Xdev.shape[0]:,} examples; max |conv - loop| = {diff:.1e}; dev loss {loss:.4f}")
    labels = {
        "conv": "conv (one pass)",
        "loop": f"loop ({X.shape[1] - 7} model calls)",
        "windows": "windows (one batch of examples)",
    }
    for name, seconds in medians.items():
        print(f"  {labels[name]:<34} {seconds * 1e3:8.1f} ms per dev pass")
    print(f"  {'loop / conv (target >= 3x)':<34} {medians['loop'] / medians['conv']:8.2f}x")
    print(f"  {'windows / conv':<34} {medians['windows'] / medians['conv']:8.2f}x")
    print(f"  {'multiply-adds loop / conv':<34} {_work_ratio(model, X.shape[1]):8.2f}x")


def _work_ratio(model: torch.nn.Module, length: int) -> float:
    """Multiply-adds of the loop over those of the conv form, per padded name of ``length``.

    Window ``t`` runs 4, 2, 1 rows through levels 1-3; the conv form runs each level once over
    ``length - 1``, ``- 3``, ``- 7`` positions; the final Linear costs the same both ways.
    """
    linears = [m for m in model.layers if isinstance(m, shapekit.nn.Linear)]
    sizes = [m.fan_in * m.fan_out for m in linears]
    positions = length - 7
    head = positions * sizes[3]
    loop = sum(r * s for r, s in zip([4, 2, 1], sizes[:3], strict=True)) * positions + head
    conv = sum(r * s for r, s in zip([length - 1, length - 3, length - 7], sizes[:3],
                                     strict=True)) + head
    return loop / conv


if __name__ == "__main__":
    main()
