"""Damaged and hand-edited run files: each one a one-line error naming the file, the field, the
value and the fix (exit 2), found before anything is trained or written; or, where the damage
changes nothing (weights stored in a wider dtype), a run that gives the same results.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from _lecture import names_path, one_thread  # noqa: F401 (one_thread: autouse fixture)
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from shapekit.cli._main import main

FILES = ("config.json", "metrics.json", "model.safetensors", "loss.png")


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("data") / "names300.txt"
    path.write_text("".join(names_path().read_text().splitlines(keepends=True)[:300]))
    return str(path)


def _train(out: Path, small: str, seed: str = "42") -> Path:
    args = ["train", "--model", "1", "--steps", "4", "--seed", seed, "--out", str(out), "--data",
            small, "--save-every", "0"]
    assert main(args) == 0
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory, small) -> tuple[Path, Path]:
    """Two finished 4-step runs of the same row: seeds 42 and 7."""
    base = tmp_path_factory.mktemp("runs")
    return _train(base / "a", small), _train(base / "b", small, seed="7")


@pytest.fixture(scope="module")
def reference(runs, tmp_path_factory) -> list[str]:
    return _sample(runs[0])


def _sample(run: Path) -> list[str] | int:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["sample", "--checkpoint", str(run), "-n", "4", "--seed", "3"])
    return out.getvalue().split() if code == 0 else code


def _copy(runs, tmp_path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(runs[0], target)
    return target


def _snapshot(run: Path) -> dict[str, bytes]:
    return {name: (run / name).read_bytes() for name in FILES if (run / name).exists()}


def edit_json(name: str, **changes):
    def edit(run: Path, other: Path) -> None:
        data = json.loads((run / name).read_text())
        for key, value in changes.items():
            if value is _DELETE:
                del data[key]
            else:
                data[key] = value
        (run / name).write_text(json.dumps(data))

    return edit


_DELETE = object()


def edit_checkpoint(*, metadata=None, tensors=None, digest: bool = True):
    """Rewrite model.safetensors with ``metadata(meta)`` / ``tensors(dict)`` applied; ``digest=
    False`` drops the recorded digest (a file another tool wrote)."""
    def edit(run: Path, other: Path) -> None:
        path = run / "model.safetensors"
        with safe_open(str(path), "pt") as f:
            meta = dict(f.metadata())
        state = load_file(str(path))
        if metadata is not None:
            metadata(meta)
        if tensors is not None:
            tensors(state)
        if not digest:
            meta.pop("digest", None)
        save_file(state, str(path), metadata=meta)

    return edit


def flip_byte(run: Path, other: Path) -> None:
    path = run / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[-100] ^= 0x01  # inside the tensor data, past the header
    path.write_bytes(bytes(data))


def splice(run: Path, other: Path) -> None:
    shutil.copy(other / "model.safetensors", run / "model.safetensors")


def foreign_metrics(run: Path, other: Path) -> None:
    shutil.copy(other / "metrics.json", run / "metrics.json")


def _set(key, value):
    return lambda d: d.__setitem__(key, value)


def _weights(fn):
    return lambda state: state.update({k: fn(v) for k, v in state.items()
                                       if not k.startswith("_train.")})


BAD = {
    "config steps abc": (edit_json("config.json", steps="abc"),
                         "config.json: field 'steps' is 'abc'; expected an integer >= 1"),
    "config steps 1.5": (edit_json("config.json", steps=1.5), "field 'steps' is 1.5"),
    "config steps null": (edit_json("config.json", steps=None), "field 'steps' is None"),
    "config steps -1": (edit_json("config.json", steps=-1), "field 'steps' is -1"),
    "config seed x": (edit_json("config.json", seed="x"),
                      "field 'seed' is 'x'; expected an integer"),
    "config checks": (edit_json("config.json", checks="sometimes"),
                      "field 'checks' is 'sometimes'; expected one of null, 'always', 'once'"),
    "config data null": (edit_json("config.json", data=None), "field 'data' is None"),
    "config no seed": (edit_json("config.json", seed=_DELETE), "field 'seed' is missing"),
    "config no data": (edit_json("config.json", data=_DELETE), "field 'data' is missing"),
    "config no checks": (edit_json("config.json", checks=_DELETE), "field 'checks' is missing"),
    "config batch 0": (edit_json("config.json", batch_size=0), "field 'batch_size' is 0"),
    "config batch -3": (edit_json("config.json", batch_size=-3), "field 'batch_size' is -3"),
    "config batch x": (edit_json("config.json", batch_size="x"), "field 'batch_size' is 'x'"),
    "config model nope": (edit_json("config.json", model="nope"),
                          "field 'model' is 'nope'; expected a row of the lecture's table"),
    "config block_size": (edit_json("config.json", block_size=5),
                          "field 'block_size' is 5; expected 3, the original row's"),
    "config lr fast": (edit_json("config.json", lr="fast"),
                       "field 'lr' is 'fast'; expected a finite number > 0"),
    "config lr -0.1": (edit_json("config.json", lr=-0.1), "field 'lr' is -0.1"),
    "config lr null": (edit_json("config.json", lr=None), "field 'lr' is None"),
    "config eval_every": (edit_json("config.json", eval_every="x"), "field 'eval_every' is 'x'"),
    "config sha256": (edit_json("config.json", data={"path": None, "source": "path",
                                                     "sha256": "abc"}),
                      "config.json data: field 'sha256' is 'abc'; expected 64 hex digits"),
    "step abc": (edit_checkpoint(metadata=_set("step", "abc")),
                 "metadata 'step' is 'abc'; expected an integer >= 0"),
    "step -5": (edit_checkpoint(metadata=_set("step", "-5")), "metadata 'step' is '-5'"),
    "step 10000": (edit_checkpoint(metadata=_set("step", "10000"), digest=False),
                   "'_train.lossi' is torch.float32 (4,); expected float32 (10000,)"),
    "rng dtype": (edit_checkpoint(tensors=lambda s: s.update({
        "_train.rng_state": s["_train.rng_state"].to(torch.int64)}), digest=False),
        "'_train.rng_state' is torch.int64"),
    "rng size": (edit_checkpoint(tensors=lambda s: s.update({
        "_train.rng_state": s["_train.rng_state"][:100].clone()}), digest=False),
        "'_train.rng_state' is torch.uint8 (100,)"),
    "lossi 2-D": (edit_checkpoint(tensors=lambda s: s.update({
        "_train.lossi": s["_train.lossi"].view(2, 2).clone()}), digest=False),
        "'_train.lossi' is torch.float32 (2, 2)"),
    "nan weights": (edit_checkpoint(tensors=_weights(lambda v: v * math.nan), digest=False),
                    "NaN or infinite value(s); expected finite weights"),
    "int64 weights": (edit_checkpoint(tensors=_weights(lambda v: v.to(torch.int64)),
                                      digest=False),
                      "is stored as torch.int64, expected torch.float32"),
    "bool weights": (edit_checkpoint(tensors=_weights(lambda v: v.bool()), digest=False),
                     "is stored as torch.bool, expected torch.float32"),
    "float64, digest kept": (edit_checkpoint(tensors=_weights(lambda v: v.double())),
                             "the tensors do not match the digest recorded when it was saved"),
    "flipped byte": (flip_byte, "the tensors do not match the digest recorded when it was saved"),
    "spliced": (splice, "model.safetensors: belongs to another run (run_id '"),
    "foreign metrics": (foreign_metrics, "metrics.json: belongs to another run (run_id '"),
    "metrics wall_seconds": (edit_json("metrics.json", wall_seconds="x"),
                             "metrics.json: field 'wall_seconds' is 'x'; expected a finite "
                             "number >= 0"),
    "metrics steps_done": (edit_json("metrics.json", steps_done=99),
                           "field 'steps_done' is 99; expected at most the run's"),
}
SAMPLE_READS_METRICS = {"foreign metrics", "metrics wall_seconds", "metrics steps_done"}


@pytest.mark.parametrize("damage", BAD, ids=list(BAD))
def test_damage_is_one_clear_line_before_anything_is_written(damage, runs, tmp_path, capsys):
    edit, message = BAD[damage]
    run = _copy(runs, tmp_path)
    edit(run, runs[1])
    before = _snapshot(run)
    commands = [["train", "--resume", str(run), "--steps", "6"]]
    if damage not in SAMPLE_READS_METRICS:  # sample needs only the config and the checkpoint
        commands.append(["sample", "--checkpoint", str(run), "-n", "2"])
    for args in commands:
        code = main(args)
        err = capsys.readouterr().err
        assert code == 2, (args, err)
        assert err.count("\n") == 1 and err.startswith(f"shapekit {args[0]}: "), err
        assert message in err and "; fix: " in err, err
        assert _snapshot(run) == before  # nothing trained, nothing written


def test_float16_exact_weights_are_converted_and_give_the_same_names(runs, tmp_path, reference):
    run = _copy(runs, tmp_path)
    # weights that float16 holds exactly: round them first, in the float32 file, then store half
    edit_checkpoint(tensors=_weights(lambda v: v.half().float()), digest=False)(run, runs[1])
    rounded = _sample(run)
    edit_checkpoint(tensors=_weights(lambda v: v.half()), digest=False)(run, runs[1])
    assert _sample(run) == rounded


def test_float64_weights_without_a_digest_are_converted_exactly(runs, tmp_path, reference):
    run = _copy(runs, tmp_path)
    edit_checkpoint(tensors=_weights(lambda v: v.double()), digest=False)(run, runs[1])
    assert _sample(run) == reference


def test_the_run_id_is_shared_by_the_three_files(runs):
    run = runs[0]
    config = json.loads((run / "config.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    with safe_open(str(run / "model.safetensors"), "pt") as f:
        meta = f.metadata()
    assert len(config["run_id"]) == 32 and config["run_id"] == metrics["run_id"] == meta["run_id"]
    other = json.loads((runs[1] / "config.json").read_text())["run_id"]
    assert other != config["run_id"]
    assert len(meta["digest"]) == 64
