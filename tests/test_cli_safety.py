"""The ``shapekit`` command as people really use it: run from any directory, twice at once, killed,
piped, misused. Nothing outside the installed package runs; one writer per run directory; every
failure is one line and exit 2; SIGTERM saves like Ctrl-C.

The commands run in a subprocess, from a working directory full of planted code, as a user types
them (the console script; ``python -m shapekit`` too).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from _lecture import names_path, one_thread  # noqa: F401 (one_thread: autouse fixture)

from shapekit.cli._main import main
from shapekit.lecture._runlock import LOCK, run_lock

ROOT = Path(__file__).resolve().parents[1]
BESIDE = Path(sys.executable).with_name("shapekit")
SHAPEKIT = [str(BESIDE)] if BESIDE.exists() else [sys.executable, "-m", "shapekit"]
# Module names the package (or torch, safetensors, matplotlib) might look for: each, if imported
# or run, appends its name to the marker file.
PLANTED = ["lecture_bug", "_lecture_bug", "shapekit_lecture_bug", "torch", "safetensors",
           "matplotlib", "numpy", "rich", "einops", "jaxtyping", "beartype", "names",
           "sitecustomize", "usercustomize"]


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> str:
    """The first 300 names of names.txt: every command's path, in a fraction of the time."""
    path = tmp_path_factory.mktemp("data") / "names300.txt"
    path.write_text("".join(names_path().read_text().splitlines(keepends=True)[:300]))
    return str(path)


@pytest.fixture(autouse=True)
def small_names_by_default(small, monkeypatch):
    monkeypatch.setenv("SHAPEKIT_NAMES", small)


def env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1",
            **extra}


def cli(*args: str, cwd: Path | None = None, command=None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*(command or SHAPEKIT), *args], capture_output=True, text=True,
                          timeout=300, env=env(), cwd=cwd, **kw)


def assert_one_line_error(proc: subprocess.CompletedProcess, command: str, *parts: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if not line.startswith("shapekit: ")]
    assert len(lines) == 1 and lines[0].startswith(f"shapekit {command}: "), proc.stderr
    assert "; fix: " in lines[0], lines[0]
    for part in parts:
        assert part in lines[0], lines[0]


# ---- 1. nothing from the working directory runs ----------------------------------------------


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> tuple[Path, Path]:
    """A working directory whose every plausible module (there and in lessons/) writes a marker,
    plus a lesson script that does; returns (the directory, the marker file)."""
    cwd = tmp_path_factory.mktemp("planted")
    marker = cwd / "MARKER"
    code = textwrap.dedent(f"""\
        with open({str(marker)!r}, "a") as f:
            f.write(__name__ + " " + __file__ + "\\n")
        class BatchNorm1d:  # what a loader of the lecture's buggy layer would take
            pass
        BuggyBatchNorm1d = BatchNorm1d
        """)
    for folder in (cwd, cwd / "lessons"):
        folder.mkdir(exist_ok=True)
        for name in PLANTED:
            (folder / f"{name}.py").write_text(code)
        (folder / "__init__.py").write_text(code)
    (cwd / "lessons" / "01_indexing.py").write_text(code)  # a lesson of the installed name
    (cwd / "lessons" / "00_planted.py").write_text(code)
    # the plant is live: anything that imports from the working directory trips it
    subprocess.run([sys.executable, "-c", "import lessons.lecture_bug"], cwd=cwd, check=True)
    assert "lessons.lecture_bug" in marker.read_text()
    marker.unlink()
    return cwd, marker


@pytest.fixture(scope="module")
def bug_run(tmp_path_factory, small) -> Path:
    """A 2-step run of the row with the lecture's buggy BatchNorm, trained from a clean cwd."""
    out = tmp_path_factory.mktemp("bug") / "run"
    proc = cli("train", "--model", "hierarchical-bug", "--steps", "2", "--out", str(out),
               "--data", small)
    assert proc.returncode == 0, proc.stderr
    return out


