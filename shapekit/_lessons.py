"""Find and run the numbered lesson scripts, each in its own subprocess, in order.

    shapekit lessons              run them all; one line per lesson, then a summary
    shapekit lessons --list       list them
    shapekit lessons 03 batchnorm run the lessons whose names contain 03 or batchnorm
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

_LESSON = re.compile(r"^\d\d_[a-z0-9_]+\.py$")


def find_lessons_dir(explicit: str | os.PathLike | None = None) -> Path:
    """The ``lessons/`` folder: ``explicit``, else ``./lessons``, else the one beside the package
    (an editable install of a checkout).

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
    for path in (Path.cwd() / "lessons", Path(__file__).resolve().parents[1] / "lessons"):
        if path.is_dir() and any(_LESSON.match(p.name) for p in path.iterdir()):
            return path
    raise SystemExit(
        "shapekit lessons: no lessons/ folder found here or beside the installed package; "
        "fix: run from a shapekit checkout, or pass --dir PATH/TO/lessons"
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


def run_lesson(path: Path, extra_args: list[str] | None = None) -> Result:
    """Run one lesson as a user would (``python lessons/NN_topic.py``) and capture its output."""
    start = time.perf_counter()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "MPLBACKEND": "Agg"}
    proc = subprocess.run(
        [sys.executable, str(path), *(extra_args or [])],
        capture_output=True, text=True, env=env, cwd=path.parent.parent,
    )
    return Result(path, proc.returncode, time.perf_counter() - start, proc.stdout + proc.stderr)


def run_all(paths: list[Path], *, verbose: bool = False, stream=None) -> int:
    """Run ``paths`` in order, print one line each and a summary; the number that failed."""
    stream = stream or sys.stdout
    failed = []
    total = time.perf_counter()
    for path in paths:
        print(f"  {path.stem:<32} ", end="", file=stream, flush=True)
        result = run_lesson(path)
        ok = result.returncode == 0
        print(f"{'ok  ' if ok else 'FAIL'} {result.seconds:6.1f}s", file=stream, flush=True)
        if verbose or not ok:
            print(_indent(result.output), file=stream)
        if not ok:
            failed.append(path.stem)
    seconds = time.perf_counter() - total
    passed = len(paths) - len(failed)
    print(f"{passed} passed, {len(failed)} failed in {seconds:.1f}s", file=stream)
    for name in failed:
        print(f"  failed: {name}  (rerun: python lessons/{name}.py)", file=stream)
    return len(failed)


def _indent(text: str) -> str:
    return "\n".join("    | " + line for line in text.rstrip().splitlines())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "names", nargs="*", help="run only lessons whose file name contains one of these"
    )
    parser.add_argument("--list", action="store_true", help="list the lessons and exit")
    parser.add_argument("-v", "--verbose", action="store_true", help="show every lesson's output")
    parser.add_argument("--dir", help="the lessons folder (default: ./lessons or the checkout's)")


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
