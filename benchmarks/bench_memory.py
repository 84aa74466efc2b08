"""Peak memory (RSS) of a training run, measured on the real ``shapekit train`` command.

    python benchmarks/bench_memory.py [--steps 200000] [--data PATH]

The full lecture recipe is 200,000 steps (about 10-15 minutes on one core); ``--steps`` shortens it
(memory does not grow with steps beyond the per-step loss list). For scale, it also measures a bare
``import torch``, and it prints the run's own losses and speed. Target: a full training run stays
under 300 MB RSS.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path


def peak_rss_mb(argv: list[str]) -> float:
    """Peak RSS in MB of one child process (run alone, so RUSAGE_CHILDREN is just this one)."""
    code = (
        "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, "
        "stdout=subprocess.DEVNULL); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)"
    )
    out = subprocess.run([sys.executable, "-c", code, *argv], check=True, capture_output=True,
                         text=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=200_000)
    p.add_argument("--data", help="names file (default: shapekit's resolution order)")
    args = p.parse_args()
    torch_mb = peak_rss_mb([sys.executable, "-c", "import torch"])
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        cmd = [sys.executable, "-m", "shapekit", "train", "--steps", str(args.steps),
               "--out", str(run), "--threads", "1"]
        if args.data:
            cmd += ["--data", args.data]
        train_mb = peak_rss_mb(cmd)
        metrics = json.loads((run / "metrics.json").read_text())
    print(f"\nPeak memory (RSS), {args.steps:,} training steps of the 76K model")
    print(f"  import torch alone                  {torch_mb:7.0f} MB")
    print(f"  shapekit train (target < 300 MB)    {train_mb:7.0f} MB")
    losses = "  ".join(f"{k} {metrics[k]:.4f}" for k in ("train_loss", "val_loss")
                       if metrics.get(k) is not None)
    print(f"  the run itself: {losses}  {metrics['steps_per_second']:,.0f} steps/s  "
          f"(data {metrics['data_source']})")


if __name__ == "__main__":
    main()
