"""Find and run the numbered lesson scripts, each in its own subprocess, in order.

    shapekit lessons              run them all; one line per lesson, then a summary
    shapekit lessons --list       list them
    shapekit lessons 03 batchnorm run the lessons whose names contain 03 or batchnorm
    shapekit lessons --dir PATH   run the lessons in PATH instead (code from PATH runs)

Which lessons: the ones that ship beside the package (a checkout or an editable install). A
``lessons/`` folder in the working directory is never picked up on its own: running a command in
some directory must not execute code found there. ``--dir ./lessons`` (and ``python -m lessons``,
which passes its own folder) are explicit requests. Each lesson runs with torch pinned to one
thread unless ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` say otherwise; while it runs a terminal
shows its elapsed time and latest output line, and ``-v`` streams its output.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

_LESSON = re.compile(r"^\d\d_[a-z0-9_]+\.py$")


def find_lessons_dir(explicit: str | os.PathLike | None = None) -> Path:
    """The ``lessons/`` folder: ``explicit``, else the one beside the package (a checkout or an
    editable install); never ``./lessons`` unless asked for with ``explicit``.

    >>> find_lessons_dir().name
    'lessons'
    """
    if explicit is not None:
        path = Path(explicit)
        if not path.is_dir():
            raise SystemExit(
                f"shapekit lessons: no lessons directory at {path}; fix: pass --dir pointing at "
                "a shapekit checkout's lessons/ folder"
            )
        return path
    path = Path(__file__).resolve().parents[2] / "lessons"  # shapekit/cli/ -> the checkout
    if path.is_dir() and any(_LESSON.match(p.name) for p in path.iterdir()):
        return path
    raise SystemExit(
        f"shapekit lessons: no lessons/ folder beside the installed package ({path}); expected "
        "a checkout or an editable install (pip install -e .); fix: pass --dir "
        "PATH/TO/shapekit/lessons"
    )


def list_lessons(folder: Path) -> list[Path]:
    """The lesson scripts in ``folder``, in order (``01_indexing.py``, ``02_...``).

    >>> [p.name for p in list_lessons(find_lessons_dir())][:1]
    ['01_indexing.py']
    """
    return sorted(p for p in folder.iterdir() if _LESSON.match(p.name))


@dataclass
class Result:
    path: Path
    returncode: int
    seconds: float
    output: str

    @property
    def fallback(self) -> bool:
        """Whether the lesson trained on the offline fallback names (it printed the notice)."""
        from ..lecture import FALLBACK_NOTICE

        return FALLBACK_NOTICE in self.output


ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def lesson_env() -> dict[str, str]:
    """The environment a lesson runs in: the caller's, unbuffered, the Agg backend, and torch on
    one thread unless the user chose (a small model on a shared machine is fastest on one)."""
    chosen = any(name in os.environ for name in ONE_THREAD)  # either one: the user's choice
    return {**({} if chosen else ONE_THREAD), **os.environ, "PYTHONUNBUFFERED": "1",
            "MPLBACKEND": "Agg"}


def run_lesson(path: Path, extra_args: list[str] | None = None, on_line=None) -> Result:
    """Run one lesson as a user would (``python lessons/NN_topic.py``) and capture its output;
    ``on_line(line)`` is called with each line of output as it arrives."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, str(path), *(extra_args or [])], stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, env=lesson_env(), cwd=path.parent.parent,
    )
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if on_line is not None:
                on_line(line.rstrip("\n"))
        proc.wait()
    except BaseException:  # Ctrl-C: the lesson gets it too; do not leave it running
        proc.kill()
        proc.wait()
        raise
    finally:
        proc.stdout.close()
    return Result(path, proc.returncode, time.perf_counter() - start, "".join(lines))


class _Progress:
    """While a lesson runs: on a terminal, its elapsed time and latest line, redrawn in place;
    with ``verbose``, every line as it comes; otherwise nothing until it ends."""

    def __init__(self, stream, name: str, verbose: bool) -> None:
        self.stream, self.name, self.verbose = stream, name, verbose
        self.live = not verbose and getattr(stream, "isatty", lambda: False)()
        self.start = time.perf_counter()
        self.width = shutil.get_terminal_size().columns

    def line(self, text: str) -> None:
        if self.verbose:
            print(_indent(text) if text.strip() else "    |", file=self.stream, flush=True)
        elif self.live and text.strip():
            seconds = time.perf_counter() - self.start
            status = f"  {self.name:<32} {seconds:5.0f}s  {text.strip()}"
            print("\r" + status[: self.width - 1].ljust(self.width - 1), end="", file=self.stream,
                  flush=True)

    def clear(self) -> None:
        if self.live:
            print("\r" + " " * (self.width - 1) + "\r", end="", file=self.stream, flush=True)


def run_all(paths: list[Path], *, verbose: bool = False, stream=None) -> int:
    """Run ``paths`` in order, print one line each and a summary; the number that failed."""
    stream = stream or sys.stdout
    failed, fallback = [], []
    total = time.perf_counter()
    for path in paths:
        progress = _Progress(stream, path.stem, verbose)
        if verbose:
            print(f"  {path.stem}", file=stream, flush=True)
        elif not progress.live:
            print(f"  {path.stem:<32} ", end="", file=stream, flush=True)
        result = run_lesson(path, on_line=progress.line)
        progress.clear()
        ok = result.returncode == 0
        if progress.live or verbose:
            print(f"  {path.stem:<32} ", end="", file=stream)
        note = "  (fallback names)" if result.fallback else ""
        print(f"{'ok  ' if ok else 'FAIL'} {result.seconds:6.1f}s{note}", file=stream, flush=True)
        if not ok and not verbose:
            print(_indent(result.output), file=stream)
        if not ok:
            failed.append(path.stem)
        if result.fallback:
            fallback.append(path.stem)
    seconds = time.perf_counter() - total
    passed = len(paths) - len(failed)
    print(f"{passed} passed, {len(failed)} failed in {seconds:.1f}s", file=stream)
    for name in failed:
        print(f"  failed: {name}  (rerun: python lessons/{name}.py)", file=stream)
    if fallback:
        print(f"note: {', '.join(fallback)} trained on the offline fallback names of the `names` "
              "package, not makemore's names.txt, so their losses differ from the lecture's; "
              "fix: set SHAPEKIT_NAMES=/path/to/names.txt, or go online", file=stream)
    return len(failed)


def _indent(text: str) -> str:
    return "\n".join("    | " + line for line in text.rstrip().splitlines())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "names", nargs="*", help="run only lessons whose file name contains one of these"
    )
    parser.add_argument("--list", action="store_true", help="list the lessons and exit")
    parser.add_argument("-v", "--verbose", action="store_true", help="show every lesson's output")
    parser.add_argument("--dir", metavar="DIR",
                        help="run the lessons in DIR (default: the ones shipped beside the "
                        "package; a ./lessons folder is used only when named here)")


def run(args: argparse.Namespace) -> int:
    paths = list_lessons(find_lessons_dir(args.dir))
    if args.names:
        paths = [p for p in paths if any(n in p.name for n in args.names)]
        if not paths:
            raise SystemExit(
                f"shapekit lessons: no lesson matches {' '.join(args.names)}; "
                "fix: see 'shapekit lessons --list'"
            )
    if args.list:
        for path in paths:
            print(f"{path.stem:<32} {_title(path)}")
        return 0
    return 1 if run_all(paths, verbose=args.verbose) else 0


def _title(path: Path) -> str:
    """The first line of the lesson's module docstring."""
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip().strip('"').strip()
        if line and not line.startswith("#"):
            return line
    return ""
