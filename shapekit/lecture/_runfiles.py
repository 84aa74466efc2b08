"""The schema of each run file (``config.json``, the checkpoint's metadata, ``metrics.json``),
checked on load: one ``DataError`` naming the file, the field, the bad value and the fix.

    config = read_config(run_dir)              # every field typed and in range
    metrics = read_metrics(run_dir, config)    # {} when there are none yet

A hand-edited or damaged file is refused before anything is trained or written, so a run's files
never end up disagreeing. The files of one run share its ``run_id``; a file from another run
(a spliced checkpoint, a copied metrics.json) is refused by it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path

from ..checking import DataError
from ._checkpoint import CONFIG, METRICS, read_json

__all__ = ["check_config", "check_metrics", "read_config", "read_metrics", "same_run"]

RUN_FORMAT = "shapekit-run/1"
SPLIT_SEED = 42  # the lecture's shuffle; fixed, so every run's val loss is on the same names
_HEX64 = re.compile(r"[0-9a-f]{64}")
_RETRAIN = "fix: restore the value shapekit wrote, or train the run again with --out DIR --force"


# A check returns None when the value is fine, else what was expected.
def _int(low: int | None = None, high: int | None = None) -> Callable[[object], str | None]:
    def check(value: object) -> str | None:
        ok = isinstance(value, int) and not isinstance(value, bool)
        ok = ok and (low is None or value >= low) and (high is None or value <= high)
        if ok:
            return None
        span = ("an integer" if low is None else f"an integer >= {low}" if high is None
                else f"an integer from {low} to {high}")
        return span

    return check


def _number(positive: bool = True, nullable: bool = False) -> Callable[[object], str | None]:
    def check(value: object) -> str | None:
        if value is None and nullable:
            return None
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        ok = ok and math.isfinite(value) and (value > 0 if positive else value >= 0)
        if ok:
            return None
        what = "a finite number > 0" if positive else "a finite number >= 0"
        return what + (" or null" if nullable else "")

    return check


def _one_of(*choices: object) -> Callable[[object], str | None]:
    def check(value: object) -> str | None:
        return None if value in choices and type(value) in {type(c) for c in choices} else (
            "one of " + ", ".join(repr(c) if c is not None else "null" for c in choices))

    return check


def _text(value: object) -> str | None:
    return None if isinstance(value, str) else "a string"


def _path(value: object) -> str | None:
    return None if value is None or isinstance(value, str) else "a path string or null"


def _sha256(value: object) -> str | None:
    return None if isinstance(value, str) and _HEX64.fullmatch(value) else "64 hex digits"


def _run_id(value: object) -> str | None:
    ok = isinstance(value, str) and re.fullmatch(r"[0-9a-f]{32}", value)
    return None if ok else "32 hex digits"


def _check(path: Path, data: dict, fields: dict, required: tuple[str, ...]) -> None:
    for key in required:
        if key not in data:
            raise DataError(f"{path}: field {key!r} is missing; expected it in every {path.name} "
                            f"shapekit writes; {_RETRAIN}")
    for key, check in fields.items():
        if key in data:
            expected = check(data[key])
            if expected is not None:
                _bad(path, key, data[key], expected)


def _bad(path: Path, key: str, value: object, expected: str, fix: str = _RETRAIN) -> None:
    shown = repr(value) if not isinstance(value, dict | list) else type(value).__name__
    raise DataError(f"{path}: field {key!r} is {shown[:60]}; expected {expected}; {fix}")


def check_config(path: Path, config: dict) -> dict:
    """Check ``config`` (read from ``path``) field by field; returns it."""
    from ._models import ROWS

    model = config.get("model")
    if model not in ROWS:
        _bad(path, "model", model, "a row of the lecture's table: " + ", ".join(ROWS))
    fields = {
        "format": _one_of(RUN_FORMAT), "model": _text, "steps": _int(1),
        "batch_size": _int(1), "lr": _number(), "lr_final": _number(),
        "seed": _int(), "split_seed": _one_of(SPLIT_SEED),
        "checks": _one_of(None, "always", "once", "off"),
        "threads": _int(1), "eval_every": _int(0), "save_every": _int(0), "device": _text,
        "compile": _one_of(True, False),
        "run_id": _run_id, "data": lambda v: None if isinstance(v, dict) else "an object",
    }
    _check(path, config, fields, ("format", "model", "steps", "batch_size", "lr", "lr_final",
                                  "decay_at", "seed", "checks", "data"))
    if (expected := _int(0, config["steps"])(config["decay_at"])) is not None:
        _bad(path, "decay_at", config["decay_at"], expected + " (--steps)")
    spec = ROWS[model]
    for key in ("block_size", "n_embd", "n_hidden"):
        if key in config and config[key] != getattr(spec, key):
            _bad(path, key, config[key], f"{getattr(spec, key)}, the {model} row's (it is fixed "
                 "by --model)")
    data = config["data"]
    where = path.with_name(f"{path.name} data")
    _check(where, data, {"path": _path, "source": _text, "sha256": _sha256, "words": _int(1)},
           ("path", "source", "sha256"))
    return config


def check_metrics(path: Path, metrics: dict, config: dict) -> dict:
    """Check ``metrics`` (from ``path``) and that they belong to the run ``config`` describes."""
    fields = {
        "model": _one_of(config["model"]), "params": _int(0), "steps": _int(1),
        "steps_done": _int(0), "finished": _one_of(True, False),
        "train_loss": _number(nullable=True), "val_loss": _number(nullable=True),
        "wall_seconds": _number(positive=False), "steps_per_second": _number(nullable=True),
        "run_id": _run_id,
        "evals": lambda v: None if isinstance(v, list) and all(
            isinstance(e, dict) and _int(1)(e.get("step")) is None
            and _number()(e.get("val")) is None for e in v) else "a list of {step, val}",
    }
    _check(path, metrics, fields, ("model", "steps_done", "finished", "wall_seconds"))
    same_run(path, metrics.get("run_id"), config)
    if metrics["steps_done"] > config["steps"]:
        _bad(path, "steps_done", metrics["steps_done"], f"at most the run's {config['steps']} "
             "steps (config.json)")
    if metrics["finished"]:
        for key in ("train_loss", "val_loss"):
            if not isinstance(metrics.get(key), int | float):
                _bad(path, key, metrics.get(key), "a number in a finished run")
    return metrics


def same_run(path: Path, run_id: object, config: dict) -> None:
    """``DataError`` when ``path`` carries another run's id than ``config``."""
    ours = config.get("run_id")
    if ours is not None and run_id != ours:
        raise DataError(
            f"{path}: belongs to another run (run_id {run_id!r}, but {CONFIG} has {ours!r}); "
            "expected the files of one run together; fix: put back this run's own file, or "
            "train the run again with --out DIR --force"
        )


def read_config(run_dir: Path) -> dict:
    """``run_dir/config.json``, checked (see ``check_config``)."""
    path = Path(run_dir) / CONFIG
    return check_config(path, read_json(path, "config"))


def read_metrics(run_dir: Path, config: dict) -> dict:
    """``run_dir/metrics.json`` checked against ``config``; ``{}`` if the run has none yet."""
    path = Path(run_dir) / METRICS
    if not path.is_file():
        return {}
    return check_metrics(path, read_json(path, "metrics"), config)
