"""A run directory on disk: config, checkpoint, metrics; every write atomic, every read checked.

    runs/wavenet-20250101-120000/
      config.json         the model row, hyperparameters, data source and SHA-256
      model.safetensors   weights and buffers, plus the training state (step, lossi, torch RNG)
      metrics.json        losses, parameter count, steps, wall time, versions
      loss.png            mean log10 loss per 1,000 steps, as the lecture plots it

The checkpoint is plain safetensors (no pickle): the model's ``state_dict`` tensors under their
own names, the per-step log10 losses under ``_train.lossi`` and ``torch.get_rng_state()`` under
``_train.rng_state``; the metadata holds the step count, the run's ``run_id`` (shared with
config.json and metrics.json, so a file from another run is refused) and the SHA-256 of all its
tensors (so one flipped bit is refused). Weights stored in another dtype are converted only when
no value changes. The fields of the JSON files are checked by ``shapekit.lecture._runfiles``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ..checking import DataError

__all__ = [
    "CHECKPOINT", "CONFIG", "METRICS", "Checkpoint", "atomic_write", "check_against_config",
    "check_model_name",
    "load_checkpoint", "load_state_into", "read_json", "save_checkpoint", "tensor_digest",
    "write_json",
]

CHECKPOINT, CONFIG, METRICS, PLOT = "model.safetensors", "config.json", "metrics.json", "loss.png"
FORMAT = "shapekit-checkpoint/1"
_TRAIN = "_train."  # prefix of the training-state tensors, kept apart from the model's


@dataclass
class Checkpoint:
    """A loaded checkpoint: the model's tensors and where training stood."""

    state: dict[str, Tensor]
    model: str
    step: int
    lossi: list[float]
    rng_state: Tensor
    run_id: str | None = None


def tensor_digest(tensors: dict[str, Tensor]) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes, in name order: one flipped bit
    anywhere changes it.

    >>> len(tensor_digest({"w": torch.zeros(2, 3)}))
    64
    """
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Call ``write(tmp_path)`` on a temp file beside ``path``, then ``os.replace`` it into place:
    an interruption leaves the old file or the new one, never half of one.

    The temp file is flushed to disk before the rename and the rename before returning, so writes
    made one after another (checkpoint, then metrics) reach the disk in that order. The file gets
    the mode a plain ``open`` would give it (``0666`` minus the umask, 0644 usually).
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_umask())  # after write: a writer may replace the temp file
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    """The process umask (read at each write: it can change after import)."""
    mask = os.umask(0o022)
    os.umask(mask)  # os.umask can only read the umask by setting it
    return mask


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # Windows cannot open a directory; its renames are durable enough
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_json(path: Path, data: dict) -> None:
    """Write ``data`` as indented JSON, atomically."""
    text = json.dumps(data, indent=2) + "\n"
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def read_json(path: Path, what: str) -> dict:
    """Read a JSON object written by shapekit; ``DataError`` naming the file if it is missing or
    broken."""
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"{path}: no such file; expected the {what} of a run written by 'shapekit train'; "
            "fix: pass the run directory that 'shapekit train --out DIR' created"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(
            f"{path}: is not valid JSON ({e}); expected the {what} written by 'shapekit train'; "
            "fix: restore it, or train the run again"
        ) from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object, got {type(data).__name__}; fix: train "
                        "the run again")
    return data


def save_checkpoint(
    run_dir: Path, model: torch.nn.Module, *, model_name: str, step: int, lossi: list[float],
    rng_state: Tensor, run_id: str | None = None,
) -> Path:
    """Save weights, buffers and training state to ``run_dir/model.safetensors`` atomically, with
    the digest of all its tensors and the run's id in the metadata."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    tensors[_TRAIN + "lossi"] = torch.tensor(lossi, dtype=torch.float32)
    tensors[_TRAIN + "rng_state"] = rng_state.clone()
    metadata = {"format": FORMAT, "model": model_name, "step": str(step),
                "digest": tensor_digest(tensors)}
    if run_id is not None:
        metadata["run_id"] = run_id
    path = Path(run_dir) / CHECKPOINT
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))
    return path


