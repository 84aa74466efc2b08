"""Tests for shapekit.detect(): one class per rule (catches the bug as a new user would write it,
stays silent on the near-miss correct code, strict raises ShapeError, the message names the line,
the shapes, the fix and the docs page), the block's mechanics, and a corpus of correct code that
must run silent.

The oracle for "it is a bug" is arithmetic: each caught example also asserts the wrong result
(an (N, N) loss, a scrambled tensor, NaN) that the warning is about.
"""

from __future__ import annotations

import math
import sys
import warnings

import pytest
import torch
import torch.nn.functional as F
from _lecture import UserBuggyBatchNorm1d, reference
from _lecture_classes import BatchNorm1d as FixedBatchNorm1d  # the lecture's fixed layer
from _lecture_classes import Embedding, Linear, Sequential, Tanh
from _lecture_classes import FlattenConsecutive as LectureFlattenConsecutive
from einops import rearrange, reduce, repeat

from shapekit import PitfallWarning, ShapeError
from shapekit import nn as sk
from shapekit.debug._detect import detect
from shapekit.debug._pitfalls import DOCS_URL, RULES
from shapekit.lecture._models import build_model

HERE = "test_detect.py"
B, T, C, NH = 4, 8, 32, 2


def here() -> int:
    return sys._getframe(1).f_lineno


def findings(fn, *, strict: bool = False) -> list[PitfallWarning]:
    """Run ``fn`` inside detect() and return the PitfallWarnings it raised (warnings recorded)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with detect(strict=strict) as block:
            fn()
    found = [w.message for w in caught if issubclass(w.category, PitfallWarning)]
    assert found == block.findings
    return found


def one(fn, rule: str) -> PitfallWarning:
    found = findings(fn)
    assert [w.rule for w in found] == [rule], [str(w) for w in found]
    return found[0]


def silent(fn) -> None:
    """``fn`` runs under detect() with PitfallWarning as an error: correct code raises nothing."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", PitfallWarning)
        with detect():
            fn()


def strict_raises(fn, rule: str) -> ShapeError:
    with pytest.raises(ShapeError) as caught, detect(strict=True):
        fn()
    assert f"{DOCS_URL}{rule}/" in str(caught.value)
    return caught.value


def assert_message(w: PitfallWarning, rule: str, line: int, *parts: str) -> None:
    text = str(w)
    assert text.startswith(f"tests/{HERE}:{line} "), text
    assert text.endswith(f"\n  docs: {DOCS_URL}{rule}/"), text
    assert "\n  fix: " in text
    for part in parts:
        assert part in text, (part, text)


# --- view-transposes ---------------------------------------------------------------------------


