"""End-to-end tests of ``shapekit train``, ``shapekit sample`` and ``shapekit reproduce``.

The main flow runs the console script in a subprocess, as a user would; the error cases call the
same entry point in-process (faster) and pin the messages.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys

import pytest
import torch
from _lecture import (  # one_thread: autouse fixture
    names_path,
    one_thread,  # noqa: F401
)
from safetensors.torch import load_file

from shapekit.cli._main import main
from shapekit.lecture._checkpoint import save_checkpoint
from shapekit.lecture._models import build_model

SHAPEKIT = [sys.executable, "-m", "shapekit"]


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "MPLBACKEND": "Agg"}
    return subprocess.run([*SHAPEKIT, *args], capture_output=True, text=True, timeout=timeout,
                          env=env)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A finished 200-step run of the default model, trained by the CLI."""
    out = tmp_path_factory.mktemp("runs") / "tmp"
    proc = cli("train", "--steps", "200", "--out", str(out), "--data", str(names_path()))
    assert proc.returncode == 0, proc.stderr
    summary = r"wavenet: train \d\.\d{4}  val \d\.\d{4}  \(76,579 params, 200 steps"
    assert re.search(summary, proc.stdout), proc.stdout
    return out


def test_train_writes_the_run_directory(run_dir):
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "config.json", "loss.png", "metrics.json", "model.safetensors"]
    config = json.loads((run_dir / "config.json").read_text())
    assert config["model"] == "wavenet" and config["steps"] == 200 and config["decay_at"] == 150
    assert config["data"]["sha256"] == (
        "0a30b5557f192f32ab962680889aac5f6fda0f4cecf40a6d0b5694f58ea8cc4d")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["finished"] and metrics["steps_done"] == 200 and metrics["params"] == 76_579
    assert 2.0 < metrics["val_loss"] < 3.3 and metrics["threads"] == 1
    assert metrics["torch"] == torch.__version__
    tensors = load_file(run_dir / "model.safetensors")
    assert tensors["_train.lossi"].shape == (200,)
    assert tensors["0.weight"].shape == (27, 24)


def test_compiled_training_matches_the_eager_run(run_dir, tmp_path):
    """--compile: the first step eager and checked, the rest one compiled graph; the losses
    follow the eager run's (the same batches, rounded in another order)."""
    out = tmp_path / "compiled"
    proc = cli("train", "--steps", "200", "--compile", "--out", str(out), "--data",
               str(names_path()))
    assert proc.returncode == 0, proc.stderr
    assert json.loads((out / "config.json").read_text())["compile"] is True
    compiled = load_file(out / "model.safetensors")["_train.lossi"]
    eager = load_file(run_dir / "model.safetensors")["_train.lossi"]
    assert torch.equal(compiled[0], eager[0])  # the eager first step: bit for bit
    torch.testing.assert_close(10**compiled, 10**eager, atol=1e-3, rtol=0)


def test_sample_prints_names(run_dir):
    proc = cli("sample", "--checkpoint", str(run_dir), "-n", "5", "--seed", "1")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 5 and all(re.fullmatch(r"[a-z]+", line) for line in lines), lines
    again = cli("sample", "--checkpoint", str(run_dir), "-n", "5", "--seed", "1")
    assert again.stdout == proc.stdout


