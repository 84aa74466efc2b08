"""``shapekit train``: train a row of the lecture's performance log with the lecture's recipe.

    shapekit train                                  the 76K WaveNet, 200,000 steps (~10-15 min)
    shapekit train --model 1 --steps 20000 --out runs/quick
    shapekit train --resume runs/quick              continue an interrupted run exactly
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ._argtypes import nonneg_int, positive_float, positive_int, row

if TYPE_CHECKING:
    from ._data import Names

# Options that define the run; on --resume they come from config.json and may not change.
_FIXED = ("model", "steps", "batch_size", "lr", "lr_final", "decay_at", "seed")
_DEFAULTS = {"model": "wavenet", "steps": 200_000, "batch_size": 32, "lr": 0.1,
             "lr_final": 0.01, "decay_at": None, "seed": 42}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=row, metavar="ROW",
                        help="row of the lecture's table, name or number 1-5: original, context8, "
                        "hierarchical-bug, hierarchical, wavenet (default)")
    parser.add_argument("--steps", type=positive_int, metavar="N", help="SGD steps (200000)")
    parser.add_argument("--batch-size", type=positive_int, metavar="B", help="batch size (32)")
    parser.add_argument("--lr", type=positive_float, help="learning rate (0.1)")
    parser.add_argument("--lr-final", type=positive_float, metavar="LR",
                        help="learning rate from --decay-at on (0.01)")
    parser.add_argument("--decay-at", type=nonneg_int, metavar="STEP",
                        help="step where the learning rate drops (3/4 of --steps, as the lecture)")
    parser.add_argument("--seed", type=int, help="torch.manual_seed before building the model (42)")
    parser.add_argument("--data", metavar="PATH", help="names file (default: $SHAPEKIT_NAMES, the "
                        "cache, or a download of makemore's names.txt)")
    parser.add_argument("--out", metavar="DIR", help="run directory (runs/MODEL-TIMESTAMP)")
    parser.add_argument("--resume", metavar="DIR", help="continue the run in DIR where it stopped")
    parser.add_argument("--force", action="store_true", help="overwrite a non-empty --out DIR")
    parser.add_argument("--threads", type=positive_int, default=1,
                        help="torch threads (1, the fastest for this small model)")
    parser.add_argument("--checks", choices=("always", "once", "off"),
                        help="shapekit check mode during training (default: the library's)")
    parser.add_argument("--eval-every", type=nonneg_int, default=0, metavar="N",
                        help="print the val loss every N steps (0: only at the end)")
    parser.add_argument("--save-every", type=nonneg_int, default=10_000, metavar="N",
                        help="also checkpoint every N steps (10000; Ctrl-C always saves)")


def run(args: argparse.Namespace) -> int:
    from ._errors import DataError

    try:
        return _run(args)
    except DataError as e:
        print(f"shapekit train: {e}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from ._checkpoint import CHECKPOINT, CONFIG, METRICS, PLOT, read_json
    from ._errors import DataError
    from ._models import resolve_row
    from ._run import make_config

    if args.resume:
        run_dir = Path(args.resume)
        if args.out and Path(args.out) != run_dir:
            raise DataError(f"--out {args.out} and --resume {args.resume} name different runs; fix:"
                            " pass only --resume DIR to continue a run")
        config = read_json(run_dir / CONFIG, "config")
        for key in _FIXED:
            given = getattr(args, key)
            given = given.name if key == "model" and given is not None else given
            if given is not None and given != config.get(key):
                flag = "--" + key.replace("_", "-")
                raise DataError(
                    f"{flag} {given} differs from the run's {key} {config.get(key)} in "
                    f"{run_dir / CONFIG}; a resumed run keeps its config so it ends exactly where "
                    f"an uninterrupted one would; fix: drop {flag}, or start a new run with --out"
                )
        if not (run_dir / CHECKPOINT).is_file():
            raise DataError(
                f"{run_dir / CHECKPOINT}: no such file; --resume needs a run directory with a "
                f"checkpoint; fix: start it again with 'shapekit train --out {run_dir} --force'"
            )
        config.update(threads=args.threads, checks=args.checks or config["checks"],
                      eval_every=args.eval_every, save_every=args.save_every)
        names = _names(args.data or config["data"]["path"], config["data"]["sha256"], run_dir)
    else:
        opts = {k: getattr(args, k) if getattr(args, k) is not None else _DEFAULTS[k]
                for k in _FIXED}
        spec = opts["model"] if not isinstance(opts["model"], str) else resolve_row(opts["model"])
        if opts["decay_at"] is not None and opts["decay_at"] > opts["steps"]:
            raise DataError(f"--decay-at {opts['decay_at']} is after the last step "
                            f"{opts['steps']}; fix: pass a step below --steps, or omit it")
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        run_dir = Path(args.out or f"runs/{spec.name}-{stamp}")
        if run_dir.exists() and not run_dir.is_dir():
            raise DataError(f"--out {run_dir}: is a file; fix: pass a directory path")
        if run_dir.is_dir() and any(run_dir.iterdir()):
            if not args.force:
                raise DataError(
                    f"--out {run_dir}: the directory is not empty; fix: continue that run with "
                    f"--resume {run_dir}, overwrite it with --force, or pick another --out"
                )
            for name in (CHECKPOINT, CONFIG, METRICS, PLOT):
                (run_dir / name).unlink(missing_ok=True)
        names = _names(args.data, None, run_dir)
        config = make_config(
            spec, names, data_path=args.data, steps=opts["steps"], batch_size=opts["batch_size"],
            lr=opts["lr"], lr_final=opts["lr_final"], decay_at=opts["decay_at"],
            seed=opts["seed"], checks=args.checks, threads=args.threads,
            eval_every=args.eval_every, save_every=args.save_every,
        )
    return train_in(run_dir, config, names, resume=bool(args.resume), command="shapekit train")


def train_in(run_dir: Path, config: dict, names: Names, *, resume: bool, command: str,
             resume_hint: str | None = None) -> int:
    """Run the training, print the outcome; 0 when done, 130 when interrupted."""
    from ._checkpoint import CHECKPOINT, read_json
    from ._run import run_training

    if resume:
        metrics = run_dir / "metrics.json"
        done = read_json(metrics, "metrics") if metrics.is_file() else {}
        if done.get("finished"):
            print(f"{command}: {run_dir} is already finished ({done['steps_done']:,} steps): "
                  f"train {done['train_loss']:.4f}  val {done['val_loss']:.4f}")
            return 0
    print(f"{command}: training {config['model']} for {config['steps']:,} steps into {run_dir}",
          flush=True)
    outcome = run_training(run_dir, config, names, resume=resume)
    m = outcome.metrics
    if outcome.interrupted:
        hint = resume_hint or f"shapekit train --resume {run_dir}"
        print(f"{command}: interrupted after step {m['steps_done']:,} of {m['steps']:,}; "
              f"checkpoint saved to {run_dir / CHECKPOINT}; continue with: {hint}",
              file=sys.stderr)
        return 130
    print(f"{config['model']}: train {m['train_loss']:.4f}  val {m['val_loss']:.4f}  "
          f"({m['params']:,} params, {m['steps_done']:,} steps, {m['wall_seconds'] / 60:.1f} min, "
          f"{m['steps_per_second']:.0f} steps/s); run saved in {run_dir}")
    return 0


def _names(path: str | None, sha256: str | None, run_dir: Path) -> Names:
    """The names, checked against the run's recorded SHA-256 when resuming."""
    from ._data import load_names
    from ._errors import DataError

    names = load_names(path)
    if sha256 is not None and names.sha256 != sha256:
        raise DataError(
            f"the names data ({names.source} {path or ''}) has SHA-256 {names.sha256}, but the run "
            f"in {run_dir} was trained on {sha256}; fix: pass --data with the file the run was "
            "trained on"
        )
    return names