def load_checkpoint(run_dir: Path) -> Checkpoint:
    """Load ``run_dir/model.safetensors``; ``DataError`` if it is missing, truncated or not
    shapekit's."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    path = Path(run_dir) / CHECKPOINT
    if not path.is_file():
        raise DataError(
            f"{path}: no such file; expected the checkpoint that 'shapekit train' writes into its "
            "run directory; fix: pass a run directory of 'shapekit train', or train one with "
            f"'shapekit train --out {run_dir}'"
        )
    try:
        with safe_open(str(path), "pt") as f:
            metadata = f.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise DataError(
            f"{path}: cannot be read as safetensors ({e}); the file is corrupted or truncated; "
            "fix: resume from an intact copy, or train the run again"
        ) from None
    missing = [k for k in ("lossi", "rng_state") if _TRAIN + k not in tensors]
    if metadata.get("format") != FORMAT or "step" not in metadata or missing:
        raise DataError(
            f"{path}: is a safetensors file but not a shapekit checkpoint (expected format "
            f"{FORMAT!r} with a step and the training state); fix: pass a run directory written "
            "by 'shapekit train'"
        )
    damaged = f"fix: resume from an intact copy, or train it again with --out {run_dir} --force"
    if "digest" in metadata and tensor_digest(tensors) != metadata["digest"]:
        raise DataError(
            f"{path}: the tensors do not match the digest recorded when it was saved (expected "
            f"SHA-256 {metadata['digest'][:16]}..., got {tensor_digest(tensors)[:16]}...); the "
            f"file was damaged or edited; {damaged}"
        )
    step = metadata["step"]
    if not step.isdigit():
        raise DataError(f"{path}: metadata 'step' is {step!r}; expected an integer >= 0; "
                        f"{damaged}")
    lossi, rng_state = tensors.pop(_TRAIN + "lossi"), tensors.pop(_TRAIN + "rng_state")
    if lossi.dtype != torch.float32 or lossi.shape != (int(step),):
        raise DataError(f"{path}: '_train.lossi' is {lossi.dtype} {tuple(lossi.shape)}; expected "
                        f"float32 ({int(step)},), one loss per step done; {damaged}")
    expected = torch.get_rng_state()
    if rng_state.dtype != expected.dtype or rng_state.shape != expected.shape:
        raise DataError(f"{path}: '_train.rng_state' is {rng_state.dtype} "
                        f"{tuple(rng_state.shape)}; expected {expected.dtype} "
                        f"{tuple(expected.shape)}, torch's generator state; {damaged}")
    return Checkpoint(tensors, metadata.get("model", ""), int(step), lossi.tolist(), rng_state,
                      metadata.get("run_id"))


def check_against_config(ckpt: Checkpoint, config: dict, run_dir: Path) -> None:
    """``DataError`` when the checkpoint is not the one of the run ``config`` describes: another
    row's model, another run's id, or more steps than the run has."""
    check_model_name(ckpt, config["model"], run_dir)
    path = Path(run_dir) / CHECKPOINT
    if config.get("run_id") is not None and ckpt.run_id != config["run_id"]:
        raise DataError(
            f"{path}: belongs to another run (run_id {ckpt.run_id!r}, but {CONFIG} has "
            f"{config['run_id']!r}); expected the files of one run together; fix: put back this "
            f"run's own model.safetensors, or train the run again with --out {run_dir} --force"
        )
    if ckpt.step > config["steps"]:
        raise DataError(
            f"{path}: metadata 'step' is {ckpt.step}, past the run's {config['steps']} steps in "
            f"{CONFIG}; fix: resume from an intact copy, or train the run again with --out "
            f"{run_dir} --force"
        )


def check_model_name(ckpt: Checkpoint, name: str, run_dir: Path) -> None:
    """``DataError`` when the checkpoint holds another row's model than the config names."""
    if ckpt.model != name:
        raise DataError(
            f"{Path(run_dir) / CHECKPOINT}: holds a {ckpt.model!r} model, but {CONFIG} says "
            f"{name!r}; the two files come from different runs; fix: keep model.safetensors "
            "together with the config.json of the same run"
        )


def load_state_into(model: torch.nn.Module, state: dict[str, Tensor], where: Path) -> None:
    """Load ``state`` into ``model``, first checking names and parameter shapes so a mismatch is
    reported against the config rather than deep inside torch."""
    expected = dict(model.named_parameters())
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [
        f"{k}: config builds {tuple(p.shape)}, file has {tuple(state[k].shape)}"
        for k, p in expected.items() if k in state and state[k].shape != p.shape
    ]
    if missing or unexpected or wrong:
        problems = wrong[:3] + [f"missing {k}" for k in missing[:3]]
        problems += [f"unexpected {k}" for k in unexpected[:3]]
        raise DataError(
            f"{where}: the weights do not fit the model described by {CONFIG} "
            f"({'; '.join(problems)}); the checkpoint and its config come from different runs; "
            "fix: keep model.safetensors together with the config.json of the same run"
        )
    state = {k: _exact(v, own[k], k, where) for k, v in state.items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[-1].strip()
        raise DataError(
            f"{where}: the buffers do not fit the model described by {CONFIG} ({first}); "
            "fix: keep model.safetensors together with the config.json of the same run"
        ) from None


def _exact(saved: Tensor, own: Tensor, name: str, where: Path) -> Tensor:
    """``saved`` in the dtype of the model's ``own`` tensor: converted only when no value changes,
    and refused when not finite (a NaN weight makes every prediction NaN)."""
    fix = "fix: resume from an intact copy, or train the run again with --out DIR --force"
    if saved.dtype != own.dtype:
        converted = saved.to(own.dtype)
        kind_changed = saved.is_floating_point() != own.is_floating_point()  # an int64 weight
        if kind_changed or not torch.equal(converted.to(saved.dtype), saved):
            raise DataError(
                f"{where}: {name} is stored as {saved.dtype}, expected {own.dtype} (what the model "
                f"of {CONFIG} holds), and converting it would change its values; {fix}"
            )
        saved = converted
    if saved.is_floating_point() and not torch.isfinite(saved).all():
        bad = int((~torch.isfinite(saved)).sum())
        raise DataError(f"{where}: {name} has {bad} NaN or infinite value(s); expected finite "
                        f"weights; {fix}")
    return saved
