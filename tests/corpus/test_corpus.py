"""Real model code, written the way the public repositories write it, run for a few steps under
``detect(strict=True)``: correct code must stay silent (no PitfallWarning, no ShapeError) and no
detector may fail on it. Grows with every rule.
"""

from __future__ import annotations

import warnings

import corpus_classic
import corpus_transformers
import pytest
import torch

from shapekit import PitfallWarning
from shapekit._detect import detect

CASES = corpus_classic.CASES + corpus_transformers.CASES


@pytest.fixture(autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.mark.shapekit(enabled=False)  # this test opens its own strict block
@pytest.mark.parametrize("case", CASES, ids=lambda f: f.__name__)
def test_correct_model_code_runs_silent_under_strict_detect(case):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with detect(strict=True) as block:
            case()
    assert block.findings == []
    ours = [str(w.message) for w in caught
            if issubclass(w.category, PitfallWarning) or "shapekit" in str(w.message)]
    assert ours == []
