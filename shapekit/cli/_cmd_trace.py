"""``shapekit trace``: the per-layer shape table of the lecture's models on a random batch.

    shapekit trace                        the WaveNet model (row 5 of the lecture's log), batch 32
    shapekit trace --model hierarchical   another row, by name or number (1 to 5), or all
    shapekit trace --demo-bug             the lecture's classic mistake, traced up to the failure
    shapekit trace --format markdown      Markdown tables, as in the docs (also csv, json, html)
    shapekit trace --columns output,params,flops --depth 1 --meta
"""

from __future__ import annotations

import argparse

from ._argtypes import count, nonneg_int

_FORMATS = ("auto", "text", "rich", "markdown", "csv", "json", "html")

_EXAMPLES = """\
examples:
  shapekit trace                       the WaveNet model (76,579 params) on a batch of 32
  shapekit trace --model 4 --batch 4   the hierarchical model on 4 examples
  shapekit trace --model all           every model of the lecture's performance log
  shapekit trace --demo-bug            n_embd changed to 20, the first Linear still wants 48
  shapekit trace --columns input,output,params,flops,memory
  shapekit trace --format json --meta  shapes only, on the meta device, as JSON

Each row is one module call: where it sits (layers[2]), its input and output shapes, its own
parameter count, and the named dims its annotation bound (batch=32 time=4). When the forward
fails, the rows stop at the failing layer, marked '>>', and the error is printed below the table.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..debug import COLUMNS, DEFAULT_COLUMNS

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = _EXAMPLES
    parser.add_argument(
        "--model", default="wavenet", metavar="ROW",
        help="a row of the lecture's performance log, by name or number: 1 original, 2 context8, "
        "3 hierarchical-bug, 4 hierarchical, 5 wavenet; or 'all' (default: wavenet)",
    )
    parser.add_argument("--batch", type=count("32"), default=32, metavar="N",
                        help="examples in the random batch of indices (default: 32)")
    parser.add_argument("--depth", type=nonneg_int, default=None, metavar="N",
                        help="hide rows nested deeper than N (0 is the model alone); their "
                        "parameters are counted on the row above")
    parser.add_argument(
        "--columns", type=_columns, default=None, metavar="A,B,...",
        help=f"columns to show, comma-separated, from: {', '.join(COLUMNS)} "
        f"(default: {','.join(DEFAULT_COLUMNS)})",
    )
    parser.add_argument("--format", choices=_FORMATS, default="auto",
                        help="auto (rich in a terminal, plain text when piped), text, rich, "
                        "markdown, csv, json or html (default: auto)")
    parser.add_argument("--markdown", action="store_true", help="same as --format markdown")
    parser.add_argument("--meta", action="store_true",
                        help="run on the meta device: shapes, counts and estimates without "
                        "allocating weights or activations")
    parser.add_argument("--ops", action="store_true",
                        help="also show the torch functions each forward calls")
    parser.add_argument(
        "--demo-bug", action="store_true",
        help="trace the lecture's classic mistake instead: the WaveNet model with n_embd 20, whose "
        "first Linear still expects 2*24 = 48 features but gets 40 from FlattenConsecutive(2)",
    )


def _columns(text: str) -> list[str]:
    from ..debug import COLUMNS

    columns = [c.strip() for c in text.split(",") if c.strip()]
    unknown = [c for c in columns if c not in COLUMNS]
    if unknown or not columns:
        raise argparse.ArgumentTypeError(
            f"expected columns from {', '.join(COLUMNS)}, got {unknown[0] if unknown else text!r}"
            "; e.g. --columns input,output,params,flops")
    return columns


def run(args: argparse.Namespace) -> int:
    import json

    import torch

    from ..debug import print_trace, trace
    from ..lecture import ROWS, VOCAB, build_model
    from ..lecture.runs import resolve_row
    from ..nn import Embedding, Sequential

    generator = torch.Generator().manual_seed(0)  # the shapes do not depend on the indices
    style = "markdown" if args.markdown else args.format
    collected: list[dict] = []

    def show(title: str, model: torch.nn.Module, block_size: int) -> bool:
        x = torch.randint(0, len(VOCAB), (args.batch, block_size), generator=generator)
        if args.batch == 1:
            # BatchNorm in training mode has no statistics of one example; eval mode uses the
            # running ones, and the shapes are the same
            model.eval()
            title += " in eval mode (--batch 1)"
        result = trace(model, x, depth=args.depth, columns=args.columns, ops=args.ops,
                       device="meta" if args.meta else None)
        if style == "markdown":
            print(f"### {title}\n\n{result.to_markdown()}")
        elif style == "csv":
            print(f"# {title}\n{result.to_csv()}")
        elif style == "html":
            print(f"<h3>{title}</h3>\n{result.to_html()}\n")
        elif style == "json":
            collected.append({"title": title, **result.to_dict()})
        else:
            print(f"{title}\n")
            if style == "auto":
                print_trace(result)
            elif style == "rich":
                from rich.console import Console

                Console(force_terminal=True).print(result)
            else:
                print(result)
            print()
        return result.failed

    def finish(code: int) -> int:
        if style == "json":
            print(json.dumps(collected if len(collected) > 1 else collected[0], indent=1))
        return code

    if args.demo_bug:
        layers = build_model("wavenet").layers
        layers[0] = Embedding(len(VOCAB), 20)  # n_embd changed from 24; the Linear was not
        failed = show("the lecture's classic mistake: Embedding(27, 20), then Linear(48, 128)",
                      Sequential(layers), ROWS["wavenet"].block_size)
        return finish(0 if failed else 1)
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
    return finish(1 if failures else 0)
