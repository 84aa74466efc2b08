"""``shapekit sample``: print names sampled from a run that ``shapekit train`` wrote.

    shapekit sample --checkpoint runs/wavenet-20250101-120000 -n 20 --seed 1
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ._argtypes import count


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, metavar="DIR",
                        help="a run directory written by 'shapekit train'")
    parser.add_argument("-n", type=count("20"), default=20, metavar="N",
                        help="how many names (20)")
    parser.add_argument("--seed", type=int, help="seed the sampler, for repeatable names")
    parser.add_argument("--threads", type=count("1"), default=1,
                        help="torch threads (1: one name at a time is far too small to share)")


def run(args: argparse.Namespace) -> int:
    """Print the names; a bad run directory is a ``DataError`` (one line, exit 2, in ``main``)."""
    import torch

    torch.set_num_threads(args.threads)
    model, config = load_run(Path(args.checkpoint))
    from ..lecture import sample

    for name in sample(model, args.n, block_size=config["block_size"], seed=args.seed):
        print(name)
    return 0


def load_run(run_dir: Path):
    """The trained model of ``run_dir`` (built from its config, weights loaded, eval mode) and its
    config; ``DataError`` naming the file and the fix when anything is missing or does not fit."""
    from ..checking import DataError
    from ..lecture.runs import (
        CHECKPOINT,
        CONFIG,
        check_against_config,
        load_checkpoint,
        load_state_into,
        model_for,
        read_config,
        resolve_row,
    )

    if run_dir.is_file():
        inside = (f"; fix: pass the directory that holds it, --checkpoint {run_dir.parent}"
                  if run_dir.name in (CHECKPOINT, CONFIG) else
                  "; fix: pass the directory that 'shapekit train' printed")
        raise DataError(f"--checkpoint {run_dir}: is a file; expected a run directory written by "
                        f"'shapekit train' (with {CONFIG} and {CHECKPOINT}){inside}")
    if not run_dir.is_dir():
        raise DataError(
            f"{run_dir}: no such directory; expected a run directory written by 'shapekit train' "
            f"(with {CONFIG} and {CHECKPOINT}); fix: train one with 'shapekit train --out "
            f"{run_dir}', or pass the directory it printed"
        )
    config = read_config(run_dir)
    spec = resolve_row(config["model"])
    ckpt = load_checkpoint(run_dir)
    check_against_config(ckpt, config, run_dir)
    model = model_for(spec)
    load_state_into(model, ckpt.state, run_dir / CHECKPOINT)
    model.eval()
    return model, config
