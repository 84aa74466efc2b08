"""@shaped wherever jaxtyping's decorator goes: every target and decorator order, in every mode.

The semantics are those of jaxtyping's own decorator tests, ported to torch: the decorated thing
keeps working as what it was (a classmethod, a property, a dataclass), and its annotations are
checked (a bad call raises ShapeError naming the argument, field or element).
"""

from __future__ import annotations

import abc
import asyncio
import dataclasses
import functools
import inspect
import re
import typing
from collections.abc import Iterator

import jaxtyping
import pytest
import torch
from jaxtyping import Float, Int
from torch import Tensor

import shapekit
from shapekit import shaped

pytestmark = pytest.mark.parametrize("mode", ["always", "once"])


@pytest.fixture(autouse=True)
def _in_mode(mode):
    with shapekit.checks(mode):
        yield


def first_line(fn) -> str:
    """The first line of the ShapeError that ``fn()`` raises."""
    with pytest.raises(shapekit.ShapeError) as info:
        fn()
    return str(info.value).splitlines()[0]


class Layer:
    """Every method form, with @shaped both above and below the descriptor."""

    def __init__(self, n: int) -> None:
        self.n = n

    @shaped
    def method(self, x: Float[Tensor, " {self.n}"]) -> Float[Tensor, " {self.n}"]:
        return x

    @shaped
    @classmethod
    def class_above(cls, x: Float[Tensor, " b"]) -> Float[Tensor, " b"]:
        return x

    @classmethod
    @shaped
    def class_below(cls, x: Float[Tensor, " b"]) -> Float[Tensor, " b"]:
        return x

    @shaped
    @staticmethod
    def static_above(x: Float[Tensor, " b"]) -> Float[Tensor, " b"]:
        return x

    @staticmethod
    @shaped
    def static_below(x: Float[Tensor, " b"]) -> Float[Tensor, " b"]:
        return x

    @shaped
    @property
    def prop(self) -> Float[Tensor, " {self.n}"]:
        """Three ones, whatever n is."""
        return torch.ones(3)

    @property
    @shaped
    def prop_below(self) -> Float[Tensor, " {self.n}"]:
        return torch.ones(3)

    @shaped
    @functools.cached_property
    def cached(self) -> Float[Tensor, " {self.n}"]:
        """Three ones, computed once per instance."""
        return torch.ones(3)


def test_methods_classmethods_and_staticmethods():
    for _ in range(2):  # the second call is a "once" hit
        assert Layer(3).method(torch.ones(3)).shape == (3,)
        for name in ("class_above", "class_below", "static_above", "static_below"):
            assert getattr(Layer, name)(torch.ones(2)).shape == (2,)
            assert getattr(Layer(1), name)(torch.ones(2)).shape == (2,)
    assert isinstance(inspect.getattr_static(Layer, "class_above"), classmethod)
    assert isinstance(inspect.getattr_static(Layer, "static_above"), staticmethod)
    assert first_line(lambda: Layer(4).method(torch.ones(3))) == (
        "method() expected x: (4 = n), got (3,)"
    )
    assert first_line(lambda: Layer.class_above(torch.ones(2, 2))) == (
        "class_above() expected x: (b), got (2, 2): 2 axes, expected 1"
    )
    assert first_line(lambda: Layer.static_below(torch.ones(2, dtype=torch.long))) == (
        "static_below() expected x: float (b), got int64 (2,): float dtype needed"
    )


def test_properties_and_cached_properties_check_their_value():
    layer = Layer(3)
    for _ in range(2):
        assert layer.prop.shape == (3,)
        assert layer.prop_below.shape == (3,)
        assert layer.cached.shape == (3,)
    assert layer.cached is layer.cached  # still cached
    assert Layer.prop.__doc__ == "Three ones, whatever n is."
    assert Layer.cached.__doc__ == "Three ones, computed once per instance."
    for name in ("prop", "prop_below", "cached"):
        assert first_line(lambda name=name: getattr(Layer(4), name)) == (
            f"{name}() expected the output: (4 = n), got (3,)"
        )


def test_property_setter_is_checked():
    class Box:
        def __init__(self) -> None:
            self._x = torch.ones(2)

        def get(self) -> Float[Tensor, " 2"]:
            return self._x

        def put(self, x: Float[Tensor, " 2"]) -> None:
            self._x = x

        x = shaped(property(get, put))

    box = Box()
    box.x = torch.zeros(2)
    assert torch.equal(box.x, torch.zeros(2))
    assert first_line(lambda: setattr(box, "x", torch.zeros(3))) == (
        "put() expected x: (2), got (3,)"
    )