def test_ctrl_c_saves_a_checkpoint_and_says_how_to_resume(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "MPLBACKEND": "Agg"}
    proc = subprocess.Popen(
        [*SHAPEKIT, "train", "--model", "2", "--steps", "100000", "--out", str(out), "--data",
         str(names_path())], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    for line in proc.stdout:  # the first progress line is printed after step 0
        if "/ 100000" in line:
            break
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert re.search(rf"shapekit train: interrupted after step [\d,]+ of 100,000; checkpoint saved "
                     rf"to {re.escape(str(out / 'model.safetensors'))}; continue with: shapekit "
                     rf"train --resume {re.escape(str(out))}", err)
    metrics = json.loads((out / "metrics.json").read_text())
    assert not metrics["finished"] and metrics["steps_done"] >= 1
    step = load_file(out / "model.safetensors")["_train.lossi"].shape[0]
    assert step == metrics["steps_done"]


# ---- bad arguments: exit 2, one clear line, no traceback -------------------------------------


def run_main(capsys, *args: str) -> tuple[int, str]:
    try:
        code = main(list(args))
    except SystemExit as e:  # argparse errors
        code = e.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["--steps", "-5"], "argument --steps: expected a positive integer, got -5; fix: e.g. 1000"),
    (["--steps", "ten"], "argument --steps: expected an integer, got 'ten'; fix: e.g. 1000"),
    (["--model", "9"], "argument --model: unknown model '9'; expected a row of the lecture's "
     "performance log"),
    (["--lr", "0"], "argument --lr: expected a positive number, got 0; fix: e.g. 0.1"),
])
def test_bad_arguments(capsys, args, message):
    code, err = run_main(capsys, "train", *args)
    assert code == 2 and message in err and "Traceback" not in err


def test_unreadable_data(capsys, tmp_path):
    code, err = run_main(capsys, "train", "--data", str(tmp_path / "nope.txt"), "--out",
                         str(tmp_path / "r"))
    assert code == 2
    assert err.startswith(f"shapekit train: names file {tmp_path / 'nope.txt'}: no such file;")


def test_decay_after_the_last_step(capsys, tmp_path):
    code, err = run_main(capsys, "train", "--steps", "10", "--decay-at", "20", "--out",
                         str(tmp_path))
    assert code == 2
    assert "--decay-at 20 is after the last step 10; fix: pass a step below --steps" in err


def test_refuses_to_overwrite_a_run(capsys, run_dir):
    code, err = run_main(capsys, "train", "--steps", "10", "--out", str(run_dir))
    assert code == 2
    assert err == (f"shapekit train: --out {run_dir}: the directory is not empty; fix: continue "
                   f"that run with --resume {run_dir}, overwrite it with --force, or pick another "
                   "--out\n")


def test_resume_without_a_checkpoint(capsys, tmp_path, run_dir):
    shutil.copy(run_dir / "config.json", tmp_path / "config.json")
    code, err = run_main(capsys, "train", "--resume", str(tmp_path))
    assert code == 2
    assert f"{tmp_path / 'model.safetensors'}: no such file; --resume needs a run directory" in err


def test_resume_with_another_model(capsys, run_dir):
    code, err = run_main(capsys, "train", "--resume", str(run_dir), "--model", "original")
    assert code == 2
    assert ("--model original differs from the run's model wavenet" in err
            and "fix: drop --model, or start a new run with --out" in err)


def test_resume_with_a_checkpoint_of_another_model(capsys, tmp_path, run_dir):
    shutil.copy(run_dir / "config.json", tmp_path / "config.json")
    save_checkpoint(tmp_path, build_model("original"), model_name="original", step=5,
                    lossi=[0.5] * 5, rng_state=torch.get_rng_state())
    code, err = run_main(capsys, "train", "--resume", str(tmp_path), "--data", str(names_path()))
    assert code == 2
    assert (f"{tmp_path / 'model.safetensors'}: holds a 'original' model, but config.json says "
            "'wavenet'; the two files come from different runs") in err


def test_resume_on_other_data(capsys, tmp_path, run_dir):
    shutil.copytree(run_dir, tmp_path / "run")
    config = json.loads((tmp_path / "run/config.json").read_text())
    config["data"]["sha256"] = "0" * 64
    (tmp_path / "run/config.json").write_text(json.dumps(config))
    code, err = run_main(capsys, "train", "--resume", str(tmp_path / "run"), "--data",
                         str(names_path()))
    assert code == 2
    assert (f"has SHA-256 0a30b5557f192f32ab962680889aac5f6fda0f4cecf40a6d0b5694f58ea8cc4d, but "
            f"the run in {tmp_path / 'run'} was trained on {'0' * 64}; fix: pass --data with the "
            "file the run was trained on") in err


