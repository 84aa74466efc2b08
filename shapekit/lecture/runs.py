"""Run directories: what ``shapekit train``, ``sample`` and ``reproduce`` read and write.

A run directory holds ``config.json`` (what was asked for), ``model.safetensors`` (the weights and
the training state, written atomically), ``metrics.json`` (how far it got, the losses) and
``loss.png``; a lock file keeps a second writer out while one trains.

>>> import tempfile
>>> from pathlib import Path
>>> from shapekit.lecture import load_names
>>> from shapekit.lecture.runs import make_config, read_config, resolve_row, write_json, CONFIG
>>> run = Path(tempfile.mkdtemp())
>>> names = load_names(quiet=True)
>>> write_json(run / CONFIG, make_config(resolve_row("wavenet"), names, data_path=None, steps=10))
>>> read_config(run)["model"], read_config(run)["steps"]
('wavenet', 10)
"""

from __future__ import annotations

from ._checkpoint import (
    CHECKPOINT,
    CONFIG,
    METRICS,
    PLOT,
    Checkpoint,
    atomic_write,
    check_against_config,
    load_checkpoint,
    load_state_into,
    read_json,
    write_json,
)
from ._data import check_splittable, for_command_line
from ._models import resolve_row
from ._plots import plot_curves
from ._run import RunOutcome, make_config, model_for, run_training
from ._runfiles import read_config, read_metrics
from ._runlock import LOCK, run_lock

__all__ = [
    "CHECKPOINT", "CONFIG", "LOCK", "METRICS", "PLOT", "Checkpoint", "RunOutcome", "atomic_write",
    "check_against_config", "check_splittable", "for_command_line", "load_checkpoint",
    "load_state_into", "make_config", "model_for", "plot_curves", "read_config", "read_json",
    "read_metrics", "resolve_row", "run_lock", "run_training", "write_json",
]
