"""Random damage to every run file and to the names cache: a clear error or a correct run, never a
traceback, never a silent change of results.

Bounded and repeatable: a fixed seed draws the same few dozen damages every time (seconds, not
minutes). A damaged run is asked to ``sample`` and to ``train --resume --steps 6``; the answer must
be exit 2 with one ``shapekit ...: ...; fix: ...`` line and the files untouched, or exit 0 with
exactly the names and losses the undamaged run gives.
"""

from __future__ import annotations

import contextlib
import io
import json
import random
import shutil
from pathlib import Path

import pytest
from _lecture import names_path, one_thread  # noqa: F401 (one_thread: autouse fixture)

from shapekit.cli._main import main
from shapekit.lecture import _data

CASES = 30
# Values no field of a run file accepts where it matters (0 and positive numbers can be real
# settings, like --decay-at 0 or --lr 0.5, and would change results on purpose).
POOL = [None, "x", "", [], {}, True, -1, -2.5, "NaN", 10**30]
FILES = ("config.json", "metrics.json", "model.safetensors", "loss.png")


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> tuple[Path, list[str], dict]:
    """A finished 4-step run; its sampled names; the metrics of resuming it to 6 steps."""
    base = tmp_path_factory.mktemp("fuzz")
    data = base / "names300.txt"
    data.write_text("".join(names_path().read_text().splitlines(keepends=True)[:300]))
    run = base / "run"
    assert main(["train", "--model", "1", "--steps", "4", "--out", str(run), "--data", str(data),
                 "--save-every", "0"]) == 0
    names = _run(["sample", "--checkpoint", str(run), "-n", "3", "--seed", "1"])[1]
    extended = base / "extended"
    shutil.copytree(run, extended)
    assert _run(["train", "--resume", str(extended), "--steps", "6"])[0] == 0
    return run, names, _losses(extended)


def _run(args: list[str]) -> tuple[int, list[str], str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(args)  # any exception other than SystemExit fails the test: a traceback
    return code, out.getvalue().split(), err.getvalue()


def _losses(run: Path) -> dict:
    m = json.loads((run / "metrics.json").read_text())
    return {k: m[k] for k in ("steps_done", "train_loss", "val_loss", "finished")}


def _damage_json(path: Path, rng: random.Random) -> str:
    data = json.loads(path.read_text())
    target, label = data, path.name
    if "data" in data and rng.random() < 0.2:
        target, label = data["data"], f"{path.name} data"
    key = rng.choice(sorted(target))
    how = rng.random()
    if how < 0.15:
        del target[key]
        kind = f"{label}: no {key}"
    elif how < 0.25:
        cut = rng.randrange(len(path.read_text()))
        path.write_text(path.read_text()[:cut])
        return f"{path.name} cut at {cut}"
    else:
        target[key] = rng.choice(POOL)
        kind = f"{label}: {key}={target[key]!r}"
    path.write_text(json.dumps(data))
    return kind


def _damage_checkpoint(path: Path, rng: random.Random) -> str:
    data = bytearray(path.read_bytes())
    if rng.random() < 0.2:
        cut = rng.randrange(len(data))
        path.write_bytes(bytes(data[:cut]))
        return f"checkpoint cut at {cut}"
    header = 8 + int.from_bytes(data[:8], "little")  # safetensors: length, JSON header, tensors
    at = rng.randrange(header) if rng.random() < 0.4 else rng.randrange(len(data))
    data[at] ^= 1 << rng.randrange(8)
    path.write_bytes(bytes(data))
    return f"checkpoint bit flipped at {at}"


def _snapshot(run: Path) -> dict[str, bytes]:
    return {n: (run / n).read_bytes() for n in FILES if (run / n).exists()}


@pytest.mark.parametrize("case", range(CASES))
def test_random_damage_to_a_run(case, clean, tmp_path):
    run, names, losses = clean
    rng = random.Random(case)
    target = tmp_path / "run"
    shutil.copytree(run, target)
    name = rng.choice(["config.json", "metrics.json", "model.safetensors"])
    path = target / name
    what = (_damage_checkpoint if name.endswith(".safetensors") else _damage_json)(path, rng)
    for args in (["sample", "--checkpoint", str(target), "-n", "3", "--seed", "1"],
                 ["train", "--resume", str(target), "--steps", "6"]):
        before = _snapshot(target)
        code, out, err = _run(args)
        if code == 2:
            lines = err.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith(f"shapekit {args[0]}: "), (what, err)
            assert "; fix: " in lines[0], (what, err)
            assert _snapshot(target) == before, (what, args, "files changed before the error")
        else:
            assert code == 0, (what, args, code, err)
            if args[0] == "sample":
                assert out == names, (what, "sampled other names")
            else:
                assert _losses(target) == losses, (what, "resumed to other losses")
                break  # the run is extended now; nothing more to compare


@pytest.mark.parametrize("case", range(12))
def test_random_cache_states(case, tmp_path, monkeypatch):
    rng = random.Random(1000 + case)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("SHAPEKIT_NAMES", raising=False)
    monkeypatch.setenv("SHAPEKIT_NAMES_URL", "http://127.0.0.1:9/names.txt")  # refused at once
    folder = tmp_path / "xdg" / "shapekit"
    real = names_path().read_bytes()
    state = rng.choice(["random bytes", "cut", "flipped", "directory", "parent is a file",
                        "parts left", "empty", "valid"])
    if state == "parent is a file":
        (tmp_path / "xdg").mkdir()
        (tmp_path / "xdg" / "shapekit").write_bytes(b"x")
    else:
        folder.mkdir(parents=True)
        cache = folder / "names.txt"
        if state == "random bytes":
            cache.write_bytes(rng.randbytes(rng.randrange(1, 500)))
        elif state == "cut":
            cache.write_bytes(real[: rng.randrange(len(real))])
        elif state == "flipped":
            data = bytearray(real)
            data[rng.randrange(len(data))] ^= 0x20
            cache.write_bytes(bytes(data))
        elif state == "directory":
            cache.mkdir()
        elif state == "parts left":
            (folder / ".names-999999999-a.part").write_bytes(real[:10])
        elif state == "empty":
            cache.write_bytes(b"")
        else:
            cache.write_bytes(real)
    for offline in (True, False):
        names = _data.load_names(offline=offline, quiet=True)  # never raises
        if state == "valid":
            assert names.source == "cache" and len(names.words) == 32_033
        else:
            assert names.source == "fallback", state