def test_planted_code_never_runs(planted, bug_run, tmp_path):
    cwd, marker = planted
    sample = ("sample", "--checkpoint", str(bug_run), "-n", "3", "--seed", "1")
    batches = [  # side by side where they are independent: each start is mostly importing torch
        [(SHAPEKIT, sample),
         (SHAPEKIT, ("train", "--model", "hierarchical-bug", "--steps", "2", "--out",
                     str(tmp_path / "a"))),
         (SHAPEKIT, ("trace", "--model", "hierarchical-bug")),
         (SHAPEKIT, ("lessons", "--list")),
         # `python -m` puts the working directory on sys.path; shapekit takes it off again
         ([sys.executable, "-m", "shapekit"], sample)],
        [(SHAPEKIT, ("train", "--resume", str(tmp_path / "a"), "--steps", "3"))],
    ]  # reproduce trains and resumes through the same code as train
    for batch in batches:
        procs = [(args, subprocess.Popen([*command, *args], stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, text=True, env=env(), cwd=cwd))
                 for command, args in batch]
        for args, proc in procs:
            out, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, (args, err)
            if args[0] == "lessons":  # the installed lessons, not ./lessons
                assert "00_planted" not in out and "01_indexing" in out
        assert not marker.exists(), marker.read_text()


def test_lessons_from_the_working_directory_need_dir(planted):
    cwd, marker = planted
    proc = cli("lessons", "--list", "--dir", "lessons", cwd=cwd)  # asked for: listed, not run
    assert proc.returncode == 0 and "00_planted" in proc.stdout
    assert not marker.exists()


# ---- 2. one writer per run, SIGTERM saves -----------------------------------------------------


def test_a_second_writer_is_refused_naming_the_holder(tmp_path, capsys, small):
    run = tmp_path / "run"
    with run_lock(run, command="test"):
        assert (run / LOCK).read_text().split()[0] == str(os.getpid())
        code = main(["train", "--steps", "2", "--out", str(run), "--data", small])
        err = capsys.readouterr().err
        assert code == 2
        assert err == (f"shapekit train: {run}: another process (pid {os.getpid()}) is writing "
                       f"this run; expected one writer per run directory (lock {run / LOCK}); "
                       f"fix: wait for pid {os.getpid()} to finish (or stop it), or pass another "
                       "--out\n")
        code = main(["train", "--resume", str(run)])
        assert code == 2 and f"(pid {os.getpid()}) is writing this run" in capsys.readouterr().err
    assert not (run / LOCK).exists()
    assert list(run.iterdir()) == []  # the refused writers wrote nothing


def test_a_lock_left_by_a_dead_process_is_taken_over(tmp_path, small):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    run = tmp_path / "run"
    run.mkdir()
    (run / LOCK).write_text(f"{dead} shapekit train\n")
    assert main(["train", "--model", "1", "--steps", "2", "--out", str(run), "--data",
                 small]) == 0
    assert sorted(p.name for p in run.iterdir()) == [
        "config.json", "loss.png", "metrics.json", "model.safetensors"]


