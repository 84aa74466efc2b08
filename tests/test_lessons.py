"""The lessons, run as a user runs them: ``python lessons/NN_topic.py`` and ``python -m lessons``.

Every lesson asserts its own claims, so exit code 0 means every claim held. Each lesson is also
checked for one line of its output, so a lesson that silently stops early cannot pass.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LESSONS = sorted((ROOT / "lessons").glob("[0-9][0-9]_*.py"))
TIMEOUT = 300  # seconds per subprocess: generous, the machine may be shared

# One line each lesson must print (lessons added later only need to exit 0 and print something).
KEY_LINES = {
    "01_indexing": "model(Xtr[[7]]    ) -> (1, 27)",
    "02_matmul_last_axis": "(4, 1, 5, 80) @ (3, 80, 200) -> (4, 3, 5, 200)",
    "03_flatten_consecutive": "b (n t) c -> b t (n c)    [[0, 4], [1, 5], [2, 6], [3, 7]]",
    "04_batchnorm_btc": "running_mean after 1 step: (1, 4, 68)",
    "05_batchnorm_layouts": "torch: running_mean should contain 4 elements not 68",
    "06_batchnorm_one_example": "torch:    Expected more than 1 value per channel when training",
    "09_finding_bugs": "PitfallWarning [view-transposes]",
    "10_annotate": "ShapeError: Attention expected x: (batch, time, 32 = n_embd), got (2, 5, 16)",
}


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", "MPLBACKEND": "Agg"}


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args), cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=TIMEOUT
    )


def _shapekit_command() -> list[str]:
    """The ``shapekit`` console script of this interpreter's environment, as a user types it."""
    beside = Path(sys.executable).with_name("shapekit")
    found = str(beside) if beside.exists() else shutil.which("shapekit")
    return [found] if found else [sys.executable, "-m", "shapekit"]


def test_the_pitfall_lessons_exist() -> None:
    assert set(KEY_LINES) <= {p.stem for p in LESSONS}


@pytest.mark.parametrize("path", LESSONS, ids=[p.stem for p in LESSONS])
def test_lesson_runs(path: Path) -> None:
    proc = _run(sys.executable, str(path.relative_to(ROOT)))
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{path.name} failed:\n{output}"
    assert proc.stdout.strip(), f"{path.name} printed nothing"
    key = KEY_LINES.get(path.stem)
    if key is not None:
        assert key in proc.stdout, f"{path.name} did not print {key!r}:\n{proc.stdout}"


@pytest.mark.parametrize("path", LESSONS, ids=[p.stem for p in LESSONS])
def test_lesson_layout(path: Path) -> None:
    """A title line, the command that runs it, and percent-format cells."""
    text = path.read_text(encoding="utf-8")
    docstring = ast.get_docstring(ast.parse(text))
    assert docstring, f"{path.name} has no module docstring"
    title = docstring.splitlines()[0]
    assert title.strip() and title.rstrip().endswith("."), title
    assert f"python lessons/{path.name}" in docstring
    assert re.search(r"^# %% \[markdown\]$", text, re.MULTILINE)
    assert re.search(r"^# %%$", text, re.MULTILINE)
    assert "names.txt" not in text  # lessons use synthetic data, no download


def test_python_m_lessons_list() -> None:
    proc = _run(sys.executable, "-m", "lessons", "--list")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert [line.split()[0] for line in lines] == [p.stem for p in LESSONS]
    assert any(
        line.startswith("01_indexing") and line.endswith("Xtr[7] drops the batch axis, "
                                                        "Xtr[[7]] keeps it.")
        for line in lines
    ), proc.stdout


def test_python_m_lessons_runs_one() -> None:
    proc = _run(sys.executable, "-m", "lessons", "01")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"^  01_indexing\s+ok ", proc.stdout, re.MULTILINE), proc.stdout
    assert re.search(r"^1 passed, 0 failed in [0-9.]+s$", proc.stdout, re.MULTILINE), proc.stdout


def test_shapekit_lessons_unknown_name() -> None:
    proc = _run(*_shapekit_command(), "lessons", "NOPE")
    assert proc.returncode != 0
    assert "no lesson matches NOPE" in proc.stderr
    assert "fix: see 'shapekit lessons --list'" in proc.stderr


# ---- how `shapekit lessons` runs them: one thread, progress, the fallback said -----------------


def _folder(tmp_path: Path, **lessons: str) -> Path:
    folder = tmp_path / "lessons"
    folder.mkdir()
    for name, code in lessons.items():
        (folder / f"{name}.py").write_text(code)
    return folder


def test_lessons_run_on_one_thread_unless_the_user_chose(tmp_path, monkeypatch) -> None:
    from shapekit.cli._cmd_lessons import run_lesson

    code = "import os, torch; print(os.environ['OMP_NUM_THREADS'], torch.get_num_threads())\n"
    path = _folder(tmp_path, **{"01_threads": code}) / "01_threads.py"
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    assert run_lesson(path).output.split() == ["1", "1"]
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert run_lesson(path).output.split() == ["2", "2"]


def test_no_lesson_unpins_the_threads() -> None:
    for path in LESSONS:
        assert "set_num_threads" not in path.read_text(encoding="utf-8"), path.name


def test_progress_while_a_lesson_runs_and_the_fallback_is_said(tmp_path) -> None:
    import io

    from shapekit.cli._cmd_lessons import list_lessons, run_all
    from shapekit.lecture import FALLBACK_NOTICE

    folder = _folder(tmp_path, **{
        "01_steps": "import time\nfor i in range(3):\n    print(f'step {i}'); time.sleep(0.1)\n",
        "02_offline": f"import sys; print('shapekit: ... {FALLBACK_NOTICE} ...', file=sys.stderr)",
    })

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Terminal()
    assert run_all(list_lessons(folder), stream=stream) == 0
    text = stream.getvalue()
    assert re.search(r"\r  01_steps\s+\d+s  step 2", text), text  # redrawn while it ran
    assert re.search(r"\r  02_offline\s+ok\s+[0-9.]+s  \(fallback names\)$", text, re.MULTILINE)
    assert ("note: 02_offline trained on the offline fallback names of the `names` package, not "
            "makemore's names.txt") in text
    verbose = io.StringIO()
    assert run_all(list_lessons(folder)[:1], verbose=True, stream=verbose) == 0
    assert "    | step 0\n    | step 1\n    | step 2\n" in verbose.getvalue()


def test_a_lessons_folder_in_the_working_directory_is_not_run(tmp_path) -> None:
    _folder(tmp_path, **{"00_planted": "raise SystemExit('ran')\n"})
    proc = subprocess.run([*_shapekit_command(), "lessons", "--list"], cwd=tmp_path, env=_env(),
                          capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    assert "00_planted" not in proc.stdout and "01_indexing" in proc.stdout