def test_abstractmethods_stay_abstract_in_either_order():
    class Base(abc.ABC):
        @shaped
        @abc.abstractmethod
        def above(self, x: Float[Tensor, " b"]) -> Float[Tensor, " b"]: ...

        @abc.abstractmethod
        @shaped
        def below(self, x: Float[Tensor, " b"]) -> Float[Tensor, " b"]: ...

    class Impl(Base):
        @shaped
        def above(self, x: Float[Tensor, " b"]) -> Float[Tensor, " b"]:
            return x

        @shaped
        def below(self, x: Float[Tensor, " b"]) -> Float[Tensor, " b"]:
            return x[:1]

    with pytest.raises(TypeError, match="abstract"):
        Base()
    assert Impl().above(torch.ones(2)).shape == (2,)
    assert first_line(lambda: Impl().below(torch.ones(2))) == (
        "below() expected the output: (2 = b), got (1,)"
    )


@shaped
@dataclasses.dataclass
class Batch:
    """A dataclass of tensors: the fields are checked at construction."""

    x: Float[Tensor, "b d"]
    y: Int[Tensor, " b"]
    seen: list = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        # The bindings of the fields are visible here, as in jaxtyping.
        self.seen.append(isinstance(torch.ones(self.x.shape[0] + 1), Float[Tensor, " b"]))


def test_dataclasses_stay_classes_and_check_their_fields():
    for _ in range(2):
        batch = Batch(torch.ones(4, 3), torch.zeros(4, dtype=torch.long))
        assert isinstance(batch, Batch) and dataclasses.is_dataclass(batch)
        assert batch.seen == [False]  # b=4 is bound in __post_init__: a 5-vector does not fit
    assert inspect.isclass(Batch)
    with pytest.raises(shapekit.ShapeError, match="^" + re.escape(
        "Batch() expected y: (4 = b), got (3,)\n"
        "  bound so far: b=4 d=3 (from x)\n"
        "  fix: give y size 4 along axis 0 (b), as bound by x"
    ) + "$"):
        Batch(torch.ones(4, 3), torch.zeros(3, dtype=torch.long))


def test_no_type_check_on_either_side_turns_checks_off():
    @typing.no_type_check
    @shaped
    def outside(x: Float[Tensor, " b"]) -> Float[Tensor, " b"]:
        return x[:1]

    @shaped
    @typing.no_type_check
    def inside(x: Float[Tensor, " b"]) -> Float[Tensor, " b"]:
        return x[:1]

    assert outside(torch.ones(3)).shape == (1,)
    assert inside(torch.ones(3)).shape == (1,)

    @shaped
    @typing.no_type_check
    @dataclasses.dataclass
    class Unchecked:
        x: Float[Tensor, " 2"]

    assert Unchecked(torch.ones(5)).x.shape == (5,)


def test_generators_check_their_arguments():
    @shaped
    def rows(x: Float[Tensor, "n d"]) -> Iterator[Float[Tensor, " d"]]:
        yield from x

    for _ in range(2):
        assert [r.shape for r in rows(torch.ones(2, 3))] == [(3,), (3,)]
    assert first_line(lambda: rows(torch.ones(3))) == (
        "rows() expected x: (n, d), got (3,): 1 axis, expected 2"
    )