def test_two_trainings_into_one_directory_at_once(tmp_path):
    out = tmp_path / "same"
    procs = [subprocess.Popen(
        [*SHAPEKIT, "train", "--model", "1", "--steps", "50", "--seed", seed, "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())
        for seed in ("42", "7")]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    for p in procs:
        p.stdout.close()
        p.stderr.close()
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    err = next(err for code, err in results if code == 2)
    # it started while the other trained (the lock), or after it had finished (not empty)
    assert re.search(r"another process \(pid \d+\) is writing this run|the directory is not "
                     "empty", err), err
    seed = json.loads((out / "config.json").read_text())["seed"]
    winner = next(s for (code, _), s in zip(results, (42, 7), strict=True) if code == 0)
    assert seed == winner


def test_sigterm_saves_a_checkpoint_and_says_how_to_resume(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [*SHAPEKIT, "train", "--model", "2", "--steps", "100000", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())
    for line in proc.stdout:  # the first progress line is printed after step 0
        if "/ 100000" in line:
            break
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert re.search(rf"shapekit train: stopped by SIGTERM after step [\d,]+ of 100,000; "
                     rf"checkpoint saved to {re.escape(str(out / 'model.safetensors'))}; "
                     rf"continue with: shapekit train --resume {re.escape(str(out))}", err), err
    metrics = json.loads((out / "metrics.json").read_text())
    assert not metrics["finished"] and metrics["steps_done"] >= 1
    assert not (out / LOCK).exists()


# ---- 3. every failure one line, exit 2, a fix made of flags ----------------------------------


@pytest.mark.parametrize("words", [1, 3, 5])
def test_too_little_data_is_refused_before_anything_is_written(tmp_path, capsys, words):
    data = tmp_path / "few.txt"
    data.write_text("".join(f"{w}\n" for w in ["emma", "ava", "mia", "zoe", "ivy"][:words]))
    code = main(["train", "--data", str(data), "--out", str(tmp_path / "run"), "--steps", "2"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"shapekit train: --data {data}: has {words} name(s), too few for the "
                          "lecture's 80/10/10 split")
    assert "expected at least 6 names; fix: pass --data with a longer file" in err
    assert not (tmp_path / "run").exists()


def test_a_bad_names_file_gets_a_command_line_fix(tmp_path, capsys):
    data = tmp_path / "names.txt"
    data.write_text("Emma\nava\n")
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err == (f"shapekit train: names file {data} line 1: 'Emma' has upper-case letters; "
                   "expected lower-case a-z only; fix: lower-case the file (tr A-Z a-z)\n")


def test_an_unwritable_out_is_one_line(tmp_path, capsys, small):
    blocker = tmp_path / "file"
    blocker.write_text("")
    code = main(["train", "--steps", "2", "--out", str(blocker / "run"), "--data",
                 small])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"shapekit train: {blocker / 'run'}: cannot be written (")
    assert "fix: pass an --out in a writable place" in err


@pytest.mark.parametrize("args, message", [
    (["train", "--threads", "0"], "argument --threads: expected a positive integer, got 0; fix: "
     "e.g. 1"),
    (["train", "--batch-size", "x"], "argument --batch-size: expected an integer, got 'x'; fix: "
     "e.g. 32"),
    (["sample", "--checkpoint", "x", "-n", "0"], "argument -n: expected a positive integer, got "
     "0; fix: e.g. 20"),
    (["train", "--device", "tpu"], "argument --device: 'tpu' is not a device shapekit trains on; "
     "expected one of cpu"),
])
def test_flag_values_suggest_a_value_that_fits(capsys, args, message):
    try:
        code = main(args)
    except SystemExit as e:
        code = e.code
    assert code == 2 and message in capsys.readouterr().err


def test_cuda_when_there_is_none(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(SystemExit):
        main(["train", "--device", "cuda"])
    assert ("argument --device: 'cuda' is not available on this machine; expected one of cpu"
            in capsys.readouterr().err)


def test_sample_given_the_checkpoint_file(capsys, bug_run):
    code = main(["sample", "--checkpoint", str(bug_run / "model.safetensors")])
    assert code == 2
    assert capsys.readouterr().err == (
        f"shapekit sample: --checkpoint {bug_run / 'model.safetensors'}: is a file; expected a run "
        "directory written by 'shapekit train' (with config.json and model.safetensors); fix: pass "
        f"the directory that holds it, --checkpoint {bug_run}\n")


def test_a_closed_pipe_is_not_a_traceback():
    proc = subprocess.Popen([*SHAPEKIT, "lessons", "--list"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env())
    proc.stdout.close()  # `| head` that already exited
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=60) in (0, 141) and "Traceback" not in err and err == "", err


# ---- 5. extend a run, the device, file modes, completion --------------------------------------


def test_resume_with_more_steps_extends_a_finished_run(tmp_path, capsys, small):
    run, data = tmp_path / "run", small
    assert main(["train", "--model", "1", "--steps", "3", "--out", str(run), "--data", data]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--steps", "5", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "training original for 5 steps" in out and "5 steps" in out.splitlines()[-1]
    config = json.loads((run / "config.json").read_text())
    assert config["steps"] == 5 and config["extended_from"] == [3] and config["decay_at"] == 2
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["finished"] and metrics["steps_done"] == 5 and metrics["device"] == "cpu"
    assert main(["train", "--resume", str(run), "--steps", "4"]) == 2
    assert "or pass more than 5 to extend the run" in capsys.readouterr().err
    # an extension killed before it saved anything: config.json has 7 steps, metrics say 5, done
    config["steps"], config["extended_from"] = 7, [3, 5]
    (run / "config.json").write_text(json.dumps(config))
    assert main(["train", "--resume", str(run)]) == 0
    assert json.loads((run / "metrics.json").read_text())["steps_done"] == 7


def test_a_zero_step_resume_reports_no_rate(tmp_path, capsys, small):
    run, data = tmp_path / "run", small
    assert main(["train", "--model", "1", "--steps", "2", "--out", str(run), "--data", data]) == 0
    assert json.loads((run / "metrics.json").read_text())["steps_per_second"] > 0
    (run / "metrics.json").unlink()  # as if killed after the last checkpoint, before the metrics
    capsys.readouterr()
    assert main(["train", "--resume", str(run)]) == 0
    assert "steps/s" not in capsys.readouterr().out  # 0 steps in ~0 s is no rate
    assert json.loads((run / "metrics.json").read_text())["steps_per_second"] is None


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_run_files_share_one_mode(tmp_path, umask, small):
    old = os.umask(umask)
    try:
        assert main(["train", "--model", "1", "--steps", "2", "--out", str(tmp_path / "r"),
                     "--data", small]) == 0
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "r").iterdir()}
    assert modes == dict.fromkeys(
        ["config.json", "loss.png", "metrics.json", "model.safetensors"], 0o666 & ~umask)


def test_bash_completion(tmp_path, capsys):
    assert main(["completion", "bash"]) == 0
    script = tmp_path / "complete.bash"
    script.write_text(capsys.readouterr().out)

    def complete(*words: str) -> list[str]:
        line = " ".join(words)
        shell = (f'source {script}; COMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; _shapekit; '
                 'printf "%s\\n" "${COMPREPLY[@]}"')
        done = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        return done.stdout.split()

    assert complete("shapekit", "tr") == ["train", "trace"]
    assert "--resume" in complete("shapekit", "train", "--re")
    assert complete("shapekit", "train", "--model", "hier") == ["hierarchical-bug", "hierarchical"]
    assert complete("shapekit", "train", "--checks", "o") == ["once", "off"]
    assert complete("shapekit", "train", "--device", "c") == ["cpu", "cuda"]
    (tmp_path / "runs").mkdir()
    assert complete("shapekit", "sample", "--checkpoint", "ru") == ["runs"]
    assert main(["completion", "zsh"]) == 0
    zsh = capsys.readouterr().out
    assert "bashcompinit" in zsh and "complete -o default -F _shapekit shapekit" in zsh


# ---- the signal flag training runs under --------------------------------------------------------


def test_sigterm_and_sigint_set_the_flag_and_handlers_come_back():
    from shapekit.lecture._train import SigintFlag

    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        for signum in (signal.SIGINT, signal.SIGTERM):
            before = signal.getsignal(signum)
            with SigintFlag() as flag:
                os.kill(os.getpid(), signum)
            assert flag.raised and flag.signum == signum
            assert signal.getsignal(signum) is before
    finally:
        signal.signal(signal.SIGINT, inherited)


def test_an_ignored_sigint_stays_ignored():
    """`shapekit train &` in a script starts with SIGINT ignored: training keeps ignoring it."""
    from shapekit.lecture._train import SigintFlag

    inherited = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with SigintFlag() as flag:
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGINT)
        assert not flag.raised and signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, inherited)