def test_resume_a_finished_run_is_a_no_op(capsys, run_dir):
    code = main(["train", "--resume", str(run_dir), "--data", str(names_path())])
    assert code == 0
    assert f"{run_dir} is already finished (200 steps)" in capsys.readouterr().out


# ---- bad checkpoints for `shapekit sample` ---------------------------------------------------


def broken_copy(run_dir, tmp_path, edit) -> str:
    target = tmp_path / "copy"
    shutil.copytree(run_dir, target)
    edit(target)
    return str(target)


def truncate(d):
    data = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(data[: len(data) // 2])


def mismatched(d):
    run_id = json.loads((d / "config.json").read_text())["run_id"]  # the same run, other weights
    save_checkpoint(d, build_model("context8"), model_name="wavenet", step=1, lossi=[0.1],
                    rng_state=torch.get_rng_state(), run_id=run_id)


@pytest.mark.parametrize("edit, message", [
    (lambda d: (d / "model.safetensors").unlink(),
     r"model.safetensors: no such file; expected the checkpoint that 'shapekit train' writes"),
    (lambda d: (d / "config.json").unlink(),
     r"config.json: no such file; expected the config of a run written by 'shapekit train'"),
    (truncate, r"model.safetensors: cannot be read as safetensors \(.*\); the file is corrupted "
     r"or truncated; fix: resume from an intact copy, or train the run again"),
    (lambda d: (d / "model.safetensors").write_bytes(b"not a checkpoint" * 4),
     r"model.safetensors: cannot be read as safetensors"),
    (lambda d: (d / "config.json").write_text("{"), r"config.json: is not valid JSON"),
    (mismatched, r"model.safetensors: the weights do not fit the model described by config.json "
     r"\(0.weight: config builds \(27, 24\), file has \(27, 10\); 2.weight: config builds "
     r"\(48, 128\), file has \(80, 200\); .*; missing 6.weight; .*; unexpected 5.bias; .*\); "
     r"the checkpoint and its config come from different runs"),
])
def test_sample_bad_checkpoints(capsys, tmp_path, run_dir, edit, message):
    code, err = run_main(capsys, "sample", "--checkpoint", broken_copy(run_dir, tmp_path, edit))
    assert code == 2 and "Traceback" not in err
    assert err.startswith("shapekit sample: ") and re.search(message, err), err


def test_sample_missing_directory(capsys, tmp_path):
    code, err = run_main(capsys, "sample", "--checkpoint", str(tmp_path / "nope"))
    assert code == 2
    assert err.startswith(f"shapekit sample: {tmp_path / 'nope'}: no such directory; expected a "
                          "run directory written by 'shapekit train'")


# ---- reproduce ---------------------------------------------------------------------------------


def test_reproduce_trains_skips_and_publishes(capsys, tmp_path):
    out, docs = tmp_path / "repro", tmp_path / "docs"
    args = ["reproduce", "--rows", "1,hierarchical-bug", "--steps", "30", "--out", str(out),
            "--data", str(names_path())]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert "| original: 3-char context, 200 hidden | 12,097 |" in first
    assert "| flat -> hierarchical (with the BatchNorm bug) | 22,397 |" in first
    assert f"Regenerate: `shapekit reproduce --steps 30 --out {out}` (30 steps per row," in first
    assert "fallback" not in first  # trained on names.txt: no note
    assert main(args) == 0
    second = capsys.readouterr().out
    assert "row 1 original: already finished" in second
    assert "row 3 hierarchical-bug: already finished" in second
    assert main([*args, "--publish", str(docs)]) == 0
    assert sorted(p.name for p in docs.iterdir()) == [
        "hierarchical-bug-loss.png", "loss_curves.png", "original-loss.png", "table.json",
        "table.md"]
    published = (docs / "table.md").read_text()  # tmp_path is absolute: no path of this machine
    assert "Regenerate: `shapekit reproduce --steps 30` (30 steps per row," in published
    assert str(tmp_path) not in published
    table = json.loads((docs / "table.json").read_text())
    assert table["columns"] == ["model", "params", "train", "val", "lecture train", "lecture val",
                                "val diff", "steps", "minutes"]
    row = table["rows"][0]
    assert row["model"] == "original" and row["steps"] == 30 and row["lecture_val"] == 2.105
    assert row["val_diff"] == pytest.approx(row["val"] - 2.105, abs=1e-4)


def test_reproduce_records_validation_curves(capsys, tmp_path, monkeypatch):
    """--eval-every N: the val loss every N steps goes into metrics.json and onto the plots. The
    oracle for the last point is the final val loss, computed on the same model after the last
    step."""
    from shapekit.lecture import _plots, _run, runs

    drawn = []

    def plot_curves(curves, path, title, val=None):
        drawn.append((path.name, title, val))
        _plots.plot_curves(curves, path, title, val)

    monkeypatch.setattr(_run, "plot_curves", plot_curves)  # each row's loss.png
    monkeypatch.setattr(runs, "plot_curves", plot_curves)  # the table's loss_curves.png
    out = tmp_path / "repro"
    assert main(["reproduce", "--rows", "1", "--steps", "30", "--eval-every", "10", "--out",
                 str(out), "--data", str(names_path())]) == 0
    metrics = json.loads((out / "original" / "metrics.json").read_text())
    assert [e["step"] for e in metrics["evals"]] == [10, 20, 30]
    assert metrics["evals"][-1]["val"] == pytest.approx(metrics["val_loss"], abs=1e-6)
    points = [(e["step"], e["val"]) for e in metrics["evals"]]
    assert ("loss_curves.png", "the lecture's five models: training and validation loss",
            {"original": points}) in drawn
    assert any(name == "loss.png" and val == {"original": points} for name, _, val in drawn)
    capsys.readouterr()


def test_publish_refuses_unfinished_rows(capsys, tmp_path):
    code, err = run_main(capsys, "reproduce", "--rows", "5", "--out", str(tmp_path), "--publish",
                         str(tmp_path / "docs"))
    assert code == 2
    assert err.startswith(
        f"shapekit reproduce: --publish: row(s) wavenet not finished in {tmp_path};")
    assert not (tmp_path / "docs").exists()


def test_loss_plots_keep_every_label_on_the_figure_and_off_the_curves(tmp_path, monkeypatch):
    """A long run description wraps instead of running off the figure's edge, and the five-run
    plot's legend sits below the axes (one entry per run and a train/validation key), where it
    covers no curve."""
    import matplotlib.pyplot as plt

    from shapekit.lecture import _plots

    figures, extents = [], []
    close = plt.close

    def keep(fig):  # the drawn figure's legend and axes boxes, before pyplot lets go of it
        ax = fig.axes[0]
        if ax.get_legend() is not None:
            renderer = fig.canvas.get_renderer()
            extents.append((ax.get_legend().get_window_extent(renderer),
                            ax.get_window_extent(renderer)))
        figures.append(fig)
        close(fig)

    monkeypatch.setattr(plt, "close", keep)
    lossi = [3.0 - i / 2000 for i in range(2000)]
    title = "hierarchical-bug: flat -> hierarchical (with the BatchNorm bug) (200,000 steps)"
    _plots.plot_curves({"hierarchical-bug": lossi}, tmp_path / "one.png", title,
                       val={"hierarchical-bug": [(1000, 2.5), (2000, 2.2)]})
    names = ["original", "context8", "hierarchical-bug", "hierarchical", "wavenet"]
    _plots.plot_curves({n: lossi for n in names}, tmp_path / "five.png", "five",
                       val={n: [(1000, 2.5)] for n in names})
    one, five = figures
    wrapped = one.axes[0].get_title().splitlines()
    assert len(wrapped) == 2 and all(len(line) <= 64 for line in wrapped)
    ax = five.axes[0]
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == [*names, "train", "validation"]
    legend_box, axes_box = extents[1]
    assert legend_box.y1 < axes_box.y0
