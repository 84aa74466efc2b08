"""``shapekit.trace`` against ``torchinfo.summary``, side by side, with the same columns.

    pip install -e '.[bench]'   # torchinfo, for this benchmark only
    python benchmarks/bench_trace.py [--threads 1] [--repeats 15]

Models (each run whole: build the table, then render it as text, as a user sees it):
  lecture   the lecture's 76K WaveNet model (shapekit.nn), batch 32 of 8 characters
  gpt       a small GPT (2 blocks, n_embd 64, 4 heads, block 32), batch 8
  cnn       a small CNN (3 conv + pool blocks, then 2 Linear), batch 16 of 3x32x32 images
Column sets: "shapes" (input, output, params; torchinfo's input_size, output_size, num_params)
and "macs" (adding multiply-adds and kernel shapes; torchinfo's mult_adds, kernel_size). Both
tools show every depth. Ratios are trace / torchinfo within each interleaved round, medians over
rounds (below 1.0: trace is faster).

Then the Llama-shaped 7B config (32 layers, d_model 4096; 6.74 B parameters, 25 GiB of float32
weights) built under ``torch.device("meta")`` and traced with FLOPs and memory: wall time and
peak RSS, each in a fresh process, for trace and for torchinfo on the same meta model.
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import _common
import torch
from torch import nn

import shapekit
from shapekit import nn as sk

try:
    import torchinfo
except ImportError:  # pragma: no cover - a clear message instead of a traceback
    raise SystemExit("bench_trace.py needs torchinfo: pip install -e '.[bench]'") from None

TESTS = Path(__file__).resolve().parents[1] / "tests"  # the Llama config lives with the tests


class Attention(nn.Module):
    def __init__(self, n_embd: int, n_head: int) -> None:
        super().__init__()
        self.n_head = n_head
        self.c_attn = nn.Linear(n_embd, 3 * n_embd)
        self.c_proj = nn.Linear(n_embd, n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(C // self.n_head)  # (B, nh, T, T)
        mask = torch.tril(torch.ones(T, T, dtype=torch.bool))
        y = att.masked_fill(~mask, float("-inf")).softmax(-1) @ v  # (B, nh, T, hs)
        return self.c_proj(y.transpose(1, 2).reshape(B, T, C))


class Block(nn.Module):
    def __init__(self, n_embd: int, n_head: int) -> None:
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(n_embd), nn.LayerNorm(n_embd)
        self.attn = Attention(n_embd, n_head)
        self.mlp = nn.Sequential(nn.Linear(n_embd, 4 * n_embd), nn.GELU(),
                                 nn.Linear(4 * n_embd, n_embd))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, vocab: int = 65, block_size: int = 32, n_embd: int = 64,
                 n_head: int = 4, n_layer: int = 2) -> None:
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, n_embd), nn.Embedding(block_size, n_embd)
        self.blocks = nn.ModuleList([Block(n_embd, n_head) for _ in range(n_layer)])
        self.ln_f = nn.LayerNorm(n_embd)
        self.lm_head = nn.Linear(n_embd, vocab, bias=False)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        T = idx.shape[1]
        x = self.wte(idx) + self.wpe(torch.arange(T))  # (B, T, C)
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.ln_f(x))  # (B, T, vocab)


def cnn() -> nn.Module:
    layers: list[nn.Module] = []
    channels = 3
    for width in (16, 32, 64):
        layers += [nn.Conv2d(channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                   nn.MaxPool2d(2)]
        channels = width
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(64 * 4 * 4, 128), nn.ReLU(),
                         nn.Linear(128, 10))


COLUMN_SETS = {
    "shapes": (("input", "output", "params"), ("input_size", "output_size", "num_params")),
    "macs": (("input", "output", "params", "kernel", "macs"),
             ("input_size", "output_size", "num_params", "kernel_size", "mult_adds")),
}


def contenders(model: nn.Module, x: torch.Tensor, columns: str) -> dict:
    ours, theirs = COLUMN_SETS[columns]

    def run_trace() -> None:
        str(shapekit.trace(model, x, columns=ours))

    def run_torchinfo() -> None:
        str(torchinfo.summary(model, input_data=x, col_names=theirs, depth=100, verbose=0))

    return {"trace": run_trace, "torchinfo": run_torchinfo}


_META = """
import resource, sys, time
import torch
torch.set_num_threads(1)
from _llama import Config, Llama
start = time.perf_counter()
with torch.device("meta"):
    model = Llama(Config.llama_7b())
built = time.perf_counter()
if sys.argv[1] == "trace":
    import shapekit
    t = shapekit.trace(model, input_size=(1, 2048), dtypes=[torch.long], device="meta",
                       columns=["input", "output", "params", "macs", "memory"])
    assert not t.failed, t.error
    total = t.total_params
    str(t)
else:
    import torchinfo
    s = torchinfo.summary(model, input_data=torch.zeros(1, 2048, dtype=torch.long, device="meta"),
                          col_names=("input_size", "output_size", "num_params", "mult_adds"),
                          depth=100, verbose=0, device="meta")
    total = s.total_params
    str(s)
done = time.perf_counter()
print(built - start, done - built, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, total)
"""


def meta_run(tool: str) -> tuple[float, float, float, int]:
    run = subprocess.run([sys.executable, "-c", textwrap.dedent(_META), tool], cwd=TESTS,
                         capture_output=True, text=True, timeout=600)
    if run.returncode != 0:
        raise SystemExit(f"{tool} on the 7B meta config failed:\n{run.stderr[-2000:]}")
    build, traced, rss_kib, total = run.stdout.split()
    return float(build), float(traced), int(rss_kib) / 1024, int(total)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    p.add_argument("--repeats", type=int, default=15, help="interleaved rounds")
    p.add_argument("--meta-repeats", type=int, default=3, help="fresh processes per 7B tool")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    models = {
        "lecture": (_common.wavenet(sk), torch.randint(0, 27, (32, 8))),
        "gpt": (GPT(), torch.randint(0, 65, (8, 32))),
        "cnn": (cnn(), torch.randn(16, 3, 32, 32)),
    }
    print(f"trace vs torchinfo {torchinfo.__version__}  (torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s), {args.repeats} interleaved rounds, medians)")
    print(f"  {'model':<8} {'columns':<7} {'trace ms':>9} {'torchinfo ms':>13} {'ratio':>6}")
    for name, (model, x) in models.items():
        for columns in COLUMN_SETS:
            times = _common.side_by_side(contenders(model, x, columns), args.repeats,
                                         clock=time.thread_time)
            print(f"  {name:<8} {columns:<7} {_common.median(times, 'trace') * 1e3:9.2f} "
                  f"{_common.median(times, 'torchinfo') * 1e3:13.2f} "
                  f"{_common.ratio(times, 'trace', 'torchinfo'):6.2f}")
    print("\nLlama-shaped 7B config on the meta device (fresh process each; medians of "
          f"{args.meta_repeats}; build = constructing the model under torch.device('meta'))")
    for tool in ("trace", "torchinfo"):
        runs = [meta_run(tool) for _ in range(args.meta_repeats)]
        build = sorted(r[0] for r in runs)[len(runs) // 2]
        traced = sorted(r[1] for r in runs)[len(runs) // 2]
        rss = sorted(r[2] for r in runs)[len(runs) // 2]
        print(f"  {tool:<10} build {build:5.2f} s  summary {traced:5.2f} s  "
              f"peak RSS {rss:6.0f} MiB  params {runs[0][3]:,}")


if __name__ == "__main__":
    main()
