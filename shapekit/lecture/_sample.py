"""Sampling names from a trained model, the lecture's loop."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..checking import DataError
from ._data import itos

__all__ = ["sample"]


@torch.no_grad()
def sample(
    model: torch.nn.Module, n: int, *, block_size: int, seed: int | None = None,
    generator: torch.Generator | None = None, max_length: int = 100,
) -> list[str]:
    """Sample ``n`` names: start from ``block_size`` dots, feed ``torch.tensor([context])`` ``(1,
    block_size)``, draw the next character from ``softmax(logits)`` ``(1, 27)``, stop at ``'.'``.

    The model is put in eval mode (BatchNorm on one example needs its running statistics) and left
    in the mode it was in. Draws come from ``generator``, else a generator seeded with ``seed``,
    else torch's global generator as in the lecture. ``max_length`` stops a model that never
    predicts ``'.'``.

    >>> import torch
    >>> from shapekit.lecture._models import build_model
    >>> names = sample(build_model("wavenet"), 3, block_size=8, seed=1)
    >>> len(names), all(set(name) <= set("abcdefghijklmnopqrstuvwxyz") for name in names)
    (3, True)
    """
    if generator is None and seed is not None:
        generator = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    try:
        out = []
        for _ in range(n):
            chars = []
            context = [0] * block_size
            while len(chars) < max_length:
                logits = model(torch.tensor([context]))  # (1, block_size) -> (1, 27)
                probs = F.softmax(logits, dim=1)
                if not torch.isfinite(probs).all():  # else torch.multinomial fails obscurely
                    raise DataError(
                        "the model predicts NaN or infinite probabilities after "
                        f"{''.join(chars)!r}; expected finite logits (27,); training diverged;"
                        " fix: train it again with a smaller --lr"
                    )
                ix = torch.multinomial(probs, num_samples=1, generator=generator).item()
                context = context[1:] + [ix]  # noqa: RUF005
                if ix == 0:
                    break
                chars.append(itos[ix])
            out.append("".join(chars))
        return out
    finally:
        model.train(was_training)
