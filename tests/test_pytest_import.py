"""Tests for the ``--shapekit-packages`` instrumenter: what gets wrapped, both ways in, and undoing.

The oracle: calling a wrapped function with a wrong shape raises ShapeError with shapekit's message,
and the very same call on an unwrapped function goes through silently.
"""

from __future__ import annotations

import importlib
import sys
import textwrap

import pytest
import torch

from shapekit import ShapeError, checks
from shapekit.checking._import_hook import Instrumenter

GEOMETRY = '''
from __future__ import annotations  # string annotations must work too

import functools

import torch
from jaxtyping import Float
from torch import Tensor


def centre(points: Float[Tensor, "batch 3"]) -> Float[Tensor, "batch 3"]:
    return points - points.mean(0)


alias = centre


def norms(points: Float[Tensor, "batch 3"] | None) -> Float[Tensor, " batch"]:
    return points.norm(dim=-1)


def untyped(points):
    return points


def rows(points: Float[Tensor, "batch 3"]):
    yield from points  # a generator: left alone


class Model(torch.nn.Module):
    def forward(self, x: Float[Tensor, "batch 3"]) -> Float[Tensor, " batch"]:
        return x.sum(-1)

    @staticmethod
    def scale(x: Float[Tensor, "batch 3"]) -> Float[Tensor, "batch 3"]:
        return 2 * x

    @classmethod
    def build(cls, x: Float[Tensor, "batch 3"]) -> Model:
        return cls()

    class Head:
        def __call__(self, x: Float[Tensor, "batch 3"]) -> Float[Tensor, "batch 3"]:
            return x


class Cloud:
    def __init__(self, points):
        self._points = points

    @property
    def points(self) -> Float[Tensor, "batch 3"]:
        """The points, as given."""
        return self._points

    @points.setter
    def points(self, value: Float[Tensor, "batch 3"]) -> None:
        self._points = value

    @functools.cached_property
    def centred(self) -> Float[Tensor, "batch 3"]:
        """The points minus their mean, computed once."""
        return self._points - self._points.mean(0)
'''


@pytest.fixture(autouse=True)
def _every_call_checked():
    with checks("always"):
        yield


@pytest.fixture
def package(tmp_path, monkeypatch):
    """A package ``geom`` (its __init__ re-exports ``centre``) on sys.path, unloaded after."""
    root = tmp_path / "geom"
    root.mkdir()
    (root / "__init__.py").write_text("from .shapes import centre\n")
    (root / "shapes.py").write_text(textwrap.dedent(GEOMETRY))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "geom"
    for name in [n for n in sys.modules if n == "geom" or n.startswith("geom.")]:
        del sys.modules[name]


@pytest.fixture
def instrumenter(package):
    inst = Instrumenter((package,))
    yield inst
    inst.stop()


WRONG = torch.ones(4, 2)  # "batch 3" was meant


def wrong_calls(shapes) -> dict[str, object]:
    return {
        "centre": lambda: shapes.centre(WRONG),
        "alias": lambda: shapes.alias(WRONG),
        "optional": lambda: shapes.norms(WRONG),
        "forward": lambda: shapes.Model()(WRONG),
        "staticmethod": lambda: shapes.Model.scale(WRONG),
        "classmethod": lambda: shapes.Model.build(WRONG),
        "nested class": lambda: shapes.Model.Head()(WRONG),
    }


def test_import_hook_wraps_annotated_functions_and_methods(instrumenter):
    instrumenter.start()
    shapes = importlib.import_module("geom.shapes")
    for what, call in wrong_calls(shapes).items():
        with pytest.raises(ShapeError, match=r"expected (points|x): \(batch, 3\), got \(4, 2\)"):
            call()
            pytest.fail(f"{what} was not checked")
    assert shapes.alias is shapes.centre
    assert sys.modules["geom"].centre is shapes.centre  # the package re-export is the wrapper
    assert shapes.untyped(WRONG) is WRONG and list(shapes.rows(WRONG))
    # centre (and its alias), norms, forward, scale, build, __call__, and Cloud's property getter,
    # setter and cached_property
    assert instrumenter.count == 9


def test_property_and_cached_property_values_are_checked(instrumenter):
    instrumenter.start()
    shapes = importlib.import_module("geom.shapes")
    good = shapes.Cloud(torch.ones(4, 3))
    assert good.points.shape == good.centred.shape == (4, 3)
    assert good.centred is good.centred  # still cached
    assert shapes.Cloud.points.__doc__ == "The points, as given."
    assert shapes.Cloud.centred.__doc__ == "The points minus their mean, computed once."
    for name in ("points", "centred"):
        with pytest.raises(ShapeError, match=(
            rf"^{name}\(\) expected the output: \(batch, 3\), got \(4, 2\)"
        )):
            getattr(shapes.Cloud(WRONG), name)
    with pytest.raises(ShapeError, match=r"^points\(\) expected value: \(batch, 3\), got \(4, 2\)"):
        good.points = WRONG


def test_message_is_shapekits(instrumenter):
    instrumenter.start()
    from geom import centre

    with pytest.raises(ShapeError) as info:
        centre(WRONG)
    assert str(info.value) == (
        "centre() expected points: (batch, 3), got (4, 2)\n"
        "  bound so far: batch=4\n"
        "  fix: give points size 3 along axis 1"
    )


def test_already_imported_modules_are_instrumented_in_place(package):
    import geom

    original = geom.centre
    assert original(WRONG) is not None  # unchecked so far
    inst = Instrumenter((package,))
    inst.start()
    try:
        for what, call in wrong_calls(sys.modules["geom.shapes"]).items():
            with pytest.raises(ShapeError):
                call()
                pytest.fail(f"{what} was not checked")
        assert geom.centre is sys.modules["geom.shapes"].centre is not original
    finally:
        inst.stop()
    assert geom.centre is original and sys.modules["geom.shapes"].centre is original
    assert geom.centre(WRONG) is not None  # unchecked again


def test_stop_removes_the_hook(instrumenter):
    instrumenter.start()
    assert instrumenter.finder in sys.meta_path
    instrumenter.stop()
    assert instrumenter.finder not in sys.meta_path
    from geom import centre

    assert centre(WRONG).shape == (4, 2)  # imported after stop: not checked


def test_other_packages_are_not_touched(instrumenter):
    instrumenter.start()
    assert instrumenter.finder.find_spec("geometry_elsewhere") is None
    assert instrumenter.finder.find_spec("json") is None
    assert instrumenter.covers("geom.shapes") and not instrumenter.covers("geomx")


def test_missing_names_the_packages_python_cannot_find(package):
    assert Instrumenter((package, "no_such_pkg_3f1")).missing() == ["no_such_pkg_3f1"]