def test_async_functions_check_arguments_and_the_awaited_result():
    @shaped
    async def halve(x: Float[Tensor, " b"]) -> Float[Tensor, " b"]:
        await asyncio.sleep(0)
        return x[: max(len(x) // 2, 1)]

    assert inspect.iscoroutinefunction(halve)
    assert asyncio.run(halve(torch.ones(1))).shape == (1,)
    assert first_line(lambda: asyncio.run(halve(torch.ones(4)))) == (
        "halve() expected the output: (4 = b), got (2,)"
    )
    assert first_line(lambda: asyncio.run(halve(torch.ones(2, 2)))) == (
        "halve() expected x: (b), got (2, 2): 2 axes, expected 1"
    )


def test_star_args_kwargs_keyword_only_and_defaults():
    @shaped
    def stack(*xs: Float[Tensor, " n"], scale: float = 1.0, **named: Float[Tensor, " n"]
              ) -> Float[Tensor, "k n"]:
        return torch.stack([*xs, *named.values()]) * scale

    for _ in range(2):
        assert stack(torch.ones(3), torch.ones(3), extra=torch.ones(3)).shape == (3, 3)
        assert stack(torch.ones(3), scale=2.0).shape == (1, 3)
    with pytest.raises(shapekit.ShapeError, match="^" + re.escape(
        "stack() expected xs[1]: (3 = n), got (4,)\n"
        "  bound so far: n=3 (from xs[0])\n"
        "  fix: give xs[1] size 3 along axis 0 (n), as bound by xs[0]"
    ) + "$"):
        stack(torch.ones(3), torch.ones(4))
    with pytest.raises(shapekit.ShapeError, match="^" + re.escape(
        "stack() expected named['extra']: (3 = n), got (4,)\n"
        "  bound so far: n=3 (from xs[0])\n"
        "  fix: give named['extra'] size 3 along axis 0 (n), as bound by xs[0]"
    ) + "$"):
        stack(torch.ones(3), extra=torch.ones(4))
    assert first_line(lambda: stack(torch.ones(3), scale="2")).startswith(
        "stack() expected scale: float, got str"
    )

    @shaped
    def keyword_only(x: Float[Tensor, " n"], *, y: Float[Tensor, " n"]) -> None:
        pass

    keyword_only(torch.ones(2), y=torch.ones(2))
    assert first_line(lambda: keyword_only(torch.ones(2), y=torch.ones(3))) == (
        "keyword_only() expected y: (2 = n), got (3,)"
    )


class _GlobalThing:
    pass


def test_unannotated_varargs_kwargs_and_defaults():
    @shaped
    def anything(*args, **kwargs):
        return len(args) + len(kwargs)

    @shaped
    def with_default(x: int, y=1):
        return x + y

    for _ in range(2):
        assert anything(1, 2, a=3) == 3
        assert with_default(1) == 2
    assert first_line(lambda: with_default("1")) == "with_default() expected x: int, got str"


def test_unpassed_defaults_are_not_checked():
    @shaped
    def maybe(x: Float[Tensor, " n"] = None) -> None:  # a None default, as jaxtyping allows
        pass

    maybe()
    maybe(torch.ones(2))
    assert first_line(lambda: maybe(torch.ones(2, 2))) == (
        "maybe() expected x: (n), got (2, 2): 2 axes, expected 1"
    )


def test_string_annotations_global_and_local():
    @shaped
    def keep(x: _GlobalThing) -> _GlobalThing:
        return x

    @shaped
    def bad_return(x: int) -> _GlobalThing:
        return x

    thing = _GlobalThing()
    assert keep(thing) is thing
    assert first_line(lambda: keep(1)) == "keep() expected x: _GlobalThing, got int"
    assert first_line(lambda: bad_return(1)) == (
        "bad_return() expected the output: _GlobalThing, got int"
    )

    class LocalThing:
        pass

    @shaped
    def local(x: LocalThing, y: Float[Tensor, " n"]) -> LocalThing:
        return x

    # Under `from __future__ import annotations` a local class cannot be resolved at run time:
    # no spurious error for it, and the annotations that resolve are still checked.
    local(LocalThing(), torch.ones(2))
    assert first_line(lambda: local(LocalThing(), torch.ones(2, 2))) == (
        "local() expected y: (n), got (2, 2): 2 axes, expected 1"
    )


def test_nested_generator_calls_get_their_own_bindings():
    @shaped
    def gen(a: Float[Tensor, "*shape"]) -> Iterator[Float[Tensor, "*shape"]]:
        yield a

    @shaped
    def twice() -> None:
        next(gen(torch.zeros(2)))
        next(gen(torch.zeros(3, 4)))  # another call, another *shape

    twice()
    twice()


def test_print_bindings_in_the_body(capfd):
    @shaped
    def show(x: Float[Tensor, "foo bar"]) -> None:
        jaxtyping.print_bindings()

    for _ in range(2):  # the second call is a "once" hit: the same text
        capfd.readouterr()
        show(torch.zeros(3, 4))
        text, _ = capfd.readouterr()
        assert text == (
            "The current values for each jaxtyping axis annotation are as follows.\nfoo=3\nbar=4\n"
        )


def test_identity_and_metadata():
    assert Layer.method is Layer.method
    assert Layer.method.__name__ == "method" and Layer.method.__wrapped__.__name__ == "method"
    assert Batch.__init__.__wrapped__.__qualname__ == "Batch.__init__"
