"""A run directory on disk: config, checkpoint, metrics; every write atomic, every read checked.

    runs/wavenet-20250101-120000/
      config.json         the model row, hyperparameters, data source and SHA-256
      model.safetensors   weights and buffers, plus the training state (step, lossi, torch RNG)
      metrics.json        losses, parameter count, steps, wall time, versions
      loss.png            mean log10 loss per 1,000 steps, as the lecture plots it

The checkpoint is plain safetensors (no pickle): the model's ``state_dict`` tensors under their
own names, the per-step log10 losses under ``_train.lossi`` and ``torch.get_rng_state()`` under
``_train.rng_state``; the step count is in the metadata.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ._errors import DataError

__all__ = [
    "CHECKPOINT", "CONFIG", "METRICS", "Checkpoint", "atomic_write", "check_model_name",
    "load_checkpoint",
    "load_state_into", "read_json", "save_checkpoint", "write_json",
]

CHECKPOINT, CONFIG, METRICS, PLOT = "model.safetensors", "config.json", "metrics.json", "loss.png"
FORMAT = "shapekit-checkpoint/1"
_TRAIN = "_train."  # prefix of the training-state tensors, kept apart from the model's
_UMASK = os.umask(0o022)
os.umask(_UMASK)  # os.umask can only read the process umask by setting it


@dataclass
class Checkpoint:
    """A loaded checkpoint: the model's tensors and where training stood."""

    state: dict[str, Tensor]
    model: str
    step: int
    lossi: list[float]
    rng_state: Tensor


def atomic_write(path: Path, write) -> None:
    """Call ``write(tmp_path)`` on a temp file beside ``path``, then ``os.replace`` it into place:
    an interruption leaves the old file or the new one, never half of one."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual permissions
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
    rng_state: Tensor,
) -> Path:
    """Save weights, buffers and training state to ``run_dir/model.safetensors`` atomically."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    tensors[_TRAIN + "lossi"] = torch.tensor(lossi, dtype=torch.float32)
    tensors[_TRAIN + "rng_state"] = rng_state.clone()
    metadata = {"format": FORMAT, "model": model_name, "step": str(step)}
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
    lossi = tensors.pop(_TRAIN + "lossi").tolist()
    rng_state = tensors.pop(_TRAIN + "rng_state")
    return Checkpoint(tensors, metadata.get("model", ""), int(metadata["step"]), lossi, rng_state)


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
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[-1].strip()
        raise DataError(
            f"{where}: the buffers do not fit the model described by {CONFIG} ({first}); "
            "fix: keep model.safetensors together with the config.json of the same run"
        ) from None
