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
from einops import rearrange, reduce, repeat

from shapekit import PitfallWarning, ShapeError
from shapekit import nn as sk
from shapekit._detect import detect
from shapekit._models import build_model
from shapekit._pitfalls import DOCS_URL, RULES

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
                self.w.data = torch.ones(x.shape[-1])  # no __setattr__: only the hooks see it
                return x * self.w

        layer = Grows()
        out = {}

        def bug():
            out["line"] = here() + 1
            layer(torch.ones(2, 5))

        w = one(bug, "buffer-shape-change")
        assert_message(w, "buffer-shape-change", out["line"], "layer(torch.ones(2, 5))",
                       "Grows.w (a registered parameter) to keep its shape (3,)")

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
def test_hooks_and_setattr_are_removed_on_exit():
    setattr_before = torch.nn.Module.__setattr__
    hooks = torch.nn.modules.module
    with detect():
        assert torch.nn.Module.__setattr__ is not setattr_before
    assert torch.nn.Module.__setattr__ is setattr_before
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
