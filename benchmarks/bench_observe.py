"""What observing costs (``pytest --shapekit-infer``, ``shapekit.observe``), side by side.

    python benchmarks/bench_observe.py [--repeats 5] [--steps 200]

Test suite: the annotate tests' example project (``tests/annotate_fixtures/project``: a small
package and its tests), run whole in a subprocess, ``python -m pytest`` plain against
``python -m pytest --shapekit-infer=mypkg``; wall time, start-up included, as a user sees it.

Training step: the lecture's hierarchical model written as plain classes in a package (every
layer's ``__call__`` observed: 15 calls a step), ``--steps`` SGD steps of batch 32, plain against
inside ``shapekit.observe(packages=[...])``; CPU time of this thread.

Contenders run in interleaved rounds so machine noise hits them alike; the ratio within each
round is taken, then the median over rounds is printed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROJECT = ROOT / "tests" / "annotate_fixtures" / "project"
LAYERS = ROOT / "tests" / "_lecture_classes.py"


def suite_times(repeats: int) -> list[float]:
    """Ratios (with --shapekit-infer / plain) of whole test-suite runs, one per round."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    ratios = []
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / "project"
        shutil.copytree(PROJECT, project, ignore=shutil.ignore_patterns("__pycache__", ".shapekit"))

        def run(*extra: str) -> float:
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "pytest", "-q", *extra], cwd=project, env=env,
                           check=True, capture_output=True)
            return time.perf_counter() - start

        run()  # bytecode written, caches warm
        for i in range(repeats):
            if i % 2:
                observed, plain = run("--shapekit-infer=mypkg"), run()
            else:
                plain, observed = run(), run("--shapekit-infer=mypkg")
            ratios.append(observed / plain)
            print(f"  suite round {i}: plain {plain:.2f}s, observed {observed:.2f}s")
    return ratios


def step_times(repeats: int, steps: int) -> list[float]:
    """Ratios (observed / plain) of CPU time for ``steps`` training steps, one per round."""
    import torch
    import torch.nn.functional as F

    import shapekit

    torch.set_num_threads(1)
    tmp = tempfile.mkdtemp()
    (Path(tmp) / "lecturepkg").mkdir()
    shutil.copy(LAYERS, Path(tmp) / "lecturepkg" / "__init__.py")
    sys.path.insert(0, tmp)
    import lecturepkg

    torch.manual_seed(42)
    model = lecturepkg.wavenet()
    params = model.parameters()
    X = torch.randint(0, 27, (20_000, 8))
    Y = torch.randint(0, 27, (20_000,))

    def train() -> float:
        start = time.thread_time()
        for _ in range(steps):
            ix = torch.randint(0, X.shape[0], (32,))
            loss = F.cross_entropy(model(X[ix]), Y[ix])
            for p in params:
                p.grad = None
            loss.backward()
            with torch.no_grad():
                for p in params:
                    p -= 0.01 * p.grad
        return time.thread_time() - start

    def observed() -> float:
        with shapekit.observe(packages=["lecturepkg"]):
            return train()

    train()
    ratios = []
    for i in range(repeats):
        if i % 2:
            o, p = observed(), train()
        else:
            p, o = train(), observed()
        ratios.append(o / p)
        print(f"  step round {i}: plain {p / steps * 1e3:.3f} ms/step, observed "
              f"{o / steps * 1e3:.3f} ms/step")
    sys.path.remove(tmp)
    return ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds (median)")
    parser.add_argument("--steps", type=int, default=200, help="training steps per round")
    args = parser.parse_args()
    suite = statistics.median(suite_times(args.repeats))
    step = statistics.median(step_times(args.repeats, args.steps))
    print(f"test suite, --shapekit-infer / plain: {suite:.2f}x (median of {args.repeats} rounds)")
    print(f"training step, observe() / plain:     {step:.2f}x (median of {args.repeats} rounds)")


if __name__ == "__main__":
    main()
