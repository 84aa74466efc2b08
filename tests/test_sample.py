"""Tests for shapekit.lecture._sample: the lecture's sampling loop."""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from _lecture import one_thread  # noqa: F401  (autouse fixture)

from shapekit.lecture._data import itos
from shapekit.lecture._models import build_model
from shapekit.lecture._sample import sample


def lecture_loop(model, n: int, block_size: int) -> list[str]:
    """The lecture's cell, verbatim apart from collecting instead of printing."""
    out_names = []
    for _ in range(n):
        out = []
        context = [0] * block_size
        while True:
            logits = model(torch.tensor([context]))
            probs = F.softmax(logits, dim=1)
            ix = torch.multinomial(probs, num_samples=1).item()
            context = context[1:] + [ix]  # noqa: RUF005
            out.append(ix)
            if ix == 0:
                break
        out_names.append("".join(itos[i] for i in out))
    return out_names


def trained_looking_model():
    torch.manual_seed(42)
    model = build_model("wavenet")
    with torch.no_grad():  # make '.' likely enough that names end quickly
        model.layers[-1].bias[0] = 2.0
    return model


def test_equals_the_lectures_loop_with_the_global_generator():
    model = trained_looking_model()
    torch.manual_seed(7)
    ours = sample(model, 10, block_size=8)
    model.eval()
    torch.manual_seed(7)
    want = [name.removesuffix(".") for name in lecture_loop(model, 10, 8)]
    assert ours == want


def test_names_are_lower_case_letters_and_the_seed_repeats_them():
    model = trained_looking_model()
    state = torch.get_rng_state()
    names = sample(model, 8, block_size=8, seed=1)
    assert torch.equal(torch.get_rng_state(), state)  # a seed uses its own generator
    assert len(names) == 8 and all(re.fullmatch(r"[a-z]*", name) for name in names)
    assert sample(model, 8, block_size=8, seed=1) == names
    assert sample(model, 8, block_size=8, seed=2) != names


def test_runs_in_eval_mode_and_restores_the_mode():
    model = trained_looking_model()
    sample(model, 2, block_size=8, seed=0)  # BatchNorm on one example would raise in training
    assert model.training


def test_a_model_that_never_ends_a_name_stops_at_max_length():
    model = build_model("context8")
    with torch.no_grad():
        model.layers[-1].bias[0] = -1e9  # '.' never drawn
    names = sample(model, 2, block_size=8, seed=0, max_length=12)
    assert [len(name) for name in names] == [12, 12]


def test_a_diverged_model_is_a_clear_error_not_torchs():
    import pytest

    from shapekit.checking._errors import DataError

    model = trained_looking_model()
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(3e38)  # finite, but the logits overflow
    with pytest.raises(DataError, match=r"the model predicts NaN or infinite probabilities "
                       r"after ''; expected finite logits \(27,\); training diverged; fix: train "
                       r"it again with a smaller --lr"):
        sample(model, 1, block_size=8, seed=0)
