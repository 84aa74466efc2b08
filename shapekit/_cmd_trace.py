"""``shapekit trace``: the per-layer shape table of the lecture's models on a random batch.

    shapekit trace                        the WaveNet model (row 5 of the lecture's log), batch 32
    shapekit trace --model hierarchical   another row, by name or number (1 to 5), or all
    shapekit trace --demo-bug             the lecture's classic mistake, traced up to the failure
    shapekit trace --markdown             Markdown tables, as in the docs
"""

from __future__ import annotations

import argparse

_EXAMPLES = """\
examples:
  shapekit trace                       the WaveNet model (76,579 params) on a batch of 32
  shapekit trace --model 4 --batch 4   the hierarchical model on 4 examples
  shapekit trace --model all           every model of the lecture's performance log
  shapekit trace --demo-bug            n_embd changed to 20, the first Linear still wants 48

Each row is one module call: where it sits (layers[2]), its input and output shapes, its own
parameter count, and the named dims its annotation bound (batch=32 time=4). When the forward
fails, the rows stop at the failing layer, marked '>>', and the error is printed below the table.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = _EXAMPLES
    parser.add_argument(
        "--model", default="wavenet", metavar="ROW",
        help="a row of the lecture's performance log, by name or number: 1 original, 2 context8, "
        "3 hierarchical-bug, 4 hierarchical, 5 wavenet; or 'all' (default: wavenet)",
    )
    parser.add_argument("--batch", type=_positive_int, default=32, metavar="N",
                        help="examples in the random batch of indices (default: 32)")
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables")
    parser.add_argument(
        "--demo-bug", action="store_true",
        help="trace the lecture's classic mistake instead: the WaveNet model with n_embd 20, whose "
        "first Linear still expects 2*24 = 48 features but gets 40 from FlattenConsecutive(2)",
    )


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return value


def run(args: argparse.Namespace) -> int:
    import torch

    from ._data import VOCAB
    from ._models import ROWS, build_model, resolve_row
    from ._trace import print_trace, trace
    from .nn import Embedding, Sequential

    generator = torch.Generator().manual_seed(0)  # the shapes do not depend on the indices

    def show(title: str, model: torch.nn.Module, block_size: int) -> bool:
        x = torch.randint(0, len(VOCAB), (args.batch, block_size), generator=generator)
        result = trace(model, x)
        if args.markdown:
            print(f"### {title}\n\n{result.to_markdown()}")
        else:
            print(f"{title}\n")
            print_trace(result)
            print()
        return result.failed

    if args.demo_bug:
        layers = build_model("wavenet").layers
        layers[0] = Embedding(len(VOCAB), 20)  # n_embd changed from 24; the Linear was not
        failed = show("the lecture's classic mistake: Embedding(27, 20), then Linear(48, 128)",
                      Sequential(layers), ROWS["wavenet"].block_size)
        return 0 if failed else 1
    try:
        specs = list(ROWS.values()) if args.model == "all" else [resolve_row(args.model)]
    except ValueError as err:
        raise SystemExit(f"shapekit trace: {err}") from None
    failures = 0
    for spec in specs:
        model = build_model(spec.name)
        params = sum(p.numel() for p in model.parameters())
        title = f"{spec.description} (row {spec.row}, --model {spec.name}, {params:,} params)"
        failures += show(title, model, spec.block_size)
    return 1 if failures else 0

