"""``shapekit train``: train a row of the lecture's performance log with the lecture's recipe.

    shapekit train                                  the 76K WaveNet, 200,000 steps (~10-15 min)
    shapekit train --model 1 --steps 20000 --out runs/quick
    shapekit train --resume runs/quick              continue an interrupted run exactly
    shapekit train --resume runs/quick --steps 40000   extend a finished run to 40,000 steps

One process writes a run directory at a time (a second one is refused, naming the first's pid).
Ctrl-C or SIGTERM stop at the end of the current step and save a checkpoint to resume from.
"""

from __future__ import annotations

import argparse
import datetime
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ._argtypes import count, device, nonneg_int, positive_float, positive_int, row

if TYPE_CHECKING:
    from ..lecture import Names

# Options that define the run; on --resume they come from config.json and may not change
# (except --steps, which may grow: that extends the run).
_FIXED = ("model", "steps", "batch_size", "lr", "lr_final", "decay_at", "seed")
_DEFAULTS = {"model": "wavenet", "steps": 200_000, "batch_size": 32, "lr": 0.1,
             "lr_final": 0.01, "decay_at": None, "seed": 42}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=row, metavar="ROW",
                        help="row of the lecture's table, name or number 1-5: original, context8, "
                        "hierarchical-bug, hierarchical, wavenet (default)")
    parser.add_argument("--steps", type=positive_int, metavar="N", help="SGD steps (200000)")
    parser.add_argument("--batch-size", type=count("32"), metavar="B", help="batch size (32)")
    parser.add_argument("--lr", type=positive_float, help="learning rate (0.1)")
    parser.add_argument("--lr-final", type=positive_float, metavar="LR",
                        help="learning rate from --decay-at on (0.01)")
    parser.add_argument("--decay-at", type=nonneg_int, metavar="STEP",
                        help="step where the learning rate drops (3/4 of --steps, as the lecture)")
    parser.add_argument("--seed", type=int, help="torch.manual_seed before building the model (42)")
    parser.add_argument("--data", metavar="PATH", help="names file (default: $SHAPEKIT_NAMES, the "
                        "cache, or a download of makemore's names.txt)")
    parser.add_argument("--out", metavar="DIR", help="run directory (runs/MODEL-TIMESTAMP)")
    parser.add_argument("--resume", metavar="DIR", help="continue the run in DIR where it stopped "
                        "(with a larger --steps: extend a finished run)")
    parser.add_argument("--force", action="store_true", help="overwrite a non-empty --out DIR")
    parser.add_argument("--threads", type=count("1"), default=1,
                        help="torch threads (1, the fastest for this small model)")
    parser.add_argument("--device", type=device, default="cpu",
                        help="where the model trains: cpu (default), cuda, cuda:N or mps, when "
                        "this machine has it")
    parser.add_argument("--checks", choices=("always", "once", "off"),
                        help="shapekit check mode during training (default: the library's)")
    parser.add_argument("--compile", action="store_true",
                        help="compile the training step with torch.compile: faster after a first "
                        "step that compiles (about 10 s here), equal to the eager loop up to float "
                        "rounding; the eager default reproduces the lecture bit for bit")
    parser.add_argument("--eval-every", type=nonneg_int, default=0, metavar="N",
                        help="print the val loss every N steps (0: only at the end)")
    parser.add_argument("--save-every", type=nonneg_int, default=10_000, metavar="N",
                        help="also checkpoint every N steps (10000; Ctrl-C always saves)")


def run(args: argparse.Namespace) -> int:
    return _run(args)  # DataError and OSError become one line and exit 2 in shapekit.cli._main.main


