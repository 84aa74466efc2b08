"""Start-up costs: ``import shapekit`` against ``import torch``, and the whole lessons run.

    python benchmarks/bench_startup.py [--repeats 5] [--skip-lessons]

Targets: import shapekit within +0.5 s of import torch; ``python -m lessons`` <= 60 s.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _seconds(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, cwd=ROOT, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--skip-lessons", action="store_true", help="only measure the imports")
    args = p.parse_args()

    contenders = {
        "import torch": [sys.executable, "-c", "import torch"],
        "import shapekit": [sys.executable, "-c", "import shapekit"],
        # what a user's first line really costs: the checked layers load torch, jaxtyping, beartype
        "from shapekit import nn": [sys.executable, "-c", "from shapekit import nn"],
    }
    _seconds(contenders["import shapekit"])  # warm the file cache for both
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(args.repeats):
        for name, argv in contenders.items():
            times[name].append(_seconds(argv))
    torch_s = statistics.median(times["import torch"])
    shapekit_s = statistics.median(times["import shapekit"])
    nn_s = statistics.median(times["from shapekit import nn"])
    print(f"\nStart-up (median of {args.repeats}, each in a fresh interpreter)")
    print(f"  import torch                        {torch_s:6.2f} s")
    print(f"  import shapekit (lazy: no torch)    {shapekit_s:6.2f} s")
    print(f"  from shapekit import nn             {nn_s:6.2f} s")
    print(f"  nn - torch (target <= +0.5 s)       {nn_s - torch_s:+6.2f} s")
    if not args.skip_lessons:
        seconds = _seconds([sys.executable, "-m", "lessons"])
        print(f"  python -m lessons (target <= 60 s)  {seconds:6.1f} s")


if __name__ == "__main__":
    main()
