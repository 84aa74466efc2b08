"""Convolution vs the for loop: the dev set's logits at every position, measured side by side.

    python benchmarks/bench_conv.py [--data names.txt] [--threads 1] [--repeats 5] [--checks once]

The lecture's 76K hierarchical model in eval mode, no gradients. Two pairings:

Name by name, as the lecture draws it (one name's positions: 8 window-model calls, or one
convolution pass); every dev name in turn:
  loop, a call per position   ``windows_loop(model, x)`` on one name: the window model once per
                              position (the lecture's ``model(Xtr[[7 + i]])`` for each i)
  conv, a call per name       ``to_conv(model)(x)``: every position of the name in one pass
All dev names padded into one batch with ``pad_names`` (the loop batched over names too):
  loop, batched over names    ``windows_loop(model, X)``: one call per position for all names
  conv, one pass              ``to_conv(model)(X)``
  windows                     ``model(Xdev)``: every example of ``build_dataset`` as one batch
Target: the lecture's loop / conv >= 3x. Also printed: the batched ratios and the ratio of
multiply-adds, the part of the batched speed-up that does not depend on the machine. The data is
names.txt's dev split when ``load_names`` finds the file (``--data``, ``SHAPEKIT_NAMES``, the cache
or a download), else the offline fallback's.
"""

from __future__ import annotations

import argparse

import _common
import torch
import torch.nn.functional as F

import shapekit
from shapekit.lecture._conv import pad_names, to_conv, windows_loop
from shapekit.lecture._models import build_model
from shapekit.lecture._train import train


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", help="a names file (default: load_names() finds one)")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(),
                   help="torch threads (default: torch's default, %(default)s here)")
    p.add_argument("--repeats", type=int, default=5, help="interleaved rounds (median is reported)")
    p.add_argument("--checks", default="once", choices=["always", "once", "off"],
                   help="shapekit check mode for all contenders (default: %(default)s)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    shapekit.set_checks(args.checks)

    names = shapekit.lecture.load_names(args.data)
    splits = shapekit.lecture.make_splits(names.words)
    dev = shapekit.lecture.split_words(names.words)[1]
    torch.manual_seed(42)
    model = build_model("wavenet")
    train(model, splits, steps=200, progress=False)  # realistic BatchNorm statistics, briefly
    model.eval()
    conv = to_conv(model)
    X, Y = pad_names(dev, 8)  # X: (names, 8 + longest), Y: (names, longest + 1)

    singles = [pad_names([word], 8)[0] for word in dev]  # each (1, 8 + len(word))
    with torch.no_grad():
        conv_logits, loop_logits = conv(X), windows_loop(model, X)
        diff = (conv_logits - loop_logits).abs().max().item()
        assert diff <= 1e-5, f"conv and loop disagree by {diff:.2e}"
        loss = F.cross_entropy(conv_logits.flatten(0, 1), Y.flatten(), ignore_index=-1).item()
        times = _common.side_by_side(
            {
                "name loop": lambda: [windows_loop(model, x) for x in singles],
                "name conv": lambda: [conv(x) for x in singles],
                "loop": lambda: windows_loop(model, X),
                "conv": lambda: conv(X),
                "windows": lambda: model(splits.Xdev),
            },
            args.repeats,
        )

    print(f"\nconv vs loop on the dev set  (torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s), checks {args.checks}, {args.repeats} rounds)")
    print(f"  data: {names.source}, {len(dev):,} dev names, X {tuple(X.shape)}, "
          f"{splits.Xdev.shape[0]:,} examples; max |conv - loop| = {diff:.1e}; dev loss {loss:.4f}")
    labels = {
        "name loop": f"name by name: loop ({splits.Xdev.shape[0]:,} calls)",
        "name conv": f"name by name: conv ({len(dev):,} calls)",
        "loop": f"batched: loop ({X.shape[1] - 7} calls)",
        "conv": "batched: conv (one pass)",
        "windows": "windows (one batch of examples)",
    }
    for name in times:
        print(f"  {labels[name]:<40} {_common.median(times, name) * 1e3:8.1f} ms per dev pass")
    for label, num, den in [
        ("lecture's loop / conv, name by name (target >= 3x)", "name loop", "name conv"),
        ("loop / conv, batched over names", "loop", "conv"),
        ("windows / conv, batched", "windows", "conv"),
    ]:
        print(f"  {label:<52} {_common.ratio(times, num, den):6.2f}x")
    print(f"  {'multiply-adds, batched loop / conv':<52} {_work_ratio(model, X.shape[1]):6.2f}x")


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