def _run(args: argparse.Namespace) -> int:
    from ..checking import DataError
    from ..lecture.runs import run_lock

    if args.resume:
        run_dir = Path(args.resume)
        if args.out and Path(args.out) != run_dir:
            raise DataError(f"--out {args.out} and --resume {args.resume} name different runs; fix:"
                            " pass only --resume DIR to continue a run")
        if not run_dir.is_dir():
            raise DataError(
                f"--resume {run_dir}: no such directory; expected a run directory written by "
                "'shapekit train'; fix: pass the directory 'shapekit train' printed, or start a "
                f"new run with --out {run_dir}"
            )
        with run_lock(run_dir, command="shapekit train"):
            config, names, extend = _resume_config(args, run_dir)
            return train_in(run_dir, config, names, resume=True, command="shapekit train",
                            extend=extend)

    opts = {k: getattr(args, k) if getattr(args, k) is not None else _DEFAULTS[k] for k in _FIXED}
    spec = opts["model"] if not isinstance(opts["model"], str) else _row(opts["model"])
    if opts["decay_at"] is not None and opts["decay_at"] > opts["steps"]:
        raise DataError(f"--decay-at {opts['decay_at']} is after the last step "
                        f"{opts['steps']}; fix: pass a step below --steps, or omit it")
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = Path(args.out or f"runs/{spec.name}-{stamp}")
    if run_dir.exists() and not run_dir.is_dir():
        raise DataError(f"--out {run_dir}: is a file; fix: pass a directory path")
    names = _names(args.data, None, run_dir)  # before anything is written: bad data leaves nothing
    with run_lock(run_dir, command="shapekit train"):
        _clear(run_dir, force=args.force)
        config = _new_config(spec, names, args, opts)
        return train_in(run_dir, config, names, resume=False, command="shapekit train")


def _row(name: str):
    from ..checking import DataError
    from ..lecture.runs import resolve_row

    try:
        return resolve_row(name)
    except ValueError as e:
        raise DataError(str(e)) from None


def _new_config(spec, names: Names, args: argparse.Namespace, opts: dict) -> dict:
    from ..lecture.runs import make_config

    return make_config(
        spec, names, data_path=args.data, steps=opts["steps"], batch_size=opts["batch_size"],
        lr=opts["lr"], lr_final=opts["lr_final"], decay_at=opts["decay_at"], seed=opts["seed"],
        checks=args.checks, threads=args.threads, eval_every=args.eval_every,
        save_every=args.save_every, device=args.device, compile=args.compile,
    )


def _clear(run_dir: Path, *, force: bool) -> None:
    """Refuse a non-empty ``run_dir`` unless ``force``; with it, delete the old run's files."""
    from ..checking import DataError
    from ..lecture.runs import CHECKPOINT, CONFIG, LOCK, METRICS, PLOT

    if any(p.name != LOCK for p in run_dir.iterdir()):
        if not force:
            raise DataError(
                f"--out {run_dir}: the directory is not empty; fix: continue that run with "
                f"--resume {run_dir}, overwrite it with --force, or pick another --out"
            )
        # the metrics go first: a run without them is unfinished, never a finished stale one
        for name in (METRICS, CHECKPOINT, PLOT, CONFIG):
            (run_dir / name).unlink(missing_ok=True)


def _resume_config(args: argparse.Namespace, run_dir: Path) -> tuple[dict, Names, bool]:
    """The run's config with this invocation's runtime options, its names, and whether it is
    extended; ``DataError`` when a flag contradicts the run (only ``--steps`` may grow)."""
    from ..checking import DataError
    from ..lecture.runs import CHECKPOINT, CONFIG, read_config

    config = read_config(run_dir)  # every field checked: a hand edit is refused here
    extend = None
    for key in _FIXED:
        given = getattr(args, key)
        given = given.name if key == "model" and given is not None else given
        if given is None or given == config.get(key):
            continue
        flag = "--" + key.replace("_", "-")
        if key == "steps" and isinstance(config.get("steps"), int) and given > config["steps"]:
            extend = given
            continue
        more = (f", or pass more than {config.get('steps'):,} to extend the run"
                if key == "steps" else "")
        raise DataError(
            f"{flag} {given} differs from the run's {key} {config.get(key)} in "
            f"{run_dir / CONFIG}; a resumed run keeps its config so it ends exactly where "
            f"an uninterrupted one would; fix: drop {flag}{more}, or start a new run with --out"
        )
    if not (run_dir / CHECKPOINT).is_file():
        raise DataError(
            f"{run_dir / CHECKPOINT}: no such file; --resume needs a run directory with a "
            f"checkpoint; fix: start it again with 'shapekit train --out {run_dir} --force'"
        )
    names = _names(args.data or config["data"]["path"], config["data"]["sha256"], run_dir)
    if extend is not None:
        # the lr schedule is kept: decay_at stays where it was, so the extra steps use lr_final
        config["extended_from"] = [*config.get("extended_from", []), config["steps"]]
        config["steps"] = extend  # written by run_training once the checkpoint has been checked
    config.update(threads=args.threads, checks=args.checks or config["checks"],
                  eval_every=args.eval_every, save_every=args.save_every, device=args.device,
                  compile=args.compile)
    return config, names, extend is not None


