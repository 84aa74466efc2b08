"""What shapekit's pytest plugin costs: start-up when installed, and time per test, side by side.

    python benchmarks/bench_pytest_plugin.py [--repeats 5] [--tests 200]

Start-up: a whole ``python -m pytest`` run, in a subprocess, of a one-test file, three ways:
  off      -p no:shapekit (as if shapekit were not installed)
  unused   the plugin loaded by its entry point, no option given
  on       --shapekit --shapekit-packages=pkg (pkg: a small jaxtyping-annotated package)
once for a test file that imports nothing, once for one that imports torch, as a torch project's
tests do (torch is then paid for by every contender, so the difference is the plugin's own).

Per test: ``--tests`` trivial tests (a matmul and a call of an annotated ``pkg`` function each),
timed inside the session from the end of the first test to the end of the last (start-up and the
first test's one-off imports excluded), with the plugin
off, unused, ``--shapekit``, ``--shapekit-packages=pkg`` in the default check mode ("once": the
first call of each shape signature is checked) and with ``SHAPEKIT_CHECKS=always`` (every call
checked), and both options.

Contenders run in interleaved rounds so machine noise hits them alike; medians are reported.
Bytecode is cached (in a temporary PYTHONPYCACHEPREFIX) even where PYTHONDONTWRITEBYTECODE is set,
as on a developer's machine: without a cache every run recompiles, and pytest re-rewrites the
asserts of every module of a package that ships a plugin (shapekit's and jaxtyping's included).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

PACKAGE = '''
import torch
from jaxtyping import Float
from torch import Tensor


def centre(points: Float[Tensor, "batch 3"]) -> Float[Tensor, "batch 3"]:
    return points - points.mean(0)
'''

# Times the tests after the first: the first pays one-off imports (beartype, the detectors).
TIMER = '''
import os
import time

import pytest

ends = []


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    try:
        return (yield)
    finally:
        ends.append(time.perf_counter())


def pytest_sessionfinish(session):
    with open(os.environ["BENCH_LOOP_FILE"], "w") as f:
        f.write(str((ends[-1] - ends[0]) / (len(ends) - 1)))
'''

PER_TEST = '''
import pytest
import torch

from pkg import centre

X = torch.ones(4, 3)


@pytest.mark.parametrize("i", range({n}))
def test_step(i):
    assert (X @ X.T).shape == (4, 4)
    assert centre(X).shape == (4, 3)
'''

STARTUP = {"plain": "def test_one():\n    assert 1 + 1 == 2\n",
           "torch": "import torch\n\n\ndef test_one():\n    assert torch.ones(2).sum() == 2\n"}
OFF, ON = ("-p", "no:shapekit"), ("--shapekit", "--shapekit-packages=pkg")


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())


def pytest_run(folder: Path, *args: str, loop_file: Path | None = None,
               mode: str = "once") -> float:
    """Run pytest in ``folder``; wall seconds, or seconds per test when ``loop_file``."""
    env = dict(os.environ, PYTHONPATH=str(folder), SHAPEKIT_CHECKS=mode,
               PYTHONPYCACHEPREFIX=str(folder.parent / "pycache"))
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # cached bytecode, as on a developer's machine
    if loop_file is not None:
        env["BENCH_LOOP_FILE"] = str(loop_file)
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed in {folder}:\n{done.stdout}{done.stderr}")
    return float(loop_file.read_text()) if loop_file is not None else wall


def side_by_side(contenders: dict[str, object], repeats: int) -> dict[str, float]:
    """Median of each contender (a no-argument callable returning seconds), interleaved."""
    for run in contenders.values():
        run()  # warm the file system cache and the .pyc files
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, run in contenders.items():
            times[name].append(run())
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5, help="interleaved rounds (median reported)")
    p.add_argument("--tests", type=int, default=200, help="trivial tests in the per-test run")
    args = p.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPU(s), {args.repeats} rounds")

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for kind, test in STARTUP.items():
            write(root / kind, {"pkg/__init__.py": PACKAGE, f"test_{kind}.py": test})
        write(root / "loop", {"pkg/__init__.py": PACKAGE, "conftest.py": TIMER,
                              "test_loop.py": PER_TEST.replace("{n}", str(args.tests))})

        startup = {}
        for kind in STARTUP:
            folder = root / kind
            startup[f"{kind}: off"] = lambda f=folder: pytest_run(f, *OFF)
            startup[f"{kind}: unused"] = lambda f=folder: pytest_run(f)
            startup[f"{kind}: on"] = lambda f=folder: pytest_run(f, *ON)
        medians = side_by_side(startup, args.repeats)
        print("\nStart-up: one pytest run of a one-test file (wall time)")
        for name, seconds in medians.items():
            off = medians[name.split(":")[0] + ": off"]
            print(f"  {name:<16} {seconds:7.2f} s  {seconds / off:5.2f}x  ({seconds - off:+.2f} s)")

        folder, loop_file = root / "loop", root / "loop.txt"
        per_test = {
            "off": lambda: pytest_run(folder, *OFF, loop_file=loop_file),
            "unused": lambda: pytest_run(folder, loop_file=loop_file),
            "--shapekit": lambda: pytest_run(folder, "--shapekit", loop_file=loop_file),
            "--shapekit-packages": lambda: pytest_run(folder, ON[1], loop_file=loop_file),
            "  with SHAPEKIT_CHECKS=always": lambda: pytest_run(folder, ON[1],
                                                               loop_file=loop_file, mode="always"),
            "--shapekit + packages": lambda: pytest_run(folder, *ON, loop_file=loop_file),
        }
        medians = side_by_side(per_test, args.repeats)
        print(f"\nPer test: {args.tests} trivial tests (start-up and the first test excluded)")
        off = medians["off"]
        for name, seconds in medians.items():
            print(f"  {name:<30} {seconds * 1e3:7.3f} ms/test  {seconds / off:5.2f}x  "
                  f"({(seconds - off) * 1e3:+.3f} ms/test)")


if __name__ == "__main__":
    main()