class TestViewTransposes:
    def test_catches_view_that_should_be_a_transpose(self):
        x = torch.randn(B, T, C)
        out = {}

        def bug():
            out["line"] = here() + 1
            out["y"] = x.view(B, C, T)  # meant (B, C, T)

        w = one(bug, "view-transposes")
        assert not torch.equal(out["y"], x.transpose(1, 2))  # the values are scrambled
        assert_message(w, "view-transposes", out["line"], "x.view(B, C, T)",
                       "(4, 8, 32) -> (4, 32, 8)",
                       "fix: move axes with transpose/permute: x.transpose(1, 2)")

    def test_catches_attention_heads_made_with_view_only(self):
        x = torch.randn(B, T, C)
        w = one(lambda: x.view(B, NH, T, C // NH), "view-transposes")
        assert "x.view(4, 8, 2, 16).transpose(1, 2)" in str(w)

    def test_catches_heads_merged_back_without_transposing(self):
        y = torch.randn(B, NH, T, C // NH)
        w = one(lambda: y.reshape(B, T, C), "view-transposes")
        assert "y.transpose(1, 2).reshape(4, 8, 32)" in str(w)

    def test_silent_on_splits_merges_and_the_nanogpt_way(self):
        x = torch.randn(B, T, C)

        def correct():
            q = x.view(B, T, NH, C // NH).transpose(1, 2)  # (B, nh, T, hs)
            y = q.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
            assert torch.equal(y, x)
            x.view(B * T, C).view(B, T, C)
            x.reshape(B, T // 2, 2 * C)  # FlattenConsecutive(2) by hand
            x.view(-1)
            x.view(B, T, C, 1)

        silent(correct)

    def test_silent_when_equal_sizes_make_it_ambiguous(self):
        x = torch.randn(8, 8, 16)  # B == T
        silent(lambda: x.view(8, 8, 4, 4).transpose(1, 2))
        silent(lambda: x.view(8, 8, 16))
        silent(lambda: torch.randn(2, 3, 6).view(6, 2, 3))  # also a merge then a split

    def test_strict_raises(self):
        x = torch.randn(B, T, C)
        err = strict_raises(lambda: x.view(B, C, T), "view-transposes")
        assert err.got == "(4, 8, 32) -> (4, 32, 8)"
        assert err.rule == "view-transposes"


# --- broadcast-n-by-n --------------------------------------------------------------------------


class TestBroadcastNByN:
    def test_catches_predictions_minus_targets(self):
        preds, Yb = torch.randn(32, 1), torch.randn(32)
        out = {}

        def bug():
            out["line"] = here() + 1
            out["loss"] = ((preds - Yb) ** 2).mean()

        w = one(bug, "broadcast-n-by-n")
        assert out["loss"] != ((preds.squeeze(1) - Yb) ** 2).mean()
        assert_message(w, "broadcast-n-by-n", out["line"], "preds - Yb",
                       "preds: (32, 1) and Yb: (32,), broadcast to (32, 32)",
                       "fix: make the shapes equal: preds.squeeze(-1) or Yb.unsqueeze(-1)")

    def test_catches_accuracy_with_eq(self):
        preds, Yb = torch.randn(32, 1), torch.randint(0, 2, (32,))
        one(lambda: ((preds > 0).long() == Yb).float().mean(), "broadcast-n-by-n")

    def test_catches_mse_loss_that_torch_only_warns_about(self):
        preds, Yb = torch.randn(32, 1), torch.randn(32)
        w = one(lambda: F.mse_loss(preds, Yb), "broadcast-n-by-n")  # torch only warns
        assert "inside the loss" in str(w)

    def test_silent_on_outer_products_written_on_purpose(self):
        x = torch.randn(10)
        pts = torch.randn(10, 3)

        def correct():
            x[:, None] - x
            x.unsqueeze(1) - x
            (x[:, None] * 2) - x
            x.view(-1, 1) * x
            ((pts[:, None, :] - pts[None, :, :]) ** 2).sum(-1)
            torch.randn(32, 1).squeeze(1) - torch.randn(32)
            table = torch.rand(5, 5)
            table.sum(1, keepdim=True) * table.sum(0) / table.sum()  # expected counts: outer

        silent(correct)

    def test_strict_raises(self):
        preds, Yb = torch.randn(32, 1), torch.randn(32)
        strict_raises(lambda: preds - Yb, "broadcast-n-by-n")


# --- reduction-broadcast -----------------------------------------------------------------------


class TestReductionBroadcast:
    def test_catches_the_bigram_normalisation_bug(self):
        N = torch.randint(1, 10, (27, 27)).float()
        out = {}

        def bug():
            out["line"] = here() + 1
            out["P"] = N / N.sum(1)

        w = one(bug, "reduction-broadcast")
        assert not torch.allclose(out["P"].sum(1), torch.ones(27))  # rows do not sum to 1
        assert_message(w, "reduction-broadcast", out["line"], "N / N.sum(1)",
                       "N.sum(1) (27,) lined up with axis 0 of N (27, 27)",
                       "fix: keep the reduced axis: N.sum(1, keepdim=True)")

    def test_catches_in_place_division(self):
        P = torch.rand(27, 27)

        def bug():
            nonlocal P
            P /= P.sum(1)

        w = one(bug, "reduction-broadcast")
        assert "P /= P.sum(1)" in str(w)

    def test_silent_when_aligned(self):
        N = torch.randint(1, 10, (27, 27)).float()
        x = torch.randn(4, 5)

        def correct():
            P = N / N.sum(1, keepdim=True)
            assert torch.allclose(P.sum(1), torch.ones(27))
            N / N.sum(1, keepdims=True)  # numpy's spelling, as in makemore
            N / N.sum(0)
            x - x.mean(1, keepdim=True)
            x - x.mean(0)
            x / x.sum(1)[:, None]

        silent(correct)

    def test_strict_raises(self):
        N = torch.rand(27, 27)
        strict_raises(lambda: N / N.sum(1), "reduction-broadcast")


# --- batchnorm-channels-last -------------------------------------------------------------------


class TestBatchnormChannelsLast:
    def test_catches_channels_last_input_when_length_equals_channels(self):
        bn = torch.nn.BatchNorm1d(8)
        x = torch.randn(4, 8, 8)  # (B, L, C) with L == C: torch cannot tell
        out = {}

        def bug():
            out["line"] = here() + 1
            bn(x)

        w = one(bug, "batchnorm-channels-last")
        assert_message(w, "batchnorm-channels-last", out["line"], "bn(x)", "x: (4, 8, 8)",
                       "bn(x.transpose(1, 2)).transpose(1, 2)")

    def test_warns_then_explains_when_torch_raises(self):
        bn = torch.nn.BatchNorm1d(68)
        x = torch.randn(32, 4, 68)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with pytest.raises(ShapeError, match="channels-last input"), detect():
                bn(x)
        assert [w.message.rule for w in caught if issubclass(w.category, PitfallWarning)] == [
            "batchnorm-channels-last"]

    def test_silent_on_documented_layouts(self):
        bn = torch.nn.BatchNorm1d(8)

        def correct():
            bn(torch.randn(4, 8))
            bn(torch.randn(4, 8, 10))
            bn(torch.randn(4, 8, 8).transpose(1, 2))  # channels moved to axis 1 on purpose
            conv = torch.nn.Conv1d(3, 8, kernel_size=3, padding=1)
            bn(torch.relu(conv(torch.randn(4, 3, 8))))  # (N, C, L) from a convolution, L == C

        silent(correct)

    def test_strict_raises(self):
        bn = torch.nn.BatchNorm1d(8)
        strict_raises(lambda: bn(torch.randn(4, 8, 8)), "batchnorm-channels-last")


# --- buffer-shape-change -----------------------------------------------------------------------


class TestBufferShapeChange:
    def test_catches_the_lectures_batchnorm_bug_at_the_assignment(self):
        bn = UserBuggyBatchNorm1d(68)
        found = findings(lambda: bn(torch.randn(32, 4, 68)))
        assert [w.rule for w in found] == ["buffer-shape-change"] * 2  # running_mean and _var
        assert bn.running_mean.shape == (1, 4, 68)
        text = str(found[0])
        assert text.startswith("tests/_lecture.py:") and " self.running_mean " in text
        assert ("UserBuggyBatchNorm1d.running_mean (a registered buffer) to keep its shape (68,)"
                in text)
        assert "got (1, 4, 68) after a forward" in text

    def test_catches_a_parameter_replaced_behind_the_modules_back(self):
        class Grows(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.w = torch.nn.Parameter(torch.ones(3))

            def forward(self, x):
                self.w.data = torch.ones(x.shape[-1])  # no __setattr__: the .data setter
                return x * self.w

        layer = Grows()
        w = one(lambda: layer(torch.ones(2, 5)), "buffer-shape-change")
        line = Grows.forward.__code__.co_firstlineno + 1
        assert_message(w, "buffer-shape-change", line, "self.w.data",
                       "Grows.w (a registered parameter) to keep its shape (3,)")

    def test_catches_a_buffer_assigned_a_batch_statistic_directly(self):
        class Stat(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.register_buffer("running_mean", torch.zeros(16))

            def forward(self, x):
                xmean = x.mean(0)  # (T, C) for (B, T, C) input
                self.running_mean = xmean  # no op on this line: torch's registration hook
                return x - self.running_mean

        stat = Stat()
        w = one(lambda: stat(torch.randn(4, 5, 16)), "buffer-shape-change")
        line = Stat.forward.__code__.co_firstlineno + 2
        assert_message(w, "buffer-shape-change", line, "self.running_mean expected",
                       "Stat.running_mean (a registered buffer) to keep its shape (16,)",
                       "got (5, 16)")

    def test_silent_when_only_leading_ones_appear(self):
        bn = UserBuggyBatchNorm1d(68)
        silent(lambda: bn(torch.randn(32, 68)))  # (68,) -> (1, 68): broadcasts the same
        assert bn.running_mean.shape == (1, 68)

    def test_silent_on_shapekit_and_torch_batchnorm(self):
        def correct():
            sk.BatchNorm1d(68)(torch.randn(32, 4, 68))
            torch.nn.BatchNorm1d(68)(torch.randn(32, 68, 4))

        silent(correct)

    def test_strict_raises_before_the_buffer_is_replaced(self):
        bn = UserBuggyBatchNorm1d(68)
        strict_raises(lambda: bn(torch.randn(32, 4, 68)), "buffer-shape-change")
        assert bn.running_mean.shape == (68,)


# --- squeeze-batch -----------------------------------------------------------------------------


class TestSqueezeBatch:
    def test_catches_a_batch_of_one_squeezed_away(self):
        model = torch.nn.Linear(3, 1)
        x = torch.randn(1, 3)  # the last batch has one example
        out = {}

        def bug():
            out["line"] = here() + 1
            out["y"] = model(x).squeeze()

        w = one(bug, "squeeze-batch")
        assert out["y"].shape == ()
        assert_message(w, "squeeze-batch", out["line"], "model(x).squeeze()", "(1, 1) -> ()",
                       "fix: name the axis: model(x).squeeze(-1)")

    def test_silent_when_only_one_kind_of_axis_goes(self):
        def correct():
            torch.randn(1, 28, 28).squeeze()  # one example unwrapped on purpose
            torch.randn(32, 1).squeeze()
            torch.randn(1, 1).squeeze(-1)

        silent(correct)

    def test_strict_raises(self):
        strict_raises(lambda: torch.randn(1, 5, 1).squeeze(), "squeeze-batch")


# --- softmax-dim0 ------------------------------------------------------------------------------


class TestSoftmaxDim0:
    def test_catches_softmax_over_the_batch(self):
        logits = torch.randn(32, 27)
        out = {}

        def bug():
            out["line"] = here() + 1
            out["p"] = F.softmax(logits, dim=0)

        w = one(bug, "softmax-dim0")
        assert not torch.allclose(out["p"].sum(1), torch.ones(32))
        assert_message(w, "softmax-dim0", out["line"], "F.softmax(logits, dim=0)",
                       "dim=0 on logits: (32, 27)", "fix: pass dim=-1")

    def test_catches_sampling_with_a_batch_of_one(self):
        logits = torch.randn(1, 27)
        w = one(lambda: logits.softmax(0), "softmax-dim0")
        assert "every probability comes out 1.0" in str(w)

    def test_catches_the_module_and_the_implicit_dim(self):
        one(lambda: torch.nn.Softmax(dim=0)(torch.randn(4, 5)), "softmax-dim0")
        one(lambda: F.log_softmax(torch.randn(4, 5, 6)), "softmax-dim0")  # no dim: torch picks 0

    def test_silent_on_the_class_axis_and_vectors(self):
        def correct():
            F.softmax(torch.randn(32, 27), dim=1)
            torch.randn(4, 8, 27).softmax(-1)
            F.softmax(torch.randn(27), dim=0)

        silent(correct)

    def test_strict_raises(self):
        strict_raises(lambda: F.log_softmax(torch.randn(32, 27), dim=0), "softmax-dim0")


# --- cross-entropy-ambiguous -------------------------------------------------------------------


class TestCrossEntropyAmbiguous:
    def test_catches_square_time_and_class_axes(self):
        logits, Yb = torch.randn(4, 8, 8), torch.randint(0, 8, (4, 8))  # (B, T, C), T == C
        out = {}

        def bug():
            out["line"] = here() + 1
            F.cross_entropy(logits, Yb)

        w = one(bug, "cross-entropy-ambiguous")
        assert_message(w, "cross-entropy-ambiguous", out["line"],
                       "logits: (4, 8, 8) and Yb: (4, 8)",
                       "F.cross_entropy(logits.reshape(-1, 8), Yb.reshape(-1))")

    def test_catches_transposed_square_logits(self):
        logits, Yb = torch.randn(27, 27), torch.randint(0, 27, (27,))
        one(lambda: F.cross_entropy(logits.T, Yb), "cross-entropy-ambiguous")

    def test_silent_when_the_layout_is_clear(self):
        logits, Yb = torch.randn(4, 8, 8), torch.randint(0, 8, (4, 8))

        def correct():
            F.cross_entropy(logits.transpose(1, 2), Yb)
            F.cross_entropy(logits.reshape(-1, 8), Yb.reshape(-1))
            F.cross_entropy(torch.randn(27, 27), torch.randint(0, 27, (27,)))  # batch == classes
            torch.nn.CrossEntropyLoss()(torch.randn(4, 27, 8), torch.randint(0, 27, (4, 8)))

        silent(correct)

    def test_strict_raises(self):
        logits, Yb = torch.randn(4, 8, 8), torch.randint(0, 8, (4, 8))
        strict_raises(lambda: F.cross_entropy(logits, Yb), "cross-entropy-ambiguous")


# --- var-single-element ------------------------------------------------------------------------


class TestVarSingleElement:
    def test_catches_batchnorm_statistics_of_one_example(self):
        x = torch.randn(1, 68)
        out = {}

        def bug():
            out["line"] = here() + 1
            out["v"] = x.var(0, keepdim=True)

        w = one(bug, "var-single-element")
        assert torch.isnan(out["v"]).all()
        assert_message(w, "var-single-element", out["line"], "x.var(0, keepdim=True)",
                       "1 value along dim 0 of x: (1, 68)", "call model.eval()")

    def test_catches_the_lectures_layer_sampling_in_training_mode(self):
        model, _ = reference().build_lecture_model()
        context = torch.zeros(1, 8, dtype=torch.long)
        found = findings(lambda: model(context))  # every layer.training is still True
        assert {w.rule for w in found} == {"var-single-element"}

    def test_silent_without_bessels_correction_or_with_two_values(self):
        def correct():
            torch.randn(1, 68).var(0, correction=0)
            torch.randn(1, 68).var(0, unbiased=False)
            torch.randn(2, 68).var(0)
            torch.randn(1, 68).std(1)

        silent(correct)

    @pytest.mark.filterwarnings(r"ignore:std\(\)")  # torch: degrees of freedom <= 0
    def test_strict_raises(self):
        strict_raises(lambda: torch.randn(1).std(), "var-single-element")


# --- running-stat-growth -----------------------------------------------------------------------
# The lecture's layers as the lecture writes them: plain Python classes, no torch.nn.Module.


class BatchNorm1d:
    """The lecture's layer before the fix: statistics over axis 0 only."""

    def __init__(self, dim, eps=1e-5, momentum=0.1):
        self.eps = eps
        self.momentum = momentum
        self.training = True
        # parameters (trained with backprop)
        self.gamma = torch.ones(dim)
        self.beta = torch.zeros(dim)
        # buffers (trained with a running 'momentum update')
        self.running_mean = torch.zeros(dim)
        self.running_var = torch.ones(dim)

    def __call__(self, x):
        # calculate the forward pass
        if self.training:
            xmean = x.mean(0, keepdim=True)  # batch mean
            xvar = x.var(0, keepdim=True)  # batch variance
        else:
            xmean = self.running_mean
            xvar = self.running_var
        xhat = (x - xmean) / torch.sqrt(xvar + self.eps)  # normalize to unit variance
        self.out = self.gamma * xhat + self.beta
        # update the buffers
        if self.training:
            with torch.no_grad():
                self.running_mean = (1 - self.momentum) * self.running_mean + self.momentum * xmean
                self.running_var = (1 - self.momentum) * self.running_var + self.momentum * xvar
        return self.out

    def parameters(self):
        return [self.gamma, self.beta]


def lecture_model(batchnorm=BatchNorm1d, n_embd=10, n_hidden=68):
    torch.manual_seed(42)
    model = Sequential([
        Embedding(27, n_embd),
        LectureFlattenConsecutive(2), Linear(n_embd * 2, n_hidden, bias=False),
        batchnorm(n_hidden), Tanh(),
        LectureFlattenConsecutive(2), Linear(n_hidden * 2, n_hidden, bias=False),
        batchnorm(n_hidden), Tanh(),
        LectureFlattenConsecutive(2), Linear(n_hidden * 2, n_hidden, bias=False),
        batchnorm(n_hidden), Tanh(),
        Linear(n_hidden, 27),
    ])
    with torch.no_grad():
        model.layers[-1].weight *= 0.1  # last layer make less confident
    parameters = model.parameters()
    for p in parameters:
        p.requires_grad = True
    return model, parameters


def lecture_step(model, parameters, steps=2):
    X, Y = _data()
    for _ in range(steps):
        ix = torch.randint(0, X.shape[0], (32,))
        Xb, Yb = X[ix], Y[ix]  # batch X,Y
        logits = model(Xb)
        loss = F.cross_entropy(logits, Yb)  # loss function
        for p in parameters:
            p.grad = None
        loss.backward()
        for p in parameters:
            p.data += -0.1 * p.grad


class TestRunningStatGrowth:
    def test_catches_the_lectures_bug_in_the_lectures_plain_classes(self):
        model, parameters = lecture_model()
        found = findings(lambda: lecture_step(model, parameters))
        # once per line per block: running_mean and running_var, for all three layers
        assert [w.rule for w in found] == ["running-stat-growth"] * 2
        bn = model.layers[3]
        assert bn.running_mean.shape == (1, 4, 68)  # the oracle: it really grew
        mean_line = BatchNorm1d.__call__.__code__.co_firstlineno + 13
        assert_message(found[0], "running-stat-growth", mean_line,
                       "self.running_mean = ... expected self.running_mean's shape (68,) kept "
                       "through its update under no_grad, got (1, 4, 68) (xmean is (1, 4, 68))",
                       "fix: compute the statistic over every axis but the features, "
                       "x.mean((0, 1), keepdim=True) for (B, T, C) input, so the update keeps "
                       "(68,)")
        assert "x.var((0, 1), keepdim=True)" in str(found[1])

    def test_the_fix_it_names_runs_silent_and_keeps_the_shape(self):
        model, parameters = lecture_model(FixedBatchNorm1d)
        silent(lambda: lecture_step(model, parameters))
        bn = model.layers[3]
        assert strip_ones(bn.running_mean.shape) == (68,)
        x = torch.randn(32, 4, 68)
        ema = 0.9 * torch.zeros(68) + 0.1 * x.mean((0, 1), keepdim=True)  # the fix, applied
        assert torch.allclose(ema.view(68), 0.1 * x.mean((0, 1)))

    def test_catches_a_module_with_a_plain_tensor_attribute(self):
        class Norm(torch.nn.Module):
            def __init__(self, dim):
                super().__init__()
                self.running_mean = torch.zeros(dim)  # not registered: Module hooks miss it

            def forward(self, x):
                with torch.no_grad():
                    self.running_mean = 0.9 * self.running_mean + 0.1 * x.mean(0)
                return x - self.running_mean

        norm = Norm(16)
        w = one(lambda: norm(torch.randn(8, 5, 16)), "running-stat-growth")
        assert norm.running_mean.shape == (5, 16)
        assert "got (5, 16) (x.mean(0)" not in str(w)  # a call is never evaluated again
        assert "expected self.running_mean's shape (16,)" in str(w)

    def test_a_registered_buffer_stays_caught_by_buffer_shape_change(self):
        bn = UserBuggyBatchNorm1d(68)
        found = findings(lambda: bn(torch.randn(32, 4, 68)))
        assert [w.rule for w in found] == ["buffer-shape-change"] * 2

    def test_silent_on_near_misses(self):
        class Stats:
            def __init__(self):
                self.running_mean = torch.zeros(16)
                self.total = torch.zeros(())
                self.bias = torch.zeros(16)
                self.count = 0

            def update(self, x):
                with torch.no_grad():
                    self.running_mean = 0.9 * self.running_mean + 0.1 * x.mean(0, keepdim=True)
                    self.running_mean = torch.lerp(self.running_mean, x.mean(0), 0.1)
                    self.running_mean.mul_(0.9).add_(0.1 * x.mean(0))  # in place
                    centred = x - self.running_mean  # a broadcast not stored back
                    self.out = x + self.bias  # another attribute
                    self.total = self.total + x.sum(0)  # a scalar accumulator starts as one value
                    self.count = self.count + 1
                return centred

        stats = Stats()
        silent(lambda: [stats.update(torch.randn(8, 16)) for _ in range(2)])
        assert stats.running_mean.shape == (1, 16)  # leading ones broadcast the same

    def test_silent_when_gradients_are_on(self):
        class Grows:
            def __init__(self):
                self.h = torch.zeros(1, 16)

            def __call__(self, x):
                self.h = 0.5 * self.h + x  # a hidden state broadcast to the batch on purpose
                return self.h

        silent(lambda: Grows()(torch.randn(8, 16)))

    def test_strict_raises_before_the_attribute_is_replaced(self):
        bn = BatchNorm1d(68)
        strict_raises(lambda: bn(torch.randn(32, 4, 68)), "running-stat-growth")
        assert bn.running_mean.shape == (68,)


# --- linear-weight-matmul ----------------------------------------------------------------------


class TestLinearWeightMatmul:
    def test_catches_matmul_by_a_square_linears_weight(self):
        lin = torch.nn.Linear(C, C)
        x = torch.randn(B, T, C)
        out = {}

        def bug():
            out["line"] = here() + 1
            out["y"] = x @ lin.weight

        w = one(bug, "linear-weight-matmul")
        assert not torch.allclose(out["y"], lin(x) - lin.bias)  # the oracle: the transpose
        assert_message(w, "linear-weight-matmul", out["line"], "x @ lin.weight expected",
                       f"lin.weight: ({C}, {C}), an nn.Linear weight, stored (out_features, "
                       "in_features)", "fix: call the layer, lin(x) (it adds the bias too), or "
                       "use x @ lin.weight.T")

    def test_the_fixes_it_names_compute_the_layer(self):
        lin = torch.nn.Linear(C, C)
        x = torch.randn(B, T, C)
        silent(lambda: (lin(x), x @ lin.weight.T))
        assert torch.allclose(x @ lin.weight.T + lin.bias, lin(x), atol=1e-6)

    def test_catches_torch_matmul_and_the_method(self):
        lin = torch.nn.Linear(C, C, bias=False)
        x = torch.randn(B, C)
        def bug():
            torch.matmul(x, lin.weight)
            x.matmul(lin.weight)

        found = findings(bug)
        assert [w.rule for w in found] == ["linear-weight-matmul"] * 2

    def test_silent_on_near_misses(self):
        lin = torch.nn.Linear(C, C)
        emb = torch.nn.Embedding(C, C)
        W = torch.nn.Parameter(torch.randn(C, C))  # the user's own (in, out) matrix
        x = torch.randn(B, C)

        def correct():
            x @ lin.weight.T
            F.linear(x, lin.weight)
            x @ W
            x @ emb.weight  # an embedding table is (num, dim): tied heads are written this way
            x @ lin.weight.detach().T

        silent(correct)

    def test_strict_raises(self):
        lin = torch.nn.Linear(C, C)
        strict_raises(lambda: torch.randn(B, C) @ lin.weight, "linear-weight-matmul")


# --- mask-batch-query --------------------------------------------------------------------------


def _padding_mask(b: int, t: int) -> torch.Tensor:
    lengths = torch.tensor([t, t - 3, 2, t, t - 1, 5, 3, t][:b])
    return (torch.arange(t)[None, :] < lengths[:, None]).long()  # (B, T): 1 = a real token


class TestMaskBatchQuery:
    def test_catches_a_padding_mask_on_the_query_axis(self):
        att = torch.randn(T, NH, T, T)  # B == T: nothing fails
        mask = _padding_mask(T, T)
        out = {}

        def bug():
            out["line"] = here() + 1
            out["att"] = att.masked_fill(mask == 0, float("-inf"))

        w = one(bug, "mask-batch-query")
        right = att.masked_fill(mask[:, None, None, :] == 0, float("-inf"))
        assert not torch.equal(out["att"], right)  # the oracle: another mask applied
        assert_message(w, "mask-batch-query", out["line"],
                       f"mask == 0: ({T}, {T}), which lines up with the last two axes",
                       "fix: add the head and query axes: (mask == 0)[:, None, None, :]")

    def test_the_fix_it_names_runs_silent_and_masks_each_sequence(self):
        att = torch.randn(T, NH, T, T)
        mask = _padding_mask(T, T)
        out = {}
        silent(lambda: out.setdefault("att", att.masked_fill(
            (mask == 0)[:, None, None, :], float("-inf"))))
        assert torch.isinf(out["att"][1, :, :, T - 3:]).all()  # sequence 1's padded keys
        assert not torch.isinf(out["att"][1, :, :, :T - 3]).any()

    def test_catches_an_additive_mask(self):
        scores = torch.randn(T, NH, T, T)
        mask = _padding_mask(T, T).float()
        one(lambda: scores + (1.0 - mask) * -10000.0, "mask-batch-query")

    def test_silent_on_causal_and_banded_masks_and_the_right_broadcast(self):
        att = torch.randn(T, NH, T, T)
        causal = torch.tril(torch.ones(T, T))
        band = (torch.arange(T)[:, None] - torch.arange(T)[None, :]).abs() <= 2
        mask = _padding_mask(T, T)

        def correct():
            att.masked_fill(causal == 0, float("-inf"))
            att.masked_fill(causal[:T, :T] == 0, float("-inf"))
            torch.where(band, att, float("-inf"))
            att.masked_fill(mask[:, None, None, :] == 0, float("-inf"))
            att + torch.zeros(T, T)  # a constant: lines up the same either way
            doc = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2])  # packed sequences: block-diagonal
            att.masked_fill(doc[:, None] != doc[None, :], float("-inf"))
            att.masked_fill(torch.ones(T, T, dtype=torch.bool), 0.0)

        silent(correct)

    def test_strict_raises(self):
        att = torch.randn(T, NH, T, T)
        mask = _padding_mask(T, T)
        strict_raises(lambda: att.masked_fill(mask == 0, 0.0), "mask-batch-query")


# --- conv1d-channels-last ----------------------------------------------------------------------


class TestConv1dChannelsLast:
    def test_catches_channels_last_input_when_length_equals_channels(self):
        conv = torch.nn.Conv1d(16, 32, kernel_size=3, padding=1)
        emb = torch.nn.Embedding(27, 16)
        idx = torch.randint(0, 27, (B, 16))
        out = {}

        def bug():
            x = emb(idx)  # (B, T, C) with T == C == 16
            out["line"] = here() + 1
            out["y"] = conv(x)

        w = one(bug, "conv1d-channels-last")
        assert_message(w, "conv1d-channels-last", out["line"], "conv(x) expected",
                       "(N, 16, L): torch's Conv1d reads the channels from axis 1",
                       f"x: ({B}, 16, 16)",
                       "fix: pass it as (N, C, L): conv(x.transpose(1, 2))")

    def test_the_fix_it_names_runs_silent_and_convolves_over_time(self):
        conv = torch.nn.Conv1d(16, 32, kernel_size=3, padding=1)
        x = torch.nn.Embedding(27, 16)(torch.randint(0, 27, (B, 16)))
        out = {}
        silent(lambda: out.setdefault("y", conv(x.transpose(1, 2)).transpose(1, 2)))
        # the oracle: position 0's output only sees positions 0 and 1 of the sequence
        changed = x.detach().clone()
        changed[:, 5:] = 0
        y2 = conv(changed.transpose(1, 2)).transpose(1, 2)
        assert torch.allclose(out["y"][:, :4], y2[:, :4], atol=1e-6)

    def test_silent_on_documented_layouts(self):
        def correct():
            conv = torch.nn.Conv1d(16, 16, kernel_size=3, padding=1)
            conv(conv(torch.randn(B, 16, 16).transpose(1, 2)))  # a conv's output: (N, C, L)
            conv(torch.randn(B, 16, 40))
            torch.nn.Conv1d(16, 8, 1)(torch.relu(torch.nn.BatchNorm1d(16)(conv(
                torch.randn(B, 40, 16).transpose(1, 2)))))

        silent(correct)

    def test_strict_raises(self):
        conv = torch.nn.Conv1d(16, 32, kernel_size=3)
        strict_raises(lambda: conv(torch.randn(B, 16, 16)), "conv1d-channels-last")


# --- a NaN from a pitfall, reaching a later error ----------------------------------------------


def test_a_nan_from_a_pitfall_is_named_in_the_error_it_causes():
    """The lecture's sampling loop with its hand-written BatchNorm left in training mode."""
    model, parameters = lecture_model(FixedBatchNorm1d)
    lecture_step(model, parameters, steps=1)
    g = torch.Generator().manual_seed(2147483647 + 10)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        with pytest.raises(ShapeError) as caught, detect():
            context = [0] * 8
            for _ in range(3):
                logits = model(torch.tensor([context]))  # every layer.training is still True
                probs = F.softmax(logits, dim=1)
                ix = torch.multinomial(probs, num_samples=1, generator=g).item()
                context = [*context[1:], ix]
    err = caught.value
    assert isinstance(err, RuntimeError) and isinstance(err.__cause__, RuntimeError)
    assert "probability tensor contains either `inf`, `nan`" in str(err.__cause__)
    text = str(err)
    assert text.startswith("tests/test_detect.py:")
    assert "torch.multinomial" in text
    assert "(1, 27) holding NaN/inf, made by the pitfall reported earlier at tests/" \
        "_lecture_classes.py:" in text and "[var-single-element]" in text
    assert "fix: feed more than one example (in BatchNorm: call model.eval()" in text
    assert f"docs: {DOCS_URL}var-single-element/" in text


def test_the_fix_for_the_nan_samples():
    model, parameters = lecture_model(FixedBatchNorm1d)
    lecture_step(model, parameters, steps=1)
    for layer in model.layers:
        layer.training = False  # the fix the error names: model.eval()
    with torch.no_grad():
        silent(lambda: torch.multinomial(F.softmax(model(torch.zeros(1, 8, dtype=torch.long)),
                                                   dim=1), num_samples=1))


def strip_ones(shape):
    return tuple(shape)[next((i for i, s in enumerate(shape) if s != 1), len(shape)):]


# --- the block ---------------------------------------------------------------------------------


def test_every_rule_has_a_test_class():
    classes = {name for name in globals() if name.startswith("Test")}
    assert classes == {"Test" + "".join(p.capitalize() for p in rule.split("-")) for rule in RULES}


def test_warns_once_per_rule_and_line_per_block():
    x = torch.randn(B, T, C)

    def loop():
        for _ in range(10):
            x.view(B, C, T)

    assert len(findings(loop)) == 1
    assert len(findings(loop)) == 1  # a new block warns again


def test_warning_points_at_the_users_file_and_line():
    x = torch.randn(B, T, C)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with detect():
            line = here() + 1
            x.view(B, C, T)
    (w,) = caught
    assert w.filename == __file__ and w.lineno == line


@pytest.mark.shapekit(enabled=False)  # under `pytest --shapekit` an outer block stays active
def test_hooks_are_removed_on_exit_and_setattr_is_never_patched():
    # replacing nn.Module.__setattr__ re-slots every Module subclass: ~1 ms per block, so the
    # buffer assignment is seen by the function mode instead
    setattr_before = torch.nn.Module.__setattr__
    hooks = torch.nn.modules.module
    with detect():
        assert torch.nn.Module.__setattr__ is setattr_before
        assert hooks._global_buffer_registration_hooks
        assert not hooks._global_forward_pre_hooks and not hooks._global_forward_hooks
    assert torch.nn.Module.__setattr__ is setattr_before
    assert not hooks._global_buffer_registration_hooks
    assert not hooks._global_parameter_registration_hooks
    assert not hooks._global_forward_pre_hooks and not hooks._global_forward_hooks
    assert torch._C._len_torch_function_stack() == 0


def test_decorator_and_nested_blocks():
    @detect()
    def step(x):
        return x.view(B, C, T)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        step(torch.randn(B, T, C))
        with detect(), detect(strict=True) as inner, pytest.raises(ShapeError):
            F.softmax(torch.randn(4, 5), dim=0)
    assert [w.message.rule for w in caught] == ["view-transposes"]
    assert inner.findings == []


def test_shape_errors_are_explained_with_the_recorded_operands():
    a, b = torch.randn(32, 10), torch.randn(31, 10)
    with pytest.raises(ShapeError) as caught, detect():
        torch.cat([a, b], dim=1)
    assert caught.value.got == "a: (32, 10) float32, b: (31, 10) float32"
    assert isinstance(caught.value.__cause__, RuntimeError)


def test_other_errors_pass_through():
    with pytest.raises(KeyError), detect():
        raise KeyError("not a shape error")


def test_strict_must_be_a_bool():
    with pytest.raises(TypeError, match="strict must be True or False"):
        detect(strict="yes")


def test_ops_inside_libraries_are_not_the_users_bugs():
    # einops and shapekit reshape internally; their calls are never reported.
    silent(lambda: rearrange(torch.randn(B, T, C), "b t (h d) -> b h t d", h=NH))
    silent(lambda: sk.FlattenConsecutive(2)(torch.randn(B, T, C)))


def test_an_axis_a_library_adds_on_purpose_still_counts():
    # Rules that only report skip the calls a library makes (they are never the user's line), but
    # the ones that remember an axis added on purpose see them: einops' column is as deliberate
    # as v[:, None], so the outer difference below is silent; a column by accident is not.
    v = torch.randn(T)
    silent(lambda: rearrange(v, "n -> n 1") - v)
    one(lambda: torch.randn(T, 1) - v, "broadcast-n-by-n")


def test_a_trusted_shapekit_layer_runs_unwatched_and_passes_explicit_axes_on(monkeypatch):
    """A shapekit.nn layer call that "once" trusts runs its body without a call into detect()'s
    mode per op (the cost of detection on the lecture's model); what the ops would have passed on
    still holds: a column made on purpose stays one through Tanh, an accidental one (a Linear
    with one output) is still caught."""
    from shapekit.debug import _detect

    calls: list = []
    watch = _detect._Mode.__torch_function__

    def counting(self, func, types, args=(), kwargs=None):
        calls.append(func)
        return watch(self, func, types, args, kwargs)

    monkeypatch.setattr(_detect._Mode, "__torch_function__", counting)
    tanh, linear, x, v = sk.Tanh(), sk.Linear(C, 1), torch.randn(T, C), torch.randn(T)
    tanh(v[:, None]), tanh(x), linear(x)  # checked in full: these signatures are trusted now
    with detect():
        calls.clear()
        tanh(x)
        linear(x)
        assert calls == []  # neither the bodies nor @shaped's look-ups were watched
    silent(lambda: tanh(v[:, None]) - v)  # (T, 1) made on purpose, through the layer
    one(lambda: linear(x) - v, "broadcast-n-by-n")  # (T, 1) by accident
    one(lambda: torch.tanh(linear(x)) - v, "broadcast-n-by-n")


def test_layers_are_watched_when_another_function_mode_is_active():
    """Only detect()'s own mode lets a layer run unwatched: with a second mode inside the block
    (a torch.device context here) the layer's ops go through both modes, as they would without
    shapekit."""
    from torch.overrides import TorchFunctionMode

    seen: list = []

    class Log(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            seen.append(getattr(func, "__name__", ""))
            return func(*args, **(kwargs or {}))

    tanh, x = sk.Tanh(), torch.randn(T, C)
    tanh(x)
    with detect(), Log():
        tanh(x)
    assert "tanh" in seen


# --- a corpus of correct code: silent under detect() -------------------------------------------


class CausalSelfAttention(torch.nn.Module):
    """nanoGPT's attention, as written there."""

    def __init__(self, n_embd: int = C, n_head: int = NH, block_size: int = T) -> None:
        super().__init__()
        self.c_attn = torch.nn.Linear(n_embd, 3 * n_embd)
        self.c_proj = torch.nn.Linear(n_embd, n_embd)
        self.n_head, self.n_embd = n_head, n_embd
        self.register_buffer("bias", torch.tril(torch.ones(block_size, block_size))
                             .view(1, 1, block_size, block_size))

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
        att = att.masked_fill(self.bias[:, :, :T, :T] == 0, float("-inf"))
        att = F.softmax(att, dim=-1)
        y = att @ v  # (B, nh, T, T) x (B, nh, T, hs) -> (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.c_proj(y)


class TorchifiedBatchNorm1d(torch.nn.Module):
    """The lecture's BatchNorm1d after the fix, as an nn.Module with registered buffers."""

    def __init__(self, dim: int, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self.gamma = torch.nn.Parameter(torch.ones(dim))
        self.beta = torch.nn.Parameter(torch.zeros(dim))
        self.register_buffer("running_mean", torch.zeros(dim))
        self.register_buffer("running_var", torch.ones(dim))

    def forward(self, x):
        if self.training:
            dim = 0 if x.ndim == 2 else (0, 1)
            xmean = x.mean(dim, keepdim=True)
            xvar = x.var(dim, keepdim=True)
        else:
            xmean, xvar = self.running_mean, self.running_var
        out = self.gamma * (x - xmean) / torch.sqrt(xvar + self.eps) + self.beta
        if self.training:
            with torch.no_grad():
                self.running_mean = (1 - self.momentum) * self.running_mean + self.momentum * xmean
                self.running_var = (1 - self.momentum) * self.running_var + self.momentum * xvar
        return out


def _data(n: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 27, (n, 8), generator=g), torch.randint(0, 27, (n,), generator=g)


def _train_and_sample(model, parameters, set_training) -> None:
    X, Y = _data()
    for _ in range(3):
        ix = torch.randint(0, X.shape[0], (32,))
        Xb, Yb = X[ix], Y[ix]
        logits = model(Xb)
        loss = F.cross_entropy(logits, Yb)
        for p in parameters:
            p.grad = None
        loss.backward()
        for p in parameters:
            p.data += -0.1 * p.grad
    set_training(False)
    with torch.no_grad():
        F.cross_entropy(model(X), Y)  # split loss
        for _ in range(2):  # sample names
            out, context = [], [0] * 8
            while True:
                logits = model(torch.tensor([context]))
                probs = F.softmax(logits, dim=1)
                ix = torch.multinomial(probs, num_samples=1).item()
                context = [*context[1:], ix]
                out.append(ix)
                if ix == 0 or len(out) > 10:
                    break


def lecture_with_shapekit_nn():
    torch.manual_seed(42)
    model = build_model("wavenet")
    _train_and_sample(model, list(model.parameters()), model.train)


def lecture_hand_written():
    model, parameters = reference().build_lecture_model()

    def set_training(mode: bool) -> None:
        for layer in model.layers:
            layer.training = mode

    _train_and_sample(model, parameters, set_training)


class FlattenConsecutive(torch.nn.Module):
    """The lecture's layer, torchified."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n

    def forward(self, x):
        B, T, C = x.shape
        x = x.view(B, T // self.n, C * self.n)
        if x.shape[1] == 1:
            x = x.squeeze(1)
        return x


def lecture_torchified():
    torch.manual_seed(42)
    layers = [torch.nn.Embedding(27, 24)]
    for fan_in in (48, 256, 256):
        layers += [FlattenConsecutive(2), torch.nn.Linear(fan_in, 128, bias=False),
                   TorchifiedBatchNorm1d(128), torch.nn.Tanh()]
    model = torch.nn.Sequential(*layers, torch.nn.Linear(128, 27))
    _train_and_sample(model, list(model.parameters()), model.train)


def makemore_mlp_and_bigram():
    """makemore parts 1-4 as written there (numpy's keepdims spelling included)."""
    N = torch.randint(0, 50, (27, 27))
    P = (N + 1).float()
    P /= P.sum(1, keepdims=True)
    torch.multinomial(P[0], num_samples=1, replacement=True).item()
    C, W1, W2 = torch.randn(27, 10), torch.randn(30, 200), torch.randn(200, 27)
    X, Y = torch.randint(0, 27, (32, 3)), torch.randint(0, 27, (32,))
    emb = C[X]  # (32, 3, 10)
    hpreact = emb.view(emb.shape[0], -1) @ W1
    hpreact = (hpreact - hpreact.mean(0, keepdim=True)) / hpreact.std(0, keepdim=True)
    logits = torch.tanh(hpreact) @ W2
    counts = (logits - logits.max(1, keepdim=True).values).exp()
    probs = counts / counts.sum(1, keepdims=True)
    -probs[torch.arange(32), Y].log().mean()
    dlogits = F.softmax(logits, 1)
    dlogits[range(32), Y] -= 1
    dlogits /= 32


def nanogpt_attention():
    attn = CausalSelfAttention()
    x = torch.randn(B, T, C)
    y = attn(x)
    logits = torch.nn.Linear(C, 65)(y)
    targets = torch.randint(0, 65, (B, T))
    loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))
    loss.backward()


def pairwise_distances():
    x = torch.randn(50, 3)
    d = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1).sqrt()
    assert d.shape == (50, 50)
    v = torch.randn(50)
    assert (v[:, None] - v[None, :]).shape == (50, 50)
    assert torch.cdist(x, x).shape == (50, 50)


def bias_broadcasting_and_keepdim():
    x = torch.randn(B, T, C)
    (x @ torch.randn(C, 16) + torch.randn(16)).relu()
    x - x.mean(-1, keepdim=True)
    x / x.std(-1, keepdim=True)
    x - x.mean((0, 1))
    counts = torch.rand(27, 27)
    P = counts / counts.sum(1, keepdim=True)
    P.log().mean()
    (torch.randn(32, 27).argmax(1) == torch.randint(0, 27, (32,))).float().mean()


def torch_layers_as_documented():
    torch.nn.BatchNorm1d(16)(torch.randn(B, 16, 20))
    torch.nn.BatchNorm1d(16)(torch.randn(B, 16))
    conv = torch.nn.Conv1d(16, 32, kernel_size=3, padding=1)
    torch.nn.BatchNorm1d(32)(conv(torch.randn(B, 16, 20)))
    torch.nn.LayerNorm(C)(torch.randn(B, T, C))
    torch.nn.Embedding(27, C)(torch.randint(0, 27, (B, T)))
    F.mse_loss(torch.randn(32, 1), torch.randn(32, 1))
    F.binary_cross_entropy_with_logits(torch.randn(32), torch.rand(32))


def einops_patterns():
    x = torch.randn(B, T, C)
    rearrange(x, "b t (h d) -> b h t d", h=NH)
    rearrange(x, "b (t n) c -> b t (n c)", n=2)
    reduce(x, "b t c -> b c", "mean")
    repeat(torch.randn(C), "c -> b t c", b=B, t=T)
    rearrange(rearrange(x, "b t c -> b c t"), "b c t -> b t c")


def reshape_round_trips():
    x = torch.randn(B, T, C)
    assert torch.equal(x.reshape(B * T, C).reshape(B, T, C), x)
    assert torch.equal(x.flatten(1).unflatten(1, (T, C)), x)
    assert torch.equal(x.view(B, T, NH, C // NH).view(B, T, C), x)
    x.permute(0, 2, 1).reshape(B, C * T)
    torch.arange(12).view(3, 4).T.reshape(12)


CORPUS = [lecture_with_shapekit_nn, lecture_hand_written, lecture_torchified,
          makemore_mlp_and_bigram, nanogpt_attention,
          pairwise_distances, bias_broadcasting_and_keepdim, torch_layers_as_documented,
          einops_patterns, reshape_round_trips]


@pytest.mark.parametrize("example", CORPUS, ids=lambda f: f.__name__)
def test_correct_code_runs_silent(example):
    silent(example)
