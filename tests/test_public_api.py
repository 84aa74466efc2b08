"""The public surface: every exported name imports, is documented and type-hinted, and the
foundation's docstring examples run."""

from __future__ import annotations

import doctest
import importlib
import inspect

import pytest
import torch

import shapekit
import shapekit.nn

SURFACES = ["shapekit", "shapekit.nn", "shapekit.checking", "shapekit.debug", "shapekit.lecture",
            "shapekit.lecture.runs", "shapekit.cli", "shapekit.pytest"]
PUBLIC = [(module, name) for module in SURFACES
          for name in importlib.import_module(module).__all__]
CALLABLES = [
    (module, name)
    for module, name in PUBLIC
    if callable(getattr(importlib.import_module(module), name))
]
# The checking machinery and the layers: their docstrings show usage with shapes.
FOUNDATION_MODULES = [
    "shapekit",
    "shapekit.checking._dims",
    "shapekit.checking._errors",
    "shapekit.checking._modes",
    "shapekit.checking._shaped",
    "shapekit.nn",
    "shapekit.nn._batchnorm",
    "shapekit.nn._embedding",
    "shapekit.nn._flatten",
    "shapekit.nn._linear",
    "shapekit.nn._sequential",
    "shapekit.nn._tanh",
]


def own_doc(obj: object) -> str:
    """The docstring written for ``obj``, not the ``Name(field, ...)`` that dataclasses make up.
    (A class's ``__doc__`` is never inherited.)"""
    doc = (obj.__doc__ or "").strip()
    return "" if inspect.isclass(obj) and doc.startswith(f"{obj.__name__}(") else doc


@pytest.mark.parametrize(("module", "name"), PUBLIC)
def test_every_public_name_imports(module, name):
    exec(f"from {module} import {name}", {})


def test_all_lists_have_no_duplicates():
    assert len(set(shapekit.__all__)) == len(shapekit.__all__)
    assert len(set(shapekit.nn.__all__)) == len(shapekit.nn.__all__)


def test_the_foundation_is_exported():
    assert {"ShapeError", "PitfallWarning", "DataError", "shaped", "checks", "get_checks",
            "set_checks", "nn"} <= set(shapekit.__all__)
    assert set(shapekit.nn.__all__) == {
        "BatchNorm1d", "Embedding", "FlattenConsecutive", "Linear", "Sequential", "Tanh"
    }
    assert issubclass(shapekit.ShapeError, RuntimeError)
    assert all(issubclass(getattr(shapekit.nn, n), torch.nn.Module) for n in shapekit.nn.__all__)


@pytest.mark.parametrize(("module", "name"), CALLABLES)
def test_every_public_callable_has_a_docstring(module, name):
    assert own_doc(getattr(importlib.import_module(module), name)), f"{module}.{name}"


@pytest.mark.parametrize(("module", "name"), CALLABLES)
def test_every_public_callable_is_type_hinted(module, name):
    obj = getattr(importlib.import_module(module), name)
    if inspect.isclass(obj):
        if "__init__" not in vars(obj):
            return  # inherited, e.g. DataError(ValueError)
        fn = obj.__init__
    else:
        fn = obj
    signature = inspect.signature(fn)
    unhinted = [
        p.name
        for p in signature.parameters.values()
        if p.name != "self" and p.annotation is inspect.Parameter.empty
    ]
    if not inspect.isclass(obj) and signature.return_annotation is inspect.Signature.empty:
        unhinted.append("return")
    assert not unhinted, f"{module}.{name}: no type hint for {unhinted}"


@pytest.mark.parametrize(
    "obj",
    [shapekit.ShapeError, shapekit.PitfallWarning, shapekit.DataError, shapekit.shaped,
     shapekit.checks, shapekit.get_checks, shapekit.set_checks,
     *(getattr(shapekit.nn, n) for n in shapekit.nn.__all__)],
    ids=lambda obj: obj.__name__,
)
def test_foundation_docstrings_show_an_example(obj):
    assert ">>> " in own_doc(obj)


@pytest.mark.parametrize("module", FOUNDATION_MODULES)
def test_foundation_doctests(module):
    """The docstring examples run (the whole package's also run under --doctest-modules)."""
    result = doctest.testmod(
        importlib.import_module(module), optionflags=doctest.ELLIPSIS, verbose=False
    )
    assert result.failed == 0, f"{result.failed} doctest(s) failed in {module}; see output above"
