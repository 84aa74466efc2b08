"""What ``shapekit.explain()`` and ``shapekit.detect()`` cost around a training step, side by side.

    python benchmarks/bench_debug.py [--threads 1] [--repeats 7] [--steps 200]

Two models, each step entirely inside the block (forward, loss, backward, update):
  the lecture's 76K model from shapekit.nn, batch 32, SGD;
  a small GPT written as nanoGPT writes it (torch.nn layers, 2 blocks, n_embd 64, block 32,
  batch 16, causal masked attention, AdamW).
Contenders:
  plain     no block
  explain   each step inside ``with explain():``
  detect    each step inside ``with detect():``
  mode      each step inside a bare pass-through TorchFunctionMode: what a mode that sees every
            torch call costs. ``detect()`` needs a mode but lets the shapekit.nn layers that
            "once" trusts run unwatched, so it can cost less; ``explain()`` needs none (it
            catches at ``__exit__``)
Targets (issue 15): explain/plain <= 1.05, detect/plain <= 1.3.
"""

from __future__ import annotations

import functools
import math
import time
import warnings
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

import _common
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from shapekit import PitfallWarning, nn
from shapekit.debug._detect import detect
from shapekit.debug._explain import explain


class PassThrough(TorchFunctionMode):
    """Runs every torch call unchanged: the floor cost of any per-op function mode."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        return func(*args, **(kwargs or {}))


def steps(model: torch.nn.Module, X: torch.Tensor, Y: torch.Tensor, n: int,
          block: Callable[[], AbstractContextManager]) -> None:
    """``n`` training steps, each one entirely inside ``block()``."""
    params = list(model.parameters())
    for _ in range(n):
        with block():
            ix = torch.randint(0, X.shape[0], (32,))
            loss = F.cross_entropy(model(X[ix]), Y[ix])
            for p in params:
                p.grad = None
            loss.backward()
            for p in params:
                p.data += -0.1 * p.grad


class Attention(torch.nn.Module):
    def __init__(self, n_embd: int, n_head: int, block_size: int) -> None:
        super().__init__()
        self.c_attn = torch.nn.Linear(n_embd, 3 * n_embd)
        self.c_proj = torch.nn.Linear(n_embd, n_embd)
        self.n_head, self.n_embd = n_head, n_embd
        self.register_buffer("bias", torch.tril(torch.ones(block_size, block_size))
                             .view(1, 1, block_size, block_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
        att = att.masked_fill(self.bias[:, :, :T, :T] == 0, float("-inf"))
        y = F.softmax(att, dim=-1) @ v  # (B, nh, T, hs)
        return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))


class Block(torch.nn.Module):
    def __init__(self, n_embd: int, n_head: int, block_size: int) -> None:
        super().__init__()
        self.ln_1, self.ln_2 = torch.nn.LayerNorm(n_embd), torch.nn.LayerNorm(n_embd)
        self.attn = Attention(n_embd, n_head, block_size)
        self.mlp = torch.nn.Sequential(torch.nn.Linear(n_embd, 4 * n_embd), torch.nn.GELU(),
                                       torch.nn.Linear(4 * n_embd, n_embd))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(torch.nn.Module):
    """nanoGPT's model at toy size."""

    def __init__(self, vocab: int = 65, block_size: int = 32, n_layer: int = 2, n_head: int = 4,
                 n_embd: int = 64) -> None:
        super().__init__()
        self.wte = torch.nn.Embedding(vocab, n_embd)
        self.wpe = torch.nn.Embedding(block_size, n_embd)
        self.h = torch.nn.ModuleList([Block(n_embd, n_head, block_size) for _ in range(n_layer)])
        self.ln_f = torch.nn.LayerNorm(n_embd)
        self.lm_head = torch.nn.Linear(n_embd, vocab, bias=False)
        self.wte.weight = self.lm_head.weight  # weight tying

    def forward(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        t = idx.size(1)
        x = self.wte(idx) + self.wpe(torch.arange(0, t, dtype=torch.long))
        for block in self.h:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


def gpt_steps(model: GPT, optimizer: torch.optim.Optimizer, data: torch.Tensor, n: int,
              block: Callable[[], AbstractContextManager]) -> None:
    """``n`` nanoGPT training steps (batch 16 of 32 tokens), each one inside ``block()``."""
    for _ in range(n):
        with block():
            ix = torch.randint(len(data) - 32, (16,))
            x = torch.stack([data[i:i + 32] for i in ix])
            y = torch.stack([data[i + 1:i + 33] for i in ix])
            loss = model(x, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()


def main() -> None:
    args = _common.parser(__doc__.splitlines()[0]).parse_args()
    torch.set_num_threads(args.threads)
    X, Y = _common.fake_data()
    model = _common.wavenet(nn)
    warnings.simplefilter("error", PitfallWarning)  # the lecture's step is correct code: silent
    run = functools.partial(steps, model, X, Y, args.steps)
    contenders = {
        "plain": functools.partial(run, nullcontext),
        "explain()": functools.partial(run, explain),
        "detect()": functools.partial(run, detect),
        "bare TorchFunctionMode (reference)": functools.partial(run, PassThrough),
    }
    times = _common.side_by_side(contenders, args.repeats, clock=time.thread_time)
    _common.report(
        "explain() / detect() around a training step of the 76K model",
        times,
        args.steps,
        [("explain / plain   (target <= 1.05)", "explain()", "plain"),
         ("detect / plain    (target <= 1.3)", "detect()", "plain"),
         ("bare mode / plain", "bare TorchFunctionMode (reference)", "plain"),
         ("detect / bare mode (detect's own work)", "detect()",
          "bare TorchFunctionMode (reference)")],
    )
    torch.manual_seed(1337)
    gpt = GPT()
    optimizer = torch.optim.AdamW(gpt.parameters(), lr=1e-3)
    data = torch.randint(0, 65, (10_000,))
    n = max(1, args.steps // 4)  # a GPT step is about 4x the lecture model's
    run = functools.partial(gpt_steps, gpt, optimizer, data, n)
    contenders = {
        "plain": functools.partial(run, nullcontext),
        "explain()": functools.partial(run, explain),
        "detect()": functools.partial(run, detect),
        "bare TorchFunctionMode (reference)": functools.partial(run, PassThrough),
    }
    times = _common.side_by_side(contenders, args.repeats, clock=time.thread_time)
    _common.report(
        "explain() / detect() around a training step of a small GPT (nanoGPT's code)",
        times,
        n,
        [("explain / plain   (target <= 1.05)", "explain()", "plain"),
         ("detect / plain    (target <= 1.3)", "detect()", "plain"),
         ("bare mode / plain", "bare TorchFunctionMode (reference)", "plain"),
         ("detect / bare mode (detect's own work)", "detect()",
          "bare TorchFunctionMode (reference)")],
    )


if __name__ == "__main__":
    main()
