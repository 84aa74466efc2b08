"""Tests for shapekit.lecture._models: the five rows of the lecture's performance log."""

from __future__ import annotations

import inspect

import pytest
import torch
from _lecture import (  # one_thread: autouse fixture
    buggy_batchnorm,
    one_thread,  # noqa: F401
    reference,
)

from shapekit import nn
from shapekit.lecture._models import ROWS, build_model, count_params, resolve_row

PARAMS = {"original": 12_097, "context8": 22_097, "hierarchical-bug": 22_397,
          "hierarchical": 22_397, "wavenet": 76_579}


def build(name: str) -> nn.Sequential:
    return build_model(name, batchnorm=buggy_batchnorm() if ROWS[name].batchnorm_bug else None)


def test_rows_are_the_lectures_table_in_order():
    assert list(ROWS) == list(PARAMS)
    assert [(s.lecture_train, s.lecture_val) for s in ROWS.values()] == [
        (2.058, 2.105), (1.918, 2.027), (1.941, 2.029), (1.912, 2.022), (1.769, 1.993)]


@pytest.mark.parametrize("name", list(PARAMS))
def test_parameter_counts(name):
    model = build(name)
    assert count_params(model) == PARAMS[name] == ROWS[name].lecture_params


@pytest.mark.parametrize("name", list(PARAMS))
def test_output_shape_per_row(name):
    spec = ROWS[name]
    x = torch.randint(0, 27, (32, spec.block_size))
    assert build(name)(x).shape == (32, 27)


def test_wavenet_layer_shapes_are_the_lectures():
    x = torch.randint(0, 27, (32, 8))
    shapes = []
    for layer in build_model("wavenet").layers:
        x = layer(x)
        shapes.append(tuple(x.shape))
    assert shapes == [(32, 8, 24)] + [(32, 4, 48)] + [(32, 4, 128)] * 3 + [(32, 2, 256)] + [
        (32, 2, 128)] * 3 + [(32, 256)] + [(32, 128)] * 3 + [(32, 27)]


def test_init_draws_equal_the_lectures_plain_torch_model():
    ref = reference()
    _, ref_params = ref.build_lecture_model(24, 128)  # seeds 42 itself
    torch.manual_seed(42)
    ours = list(build_model("wavenet").parameters())
    assert [tuple(p.shape) for p in ours] == [tuple(p.shape) for p in ref_params]
    for a, b in zip(ours, ref_params, strict=True):
        assert torch.equal(a, b)


def test_last_layer_is_scaled_down():
    torch.manual_seed(42)
    model = build_model("original")
    torch.manual_seed(42)
    plain = [torch.randn(27, 10), torch.randn(30, 200) / 30**0.5, torch.randn(200, 27) / 200**0.5]
    assert torch.equal(model.layers[-1].weight, plain[2] * 0.1)


@pytest.mark.parametrize("key, name", [(1, "original"), ("2", "context8"), (" 5 ", "wavenet"),
                                       ("hierarchical-bug", "hierarchical-bug")])
def test_resolve_row_by_name_or_number(key, name):
    assert resolve_row(key).name == name
    assert resolve_row(key).row == list(PARAMS).index(name) + 1


@pytest.mark.parametrize("key", ["6", "0", "WaveNet", "big"])
def test_unknown_row_names_the_valid_ones(key):
    with pytest.raises(ValueError, match=(
        rf"unknown model '{key}'; expected a row of the lecture's performance log, by name or "
        r"number: 1 original, 2 context8, 3 hierarchical-bug, 4 hierarchical, 5 wavenet; "
        r"fix: e.g. --model wavenet \(or --model 5\)")):
        resolve_row(key)


def test_bug_row_is_built_with_the_lectures_buggy_layer_from_the_package():
    from shapekit.lecture._buggy_batchnorm import BuggyBatchNorm1d

    model = build_model("hierarchical-bug")
    norms = [layer for layer in model.layers if "BatchNorm" in type(layer).__name__]
    assert len(norms) == 3 and all(type(n) is BuggyBatchNorm1d for n in norms)
    assert type(norms[0]).__module__ == "shapekit.lecture._buggy_batchnorm"


def test_buggy_rows_buffers_turn_per_position_while_shapekits_stay_per_channel():
    buggy, fixed = build("hierarchical-bug"), build_model("hierarchical")
    x = torch.randint(0, 27, (32, 8))
    buggy(x), fixed(x)
    norms = [i for i, layer in enumerate(fixed.layers) if isinstance(layer, nn.BatchNorm1d)]
    assert [tuple(buggy.layers[i].running_mean.shape) for i in norms] == [
        (1, 4, 68), (1, 2, 68), (1, 68)]
    assert [tuple(buggy.layers[i].running_var.shape) for i in norms] == [
        (1, 4, 68), (1, 2, 68), (1, 68)]
    assert all(fixed.layers[i].running_mean.shape == (68,) for i in norms)


def test_shapekit_batchnorm_has_no_bug_mode():
    params = inspect.signature(nn.BatchNorm1d).parameters
    assert list(params) == ["dim", "eps", "momentum", "unbiased"]
    bn = nn.BatchNorm1d(68)
    x = torch.randn(32, 4, 68)
    bn(x)
    assert torch.allclose(bn.running_mean, 0.1 * x.mean((0, 1)))


def test_buggy_layer_is_the_lectures_math():
    Buggy = buggy_batchnorm()
    x = torch.randn(32, 4, 68)
    out = Buggy(68)(x)
    want = (x - x.mean(0, keepdim=True)) / torch.sqrt(x.var(0, keepdim=True) + 1e-5)
    assert torch.allclose(out, want, atol=1e-6)
    x2 = torch.randn(32, 68)  # on 2-D input the bug does not show: equal to shapekit's layer
    assert torch.allclose(Buggy(68)(x2), nn.BatchNorm1d(68)(x2), atol=1e-6)