def train_in(run_dir: Path, config: dict, names: Names, *, resume: bool, command: str,
             resume_hint: str | None = None, extend: bool = False) -> int:
    """Run the training, print the outcome; 0 when done, 130 (Ctrl-C) or 143 (SIGTERM) when
    stopped. The caller holds the run's lock. ``extend``: ``config`` has more steps than the
    run's config.json, which is rewritten once everything else has been checked."""
    from ..lecture.runs import CHECKPOINT, read_metrics, run_training

    if resume:
        done = read_metrics(run_dir, config)
        # an extension killed before its first save has a config with more steps than "finished"
        if done.get("finished") and done["steps_done"] >= config["steps"]:
            print(f"{command}: {run_dir} is already finished ({done['steps_done']:,} steps): "
                  f"train {done['train_loss']:.4f}  val {done['val_loss']:.4f}{_data_note(config)};"
                  f" to train further pass --steps N (more than {done['steps_done']:,})")
            return 0
    print(f"{command}: training {config['model']} for {config['steps']:,} steps into {run_dir}",
          flush=True)
    outcome = run_training(run_dir, config, names, resume=resume, write_config=extend)
    m = outcome.metrics
    if outcome.interrupted:
        hint = resume_hint or f"shapekit train --resume {run_dir}"
        how = "stopped by SIGTERM" if outcome.signal == signal.SIGTERM else "interrupted"
        print(f"{command}: {how} after step {m['steps_done']:,} of {m['steps']:,}; "
              f"checkpoint saved to {run_dir / CHECKPOINT}; continue with: {hint}",
              file=sys.stderr)
        return 143 if how != "interrupted" else 130
    rate = f", {m['steps_per_second']:,.0f} steps/s" if m.get("steps_per_second") else ""
    print(f"{config['model']}: train {m['train_loss']:.4f}  val {m['val_loss']:.4f}  "
          f"({m['params']:,} params, {m['steps_done']:,} steps, {m['wall_seconds'] / 60:.1f} min"
          f"{rate}); run saved in {run_dir}{_data_note(config)}")
    return 0


def _data_note(config: dict) -> str:
    """Said after every result trained on the offline fallback names, so it is never mistaken
    for the lecture's numbers."""
    data = config["data"]
    if data.get("source") != "fallback":
        return ""
    return (f"\nnote: trained on the {data['words']:,} fallback names of the `names` package, not "
            "makemore's names.txt (32,033 names): not comparable with the lecture's table; fix: "
            "pass --data /path/to/names.txt, or go online")


def _names(path: str | None, sha256: str | None, run_dir: Path) -> Names:
    """The names, checked against the run's recorded SHA-256 when resuming."""
    from ..lecture import load_names
    from ..lecture.runs import check_splittable

    names = load_names(path)
    check_splittable(names.words, f"--data {path}" if path else f"the {names.source} names")
    if sha256 is not None:
        check_same_data(names, sha256, run_dir, path)
    return names


def check_same_data(names: Names, sha256: str, run_dir: Path, path: str | None) -> None:
    """``DataError`` unless ``names`` are the data the run in ``run_dir`` was trained on (its
    config's SHA-256): a resumed run must continue on the same names."""
    from ..checking import DataError

    if names.sha256 != sha256:
        raise DataError(
            f"the names data ({names.source} {path or ''}) has SHA-256 {names.sha256}, but the run "
            f"in {run_dir} was trained on {sha256}; fix: pass --data with the file the run was "
            "trained on"
        )
