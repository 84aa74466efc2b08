"""Tests for shapekit.lecture._conv: the hierarchical model as dilated convolutions, checked
against the window model run position by position (the oracle), plus the lesson that needs the
names data.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import shapekit
from shapekit import DataError, nn
from shapekit.lecture._conv import (
    IGNORE_INDEX,
    ConvWaveNet,
    dilated,
    pad_names,
    to_conv,
    windows_loop,
)
from shapekit.lecture._data import build_dataset, load_names, split_words
from shapekit.lecture._models import build_model

ROOT = Path(__file__).resolve().parents[1]
TOL = 1e-5  # max abs difference allowed in float32
WORDS = ["a", "emma", "olivia", "ava", "isabella", "christopherjohn", "zoe", "mia"]


def trained_ish(row: str = "wavenet", seed: int = 0, steps: int = 30, **kwargs) -> nn.Sequential:
    """A freshly built model after a few SGD steps on random data (so BatchNorm's running
    statistics are far from 0 and 1), with O(1) logits, in eval mode."""
    torch.manual_seed(seed)
    model = build_model(row, **kwargs)
    params = list(model.parameters())
    for _ in range(steps):
        X, Y = torch.randint(0, 27, (32, 8)), torch.randint(0, 27, (32,))
        loss = F.cross_entropy(model(X), Y)
        for p in params:
            p.grad = None
        loss.backward()
        for p in params:
            p.data += -0.1 * p.grad
    with torch.no_grad():  # undo the lecture's x0.1 so logits are O(1) and 1e-5 is a tight bound
        model.layers[-1].weight *= 10
    return model.eval()


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


# -- equality with the window model ----------------------------------------------------------------


@pytest.mark.parametrize(("row", "seed"), [("wavenet", 0), ("wavenet", 1), ("hierarchical", 2)])
def test_conv_equals_the_window_model_at_every_position(row, seed):
    model = trained_ish(row, seed)
    X, _ = pad_names(WORDS, 8)  # (8, 8 + 15)
    with torch.no_grad():
        conv_logits = to_conv(model)(X)
        loop_logits = windows_loop(model, X)
    assert conv_logits.shape == loop_logits.shape == (len(WORDS), 16, 27)
    assert conv_logits.dtype == torch.float32
    assert max_diff(conv_logits, loop_logits) <= TOL
    # O(1) logits that differ from position to position: a swapped tap or pair would show
    assert loop_logits.abs().max() > 1.0
    assert loop_logits.std(dim=1).mean() > 0.1


def test_each_position_is_the_lecture_example_for_that_context():
    # The oracle independent of windows_loop: build_dataset's rows, fed to the window model.
    model = trained_ish("wavenet", seed=3)
    conv = to_conv(model)
    for word in ["emma", "christopherjohn", "a"]:
        X, _ = pad_names([word], 8)
        Xd, _ = build_dataset([word], 8)  # (len(word) + 1, 8)
        with torch.no_grad():
            logits = conv(X)[0]  # (len(word) + 1, 27)
            expected = model(Xd)
        assert logits.shape == expected.shape == (len(word) + 1, 27)
        assert max_diff(logits, expected) <= TOL


def test_batchnorm_is_folded_with_its_running_statistics_and_affine():
    model = trained_ish("hierarchical", seed=4, steps=2)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # statistics and affine far from their defaults, per channel
        for bn in (m for m in model.layers if isinstance(m, nn.BatchNorm1d)):
            bn.running_mean.copy_(torch.randn(bn.dim, generator=g) * 2)
            bn.running_var.copy_(torch.rand(bn.dim, generator=g) * 4 + 0.1)
            bn.gamma.copy_(torch.randn(bn.dim, generator=g))
            bn.beta.copy_(torch.randn(bn.dim, generator=g))
    X, _ = pad_names(WORDS, 8)
    with torch.no_grad():
        assert max_diff(to_conv(model)(X), windows_loop(model, X)) <= TOL


def test_linear_bias_is_folded_too():
    torch.manual_seed(5)
    model = nn.Sequential([
        nn.Embedding(27, 6),
        nn.FlattenConsecutive(2), nn.Linear(12, 16, bias=True), nn.BatchNorm1d(16), nn.Tanh(),
        nn.FlattenConsecutive(2), nn.Linear(32, 16, bias=True), nn.BatchNorm1d(16), nn.Tanh(),
        nn.Linear(16, 27),
    ]).eval()  # block_size 4
    with torch.no_grad():
        for layer in model.layers:
            if isinstance(layer, nn.Linear):
                layer.bias.normal_()
        X, _ = pad_names(WORDS, 4)
        conv = to_conv(model)
        assert conv.block_size == 4
        assert max_diff(conv(X), windows_loop(model, X)) <= TOL


def test_structure_dilations_and_weights_are_copied():
    model = trained_ish("wavenet", seed=6, steps=3)
    conv = to_conv(model)
    assert isinstance(conv, ConvWaveNet) and isinstance(conv, torch.nn.Module)
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.dilation) for c in conv.convs] == [
        (24, 128, (2,), (1,)), (128, 128, (2,), (2,)), (128, 128, (2,), (4,))]
    assert (conv.block_size, conv.vocab_size) == (8, 27)
    X, _ = pad_names(WORDS, 8)
    with torch.no_grad():
        before = conv(X)
        for p in model.parameters():  # a later change to the model does not reach the conversion
            p.add_(1.0)
        assert torch.equal(conv(X), before)


def test_float64_model_converts_in_float64():
    model = trained_ish("hierarchical", seed=7, steps=3).double()
    X, _ = pad_names(WORDS, 8)
    with torch.no_grad():
        out = to_conv(model)(X)
        assert out.dtype == torch.float64
        assert max_diff(out, windows_loop(model, X)) <= 1e-12


# -- the dev-set loss, both ways -------------------------------------------------------------------


def _dev_words() -> list[str]:
    """names.txt's dev split where the file is beside the checkout, else the offline fallback's."""
    real = Path(os.environ.get("SHAPEKIT_NAMES") or ROOT.parent / "shared/data/names.txt")
    names = load_names(real) if real.is_file() else load_names(offline=True, quiet=True)
    return split_words(names.words)[1]


def test_dev_loss_is_the_same_from_the_conv_form_the_loop_and_the_dataset():
    dev = _dev_words()
    model = trained_ish("hierarchical", seed=8)  # the 22K row: the same check, 4x less work
    X, Y = pad_names(dev, 8)
    Xdev, Ydev = build_dataset(dev, 8)
    assert (Y != IGNORE_INDEX).sum().item() == Ydev.shape[0]  # the same examples, counted once
    with torch.no_grad():
        conv_logits = to_conv(model)(X)
        conv_loss = F.cross_entropy(conv_logits.flatten(0, 1), Y.flatten(), ignore_index=-1)
        loop_logits = windows_loop(model, X)
        loop_loss = F.cross_entropy(loop_logits.flatten(0, 1), Y.flatten(), ignore_index=-1)
        dataset_loss = F.cross_entropy(model(Xdev), Ydev)  # the lecture's split_loss
    assert max_diff(conv_logits, loop_logits) <= TOL
    assert abs(conv_loss.item() - dataset_loss.item()) <= 1e-5
    assert abs(loop_loss.item() - dataset_loss.item()) <= 1e-5


# -- pad_names and windows_loop --------------------------------------------------------------------


def test_pad_names_windows_and_targets_are_build_datasets_examples():
    X, Y = pad_names(WORDS, 8)
    longest = max(map(len, WORDS))
    assert X.shape == (len(WORDS), 8 + longest) and Y.shape == (len(WORDS), longest + 1)
    assert X.dtype == Y.dtype == torch.long
    for i, word in enumerate(WORDS):
        Xd, Yd = build_dataset([word], 8)
        n = len(word) + 1
        windows = torch.stack([X[i, t : t + 8] for t in range(n)])  # (n, 8)
        assert torch.equal(windows, Xd)
        assert torch.equal(Y[i, :n], Yd)
        assert (Y[i, n:] == IGNORE_INDEX).all()


def test_pad_names_refuses_bad_input():
    with pytest.raises(ValueError, match=r"got the string 'emma'.*fix: pad_names\(\['emma'\], 8\)"):
        pad_names("emma", 8)
    with pytest.raises(ValueError, match="expected at least one name, got none"):
        pad_names([], 8)
    with pytest.raises(ValueError, match=r"block_size: an int >= 1.*got 0"):
        pad_names(["emma"], 0)
    with pytest.raises(DataError, match="'E' is not in the vocabulary"):
        pad_names(["Emma"], 8)


def test_windows_loop_infers_block_size_and_works_for_flat_models():
    torch.manual_seed(9)
    model = build_model("original").eval()  # flat, block_size 3
    X, _ = pad_names(["emma", "ava"], 3)
    Xd, _ = build_dataset(["emma"], 3)
    with torch.no_grad():
        out = windows_loop(model, X)  # (2, 5, 27)
        assert out.shape == (2, 5, 27)
        assert max_diff(out[0], model(Xd)) <= 1e-6  # batch sizes differ: not bit-equal
    with pytest.raises(ValueError, match=r"block_size.*fix: pass block_size=8"):
        windows_loop(nn.Sequential([nn.Embedding(27, 4)]), X)
    with pytest.raises(shapekit.ShapeError, match=r"length >= 3 = block_size, got \(2, 2\)"):
        windows_loop(model, X[:, :2])


# -- errors ----------------------------------------------------------------------------------------


def test_training_mode_is_refused():
    model = trained_ish("wavenet", steps=1).train()
    with pytest.raises(ValueError, match=r"expected eval mode .* got model in training mode; "
                       r"fix: call model\.eval\(\) first"):
        to_conv(model)
    model.eval()
    model.layers[7].train()  # one BatchNorm left in training mode is enough to be wrong
    with pytest.raises(ValueError, match=r"got layers\[7\] in training mode"):
        to_conv(model)


def test_flat_models_are_refused():
    for row, n in [("context8", 8), ("original", 3)]:
        with pytest.raises(ValueError, match=rf"layers\[1\] FlattenConsecutive expected n=2, got "
                           rf"n={n}: a flat model .*fix: convert the lecture's hierarchical model"):
            to_conv(build_model(row).eval())


def test_other_group_sizes_are_refused():
    model = nn.Sequential([
        nn.Embedding(27, 4),
        nn.FlattenConsecutive(4), nn.Linear(16, 8, bias=False), nn.BatchNorm1d(8), nn.Tanh(),
        nn.FlattenConsecutive(2), nn.Linear(16, 8, bias=False), nn.BatchNorm1d(8), nn.Tanh(),
        nn.Linear(8, 27),
    ]).eval()
    with pytest.raises(ValueError, match=r"layers\[1\] FlattenConsecutive expected n=2, got n=4: "
                       "the convolution form has kernel 2"):
        to_conv(model)


def _buggy_batchnorm() -> type:
    from shapekit.lecture._buggy_batchnorm import BuggyBatchNorm1d

    return BuggyBatchNorm1d


def test_the_lectures_buggy_batchnorm_is_refused():
    model = trained_ish("hierarchical-bug", steps=2, batchnorm=_buggy_batchnorm())
    with pytest.raises(ValueError, match=r"layers\[3\] expected shapekit\.nn\.BatchNorm1d .*got "
                       r"BuggyBatchNorm1d with running_mean \(1, 4, 68\); fix: train the model "
                       r"with shapekit\.nn\.BatchNorm1d.*statistics per time step"):
        to_conv(model)


def test_other_layers_are_refused_by_position():
    with pytest.raises(ValueError, match=r"model expected a shapekit\.nn\.Sequential .*got "
                       r"torch\.nn\.modules\.container\.Sequential; fix: convert the lecture's"):
        to_conv(torch.nn.Sequential(torch.nn.Embedding(27, 4)))
    layers = build_model("wavenet").eval().layers
    layers[4] = torch.nn.ReLU()
    with pytest.raises(ValueError, match=r"layers\[4\] expected shapekit\.nn\.Tanh .*got ReLU"):
        to_conv(nn.Sequential(layers).eval())
    with pytest.raises(ValueError, match=r"expected Embedding, .*4k \+ 2 layers, got 5 layers"):
        to_conv(nn.Sequential(build_model("wavenet").layers[:5]).eval())


def test_short_or_float_input_gets_a_shape_error():
    conv = to_conv(build_model("wavenet").eval())
    with pytest.raises(shapekit.ShapeError, match=r"length >= 8 = block_size .*got \(2, 5\)\n"
                       r".*fix: prepend 8 zeros \('\.'\) to every name: X, Y = pad_names"):
        conv(torch.zeros(2, 5, dtype=torch.long))
    with pytest.raises(shapekit.ShapeError, match="integer"):
        conv(torch.zeros(2, 10))


# -- the lesson that needs the data, on a fresh offline machine ------------------------------------


def test_lesson_07_runs_offline_on_a_fresh_machine_and_says_so(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "SHAPEKIT_NAMES"}
    env.update(
        SHAPEKIT_OFFLINE="1",
        XDG_CACHE_HOME=str(tmp_path / "cache"),  # empty: no cached copy
        HOME=str(tmp_path / "home"),
        PYTHONUNBUFFERED="1",
        MPLBACKEND="Agg",
        # one thread: on a busy shared runner two OpenMP threads per process slow batch-32
        # training many times over; the lesson's behaviour does not depend on it
        OMP_NUM_THREADS="1",
    )
    proc = subprocess.run(
        [sys.executable, "lessons/07_hierarchical_model.py"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "names from fallback" in proc.stdout
    assert "using the offline fallback" in proc.stdout
    assert "so results will differ from the lecture's table" in proc.stderr  # load_names' notice
    assert "(B, 8) -> (B, 8, 24) -> (B, 4, 48) -> ... -> (B, 27)" in proc.stdout
    assert re.search(r"^train \d\.\d{4}  val \d\.\d{4}$", proc.stdout, re.MULTILINE)
    assert not (tmp_path / "cache" / "shapekit" / "names.txt").exists()  # nothing downloaded


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("channels", "hidden", "dilation", "length"),
                         [(24, 128, 1, 9), (128, 128, 2, 7), (128, 128, 4, 5), (3, 5, 3, 4)])
def test_dilated_is_torchs_conv1d(dtype, channels, hidden, dilation, length):
    torch.manual_seed(dilation)
    conv = torch.nn.Conv1d(channels, hidden, kernel_size=2, dilation=dilation, dtype=dtype)
    h = torch.randn(6, length, channels, dtype=dtype)  # (B, L, C)
    with torch.no_grad():
        got = dilated(conv, h)
        expected = conv(h.transpose(1, 2)).transpose(1, 2)  # torch's kernel, channels first
    assert got.shape == (6, length - dilation, hidden) and got.dtype == dtype
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    conv.bias = None
    with torch.no_grad():
        torch.testing.assert_close(dilated(conv, h), conv(h.transpose(1, 2)).transpose(1, 2),
                                   rtol=1e-5, atol=1e-5)


def test_dilated_gradients_are_torchs_conv1d_gradients():
    torch.manual_seed(3)
    conv = torch.nn.Conv1d(4, 6, kernel_size=2, dilation=2)
    h = torch.randn(3, 9, 4, requires_grad=True)
    upstream = torch.randn(3, 7, 6)
    dilated(conv, h).backward(upstream)
    ours = [h.grad.clone(), conv.weight.grad.clone(), conv.bias.grad.clone()]
    h.grad, conv.weight.grad, conv.bias.grad = None, None, None
    conv(h.transpose(1, 2)).transpose(1, 2).backward(upstream)
    for a, b in zip(ours, [h.grad, conv.weight.grad, conv.bias.grad], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
