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
from shapekit.debug._detect import detect

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


def _bugged(module, old: str, new: str):
    """``module``'s source with one line changed, run as a file of its own (so detect() reports
    its lines): the corpus code with a bug injected."""
    import linecache
    from pathlib import Path

    source = Path(module.__file__).read_text()
    assert old in source
    source = source.replace(old, new)
    name = f"bugged_{module.__name__}.py"
    linecache.cache[name] = (len(source), None, source.splitlines(True), name)
    namespace = {"__name__": name[:-3]}
    exec(compile(source, name, "exec"), namespace)
    return namespace


@pytest.mark.shapekit(enabled=False)
@pytest.mark.parametrize("module, case, old, new, rule", [
    (corpus_classic, "lecture_wavenet", "                dim = (0, 1)\n",
     "                dim = 0\n", "running-stat-growth"),
    (corpus_classic, "conv1d_text_models", "x = self.emb(idx).transpose(1, 2)",
     "x = self.emb(idx)", "conv1d-channels-last"),
    (corpus_transformers, "hf_bert", "extended = attention_mask[:, None, None, :].to(x.dtype)",
     "extended = attention_mask.to(x.dtype)", "mask-batch-query"),
    (corpus_transformers, "nanogpt", "y = y.transpose(1, 2).contiguous().view(B, T, C)",
     "y = y.contiguous().view(B, T, C)", "view-transposes"),
], ids=["lecture-batchnorm", "conv1d-layout", "bert-mask", "gpt-heads"])
def test_the_same_code_with_a_bug_injected_is_caught(module, case, old, new, rule):
    """The corpus is not silent by accident: one changed line in it is reported."""
    run = _bugged(module, old, new)[case]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with detect():
            run()
    assert rule in {w.message.rule for w in caught if issubclass(w.category, PitfallWarning)}
