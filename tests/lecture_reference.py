"""The lecture's training run in plain torch, written the lecture's way: the oracle for shapekit.

    python tests/lecture_reference.py --steps 200000 --threads 1

The lecture's hand-written layer classes (not torch.nn modules, not shapekit: they are in
``tests/_lecture_classes.py``, as the notebook writes them), its data pipeline and its loop, from
makemore part 5. With 200,000 steps it prints the lecture's final figures for
the 76K model (train 1.7690, val 1.9937 on a CPU build of torch). ``tests/test_train.py`` checks
shapekit's loop against ``train_reference`` step by step, and benchmarks/bench_training.py
times it.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from _lecture_classes import Sequential, wavenet

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "names.txt"


def lecture_splits(path: str | Path = DEFAULT_DATA, block_size: int = 8):
    """The lecture's data: shuffle with random.seed(42), split 80/10/10, build (X, Y) per split.

    Returns ``(Xtr, Ytr), (Xdev, Ydev), (Xte, Yte)``; X ``(N, block_size)``, Y ``(N,)``.
    """
    words = Path(path).read_text().splitlines()
    chars = sorted(set("".join(words)))
    stoi = {s: i + 1 for i, s in enumerate(chars)}
    stoi["."] = 0

    def build_dataset(words):
        X, Y = [], []
        for w in words:
            context = [0] * block_size
            for ch in w + ".":
                ix = stoi[ch]
                X.append(context)
                Y.append(ix)
                context = context[1:] + [ix]  # crop and append  # noqa: RUF005
        return torch.tensor(X), torch.tensor(Y)

    random.seed(42)
    random.shuffle(words)
    n1 = int(0.8 * len(words))
    n2 = int(0.9 * len(words))
    return build_dataset(words[:n1]), build_dataset(words[n1:n2]), build_dataset(words[n2:])


def build_lecture_model(n_embd: int = 24, n_hidden: int = 128, vocab_size: int = 27):
    """The lecture's hierarchical model under ``torch.manual_seed(42)``; returns (model, params)."""
    torch.manual_seed(42)  # seed rng for reproducibility
    model = wavenet(n_embd, n_hidden, vocab_size)  # built and initialised as the notebook does
    parameters = model.parameters()
    return model, parameters


def train_reference(
    train, dev, max_steps: int = 200000, *, n_embd: int = 24, n_hidden: int = 128,
    lossi: list | None = None, verbose: bool = False,
) -> tuple[float, float]:
    """Seed, build, train ``max_steps`` steps and evaluate exactly as the lecture; returns
    ``(train_loss, val_loss)``. ``train``/``dev`` are ``(X, Y)`` pairs; per-step log10 losses are
    appended to ``lossi`` when given."""
    model = lecture_loop(*train, max_steps, n_embd=n_embd, n_hidden=n_hidden, lossi=lossi,
                         verbose=verbose)
    return split_loss(model, *train), split_loss(model, *dev)


def lecture_loop(
    Xtr, Ytr, max_steps: int = 200000, *, n_embd: int = 24, n_hidden: int = 128,
    lossi: list | None = None, verbose: bool = False,
) -> Sequential:
    """Seed, build and train as the lecture; returns the model with its layers in eval mode.
    lr 0.1, then 0.01 for the last quarter (from step 150,000 of 200,000)."""
    model, parameters = build_lecture_model(n_embd, n_hidden)
    lecture_steps(model, parameters, Xtr, Ytr, max_steps, lossi=lossi, verbose=verbose)
    for layer in model.layers:
        layer.training = False
    return model


def lecture_steps(model, parameters, Xtr, Ytr, max_steps, *, lossi=None, verbose=False) -> None:
    """The lecture's training loop itself, ``max_steps`` steps of it."""
    lossi = [] if lossi is None else lossi
    batch_size = 32
    decay_at = max_steps * 3 // 4
    for i in range(max_steps):
        ix = torch.randint(0, Xtr.shape[0], (batch_size,))
        Xb, Yb = Xtr[ix], Ytr[ix]  # batch X,Y
        logits = model(Xb)
        loss = F.cross_entropy(logits, Yb)  # loss function
        for p in parameters:
            p.grad = None
        loss.backward()
        lr = 0.1 if i < decay_at else 0.01  # step learning rate decay
        for p in parameters:
            p.data += -lr * p.grad
        if verbose and i % 10000 == 0:
            print(f"{i:7d}/{max_steps:7d}: {loss.item():.4f}", flush=True)
        lossi.append(loss.log10().item())


@torch.no_grad()  # this decorator disables gradient tracking
def split_loss(model, x, y) -> float:
    logits = model(x)
    return F.cross_entropy(logits, y).item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200000)
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    train, dev, _ = lecture_splits(args.data)
    start = time.perf_counter()
    tr, va = train_reference(train, dev, args.steps, verbose=True)
    seconds = time.perf_counter() - start
    print(f"train {tr:.4f}  val {va:.4f}  ({args.steps} steps in {seconds:.0f}s, "
          f"{args.steps / seconds:.0f} steps/s, {args.threads} thread(s))")


if __name__ == "__main__":
    main()
