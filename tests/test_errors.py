"""shapekit.checking._errors: how a ShapeError's parts become its message, and the other
exception types."""

from __future__ import annotations

import pickle
import warnings

import pytest

from shapekit import DataError, PitfallWarning, ShapeError


def test_minimal_message():
    err = ShapeError(expected="x: (batch, 3)", got="(4, 5)", fix="pass 3 features")
    assert str(err) == "expected x: (batch, 3), got (4, 5)\n  fix: pass 3 features"


def test_every_part_in_its_place():
    err = ShapeError(
        expected="x: (batch, *time, 48 = fan_in)",
        got="(32, 4, 40)",
        fix="the layer before produces 40 features; build Linear(40, ...)",
        where="Linear",
        bound="batch=32 time=4",
        source="layers[1] FlattenConsecutive output",
        note="",
    )
    err.path = "layers[2]"
    err.previous = "FlattenConsecutive(n)"
    err.fix_previous = "or change {previous}"
    assert str(err) == (
        "layers[2] Linear expected x: (batch, *time, 48 = fan_in), got (32, 4, 40)\n"
        "  bound so far: batch=32 time=4 (from layers[1] FlattenConsecutive output)\n"
        "  fix: the layer before produces 40 features; build Linear(40, ...) "
        "or change FlattenConsecutive(n)"
    )


def test_note_and_source_without_bindings():
    err = ShapeError(
        expected="x: (batch, time, channels)",
        got="(8, 24)",
        note="2 axes, expected 3",
        source="model input",
        fix="reshape x",
        where="FlattenConsecutive",
    )
    assert str(err) == (
        "FlattenConsecutive expected x: (batch, time, channels), got (8, 24): 2 axes, expected 3\n"
        "  input: model input\n"
        "  fix: reshape x"
    )


def test_previous_is_only_named_when_the_layer_says_how_it_helps():
    err = ShapeError(expected="a", got="b", fix="do c")
    err.previous = "Linear(..., fan_out)"  # no fix_previous: the layer before cannot help
    assert str(err).endswith("\n  fix: do c")


def test_is_a_runtime_error_and_survives_pickling():
    err = ShapeError(expected="a", got="b", fix="c", where="f()", bound="n=3", source="x")
    err.path = "layers[0]"
    assert isinstance(err, RuntimeError)
    copy = pickle.loads(pickle.dumps(err))
    assert type(copy) is ShapeError
    assert str(copy) == str(err)
    assert copy.path == "layers[0]" and copy.bound == "n=3"


def test_parts_are_keyword_only():
    with pytest.raises(TypeError):
        ShapeError("a", "b", "c")


def test_pitfall_warning_carries_its_rule():
    with pytest.warns(PitfallWarning, match="reorders axes") as record:
        warnings.warn(PitfallWarning("x.view(B, C, T) reorders axes", rule="view-transposes"),
                      stacklevel=1)
    assert record[0].message.rule == "view-transposes"
    assert issubclass(PitfallWarning, UserWarning)


def test_data_error_is_a_value_error():
    assert issubclass(DataError, ValueError)
    assert str(DataError("names.txt line 3: upper case")) == "names.txt line 3: upper case"


def test_tracebacks_name_the_public_classes_and_pickles_still_round_trip():
    import pickle
    import traceback

    import shapekit
    from shapekit.checking._errors import shape_error_like

    err = shapekit.ShapeError(expected="x: (3,)", got="(4,)", fix="pass 3 values", where="f()")
    assert traceback.format_exception_only(err)[0].startswith("shapekit.ShapeError: f() expected")
    for cls in (shapekit.ShapeError, shapekit.DataError, shapekit.PitfallWarning):
        assert cls.__module__ == "shapekit" and getattr(shapekit, cls.__name__) is cls
    like = shape_error_like(ValueError("batch mismatch"))
    copy = pickle.loads(pickle.dumps(like(expected="a", got="b", fix="c", where="d")))
    assert type(copy) is like and isinstance(copy, ValueError)
    assert str(copy).startswith("d expected")
    assert pickle.loads(pickle.dumps(shapekit.DataError("bad file"))).args == ("bad file",)
