"""One training run in a directory: the config in, a checkpoint, metrics and a loss plot out.

Shared by ``shapekit train`` and ``shapekit reproduce``. A run is a pure function of its config
and data: ``start_run`` seeds torch, builds the row's model and trains; ``resume_run`` rebuilds
it from the checkpoint (weights, buffers, step, losses, torch RNG state) and continues, so an
interrupted and resumed run ends bit-for-bit where an uninterrupted one does.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import __version__
from ..checking import set_checks
from ._checkpoint import (
    CHECKPOINT,
    CONFIG,
    METRICS,
    PLOT,
    check_against_config,
    load_checkpoint,
    load_state_into,
    save_checkpoint,
    write_json,
)
from ._data import Names, Splits, make_splits
from ._models import ModelSpec, build_model, count_params, resolve_row
from ._plots import plot_curves
from ._runfiles import SPLIT_SEED, read_metrics  # SPLIT_SEED: the lecture's random.seed(42)
from ._train import default_decay_at, evaluate, train

__all__ = ["RunOutcome", "make_config", "model_for", "run_training"]

EVAL_CHUNK = 1024  # rows per forward when evaluating: the same loss to ~1e-7, far less memory


@dataclass
class RunOutcome:
    """What :func:`run_training` did: the run's ``metrics.json`` as written, and whether (and by
    which signal) it was stopped before its last step.

    >>> RunOutcome({"steps_done": 3, "finished": False}, interrupted=True).signal is None
    True
    """

    metrics: dict
    interrupted: bool
    signal: int | None = None  # what stopped an interrupted run: signal.SIGINT or signal.SIGTERM


def model_for(spec: ModelSpec) -> torch.nn.Module:
    """Build ``spec``'s model (the ``hierarchical-bug`` row with the lecture's buggy BatchNorm)."""
    return build_model(spec.name)


def make_config(
    spec: ModelSpec, names: Names, *, data_path: str | None, steps: int, batch_size: int = 32,
    lr: float = 0.1, lr_final: float = 0.01, decay_at: int | None = None, seed: int = 42,
    checks: str | None = None, threads: int = 1, eval_every: int = 0, save_every: int = 10_000,
    device: str = "cpu", compile: bool = False,
) -> dict:
    """The ``config.json`` of a run: everything needed to rebuild and continue it."""
    return {
        "format": "shapekit-run/1",
        "model": spec.name, "row": spec.row, "description": spec.description,
        "block_size": spec.block_size, "n_embd": spec.n_embd, "n_hidden": spec.n_hidden,
        "hierarchical": spec.hierarchical, "batchnorm_bug": spec.batchnorm_bug,
        "params": spec.lecture_params,
        "steps": steps, "batch_size": batch_size, "lr": lr, "lr_final": lr_final,
        "decay_at": default_decay_at(steps) if decay_at is None else decay_at,
        "seed": seed, "split_seed": SPLIT_SEED, "checks": checks, "threads": threads,
        "eval_every": eval_every, "save_every": save_every, "device": device,
        "compile": compile,
        "data": {
            "path": None if data_path is None else str(Path(data_path).resolve()),
            "source": names.source, "sha256": names.sha256, "words": len(names.words),
        },
        "shapekit": __version__, "torch": torch.__version__, "run_id": uuid.uuid4().hex,
        "created": datetime.datetime.now().isoformat(timespec="seconds"),
    }


def run_training(
    run_dir: Path, config: dict, names: Names, *, resume: bool = False, progress: bool = True,
    on_step: Callable[[int, float], None] | None = None, write_config: bool = False,
) -> RunOutcome:
    """Train (or continue) the run in ``run_dir`` described by ``config`` on ``names``.

    A new run writes ``config.json`` first; a resumed one checks its metrics and checkpoint
    against ``config`` before writing anything (``write_config``: then rewrite ``config.json``,
    as an extended run does)."""
    run_dir = Path(run_dir)
    spec = resolve_row(config["model"])
    if config["checks"]:
        set_checks(config["checks"])
    torch.set_num_threads(config["threads"])
    splits = make_splits(names.words, spec.block_size, seed=config.get("split_seed", SPLIT_SEED))

    device = config.get("device", "cpu")
    if device != "cpu":  # the batches index these on the device; torch.randint stays on the CPU
        splits = Splits(*(t.to(device) for t in vars(splits).values()))

    torch.manual_seed(config["seed"])  # the lecture seeds right before building the model
    model = model_for(spec)
    start_step, lossi, previous = 0, [], {}
    if resume:
        previous = read_metrics(run_dir, config)  # checked before anything is trained or written
        ckpt = load_checkpoint(run_dir)
        check_against_config(ckpt, config, run_dir)
        load_state_into(model, ckpt.state, run_dir / CHECKPOINT)
        torch.set_rng_state(ckpt.rng_state)  # the next torch.randint continues the same batches
        start_step, lossi = ckpt.step, ckpt.lossi
        if write_config:
            write_json(run_dir / CONFIG, config)
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / CONFIG, config)
    model.to(device)  # after init and loading: both draw from and load on the CPU, as the lecture
    evals = list(previous.get("evals", []))

    def save(step: int) -> None:
        save_checkpoint(run_dir, model, model_name=spec.name, step=step, lossi=lossi,
                        rng_state=torch.get_rng_state(), run_id=config.get("run_id"))

    def every_step(i: int, log10_loss: float) -> None:
        step = i + 1
        if config["eval_every"] and step % config["eval_every"] == 0:
            # eval mode draws no random numbers, so the batches that follow are unchanged
            val = evaluate(model, splits.Xdev, splits.Ydev, chunk=EVAL_CHUNK)
            evals.append({"step": step, "val": val})
            print(f"step {step}: val {val:.4f}", flush=True)
        if config["save_every"] and step % config["save_every"] == 0 and step < config["steps"]:
            save(step)
        if on_step is not None:
            on_step(i, log10_loss)

    result = train(
        model, splits, steps=config["steps"], batch_size=config["batch_size"], lr=config["lr"],
        lr_final=config["lr_final"], decay_at=config["decay_at"], progress=progress,
        on_step=every_step, start_step=start_step, lossi=lossi,
        compile=config.get("compile", False),
    )
    save_checkpoint(run_dir, model, model_name=spec.name, step=result.steps_done,
                    lossi=result.lossi, rng_state=result.rng_state, run_id=config.get("run_id"))
    seconds = previous.get("wall_seconds", 0.0) + result.seconds
    session = result.steps_done - start_step  # steps this call ran: 0 when only the end was left
    rate = session / result.seconds if session and result.seconds > 0 else None
    metrics = {
        "model": spec.name, "params": count_params(model),
        "steps": config["steps"], "steps_done": result.steps_done,
        "finished": result.steps_done >= config["steps"],
        "train_loss": None, "val_loss": None,
        "wall_seconds": round(seconds, 2),
        "steps_per_second": round(rate, 1) if rate else previous.get("steps_per_second"),
        "data_sha256": config["data"]["sha256"], "data_source": config["data"]["source"],
        "torch": torch.__version__, "shapekit": __version__, "threads": config["threads"],
        "device": device,
        "checks": config["checks"], "evals": evals, "run_id": config.get("run_id"),
    }
    if metrics["finished"]:
        metrics["train_loss"] = evaluate(model, splits.Xtr, splits.Ytr, chunk=EVAL_CHUNK)
        metrics["val_loss"] = evaluate(model, splits.Xdev, splits.Ydev, chunk=EVAL_CHUNK)
    splits = None  # done with the data: free it before matplotlib loads, keeping peak memory low
    write_json(run_dir / METRICS, metrics)
    if result.lossi:
        points = [(e["step"], e["val"]) for e in evals]
        plot_curves({spec.name: result.lossi}, run_dir / PLOT,
                    f"{spec.name}: {spec.description} ({result.steps_done:,} steps)",
                    val={spec.name: points} if points else None)
    return RunOutcome(metrics, result.interrupted, result.signal)
