"""The exception and warning types shapekit raises, and the one place messages are built.

Every message says what was expected, what was got, where the expectation came from and one
concrete fix::

    layers[2] Linear expected x: (batch, *time, 48 = fan_in), got (32, 4, 40)
      bound so far: batch=32 time=4 (from layers[1] FlattenConsecutive output)
      fix: the layer before produces 40 features; build Linear(40, ...) or change FlattenConsecutive(n)
"""  # noqa: E501 (the example message's fix line is one line)

from __future__ import annotations

import functools
from collections.abc import Sequence

__all__ = ["DataError", "PitfallWarning", "ShapeError", "shape_error_like", "shape_text"]


class ShapeError(RuntimeError):
    """The one exception type for every shape or dtype problem shapekit reports.

    It subclasses ``RuntimeError`` so code that already catches torch's shape errors keeps working.
    The message is built from parts, so a container (``Sequential``) can add where the failing layer
    sits and where its input came from before the message is shown:

    >>> err = ShapeError(expected="x: (batch, 3)", got="(4, 5)", fix="pass 3 features", where="f()")
    >>> print(err)
    f() expected x: (batch, 3), got (4, 5)
      fix: pass 3 features
    """

    __module__ = "shapekit"  # its public name, in tracebacks and reprs

    def __init__(
        self,
        *,
        expected: str,
        got: str,
        fix: str,
        where: str = "",
        bound: str = "",
        source: str = "",
        note: str = "",
    ) -> None:
        super().__init__()
        self.expected = expected
        self.got = got
        self.fix = fix
        self.where = where
        self.bound = bound
        self.source = source
        self.note = note
        self.path = ""  # filled in by containers, e.g. "layers[2]"
        self.kind = ""  # what failed: "size", "rank", "batch-missing", "dtype", "type", or ""
        # A container also names the layer before the failing one ("FlattenConsecutive(n)"), and a
        # layer may say how that helps: fix_previous = "or change {previous}".
        self.previous = ""
        self.fix_previous = ""

    def __str__(self) -> str:
        head = " ".join(part for part in (self.path, self.where) if part)
        lines = [f"{head} expected {self.expected}, got {self.got}".lstrip()]
        if self.note:
            lines[0] += f": {self.note}"
        if self.bound:
            source = f" (from {self.source})" if self.source else ""
            lines.append(f"  bound so far: {self.bound}{source}")
        elif self.source:
            lines.append(f"  input: {self.source}")
        fix = self.fix
        if self.previous and self.fix_previous:
            fix += " " + self.fix_previous.format(previous=self.previous)
        lines.append(f"  fix: {fix}")
        return "\n".join(lines)

    def __reduce__(self):  # keep the parts when pickled (pytest-xdist, multiprocessing)
        base = next((b for b in _COMPATIBLE if isinstance(self, b)), None)
        return (_rebuild, (self.__dict__, base))


def _rebuild(state: dict, base: type | None = None) -> ShapeError:
    cls = ShapeError if base is None else _subclass(base)
    err = cls.__new__(cls)
    RuntimeError.__init__(err)
    err.__dict__.update(state)
    return err


_COMPATIBLE = (ValueError, IndexError, TypeError)  # torch's other shape-error classes


@functools.cache
def _subclass(base: type) -> type:
    name = f"Shape{base.__name__}"
    return type(name, (ShapeError, base), {"__module__": ShapeError.__module__,
                                           "__qualname__": name})


def shape_error_like(err: BaseException) -> type[ShapeError]:
    """The ShapeError class for re-raising ``err``: also an instance of the class torch raised, so
    ``except ValueError`` around the user's code keeps working.

    >>> cls = shape_error_like(ValueError("Expected input batch_size (4) to match ..."))
    >>> cls.__name__, issubclass(cls, ShapeError), issubclass(cls, ValueError)
    ('ShapeValueError', True, True)
    >>> shape_error_like(RuntimeError("...")) is ShapeError
    True
    """
    base = next((b for b in _COMPATIBLE if isinstance(err, b)), None)
    return ShapeError if base is None else _subclass(base)


class PitfallWarning(UserWarning):
    """A detected *silent* shape bug: code that runs but almost certainly computes the wrong thing.

    ``rule`` is a stable identifier (``"view-transposes"``, ``"broadcast-n-by-n"``, ...) that names
    the pitfall's page in the docs.

    >>> w = PitfallWarning("x.view(B, C, T) reorders axes", rule="view-transposes")
    >>> w.rule
    'view-transposes'
    """

    __module__ = "shapekit"  # its public name, in tracebacks and reprs

    def __init__(self, message: str, *, rule: str) -> None:
        super().__init__(message)
        self.rule = rule

    def __reduce__(self):  # keep ``rule`` when pickled or copied (pytest-xdist, multiprocessing)
        return (_rebuild_warning, (str(self), self.rule))


def _rebuild_warning(message: str, rule: str) -> PitfallWarning:
    return PitfallWarning(message, rule=rule)


class DataError(ValueError):
    """A problem with a data file or a checkpoint: says what is wrong, where, and how to fix it.

    >>> str(DataError("names.txt line 3: 'Emma' has upper case; fix: lower-case the file"))
    "names.txt line 3: 'Emma' has upper case; fix: lower-case the file"
    """

    __module__ = "shapekit"  # its public name, in tracebacks and reprs


def shape_text(shape: Sequence[int]) -> str:
    """``(32, 4, 40)``: a shape as people write it (``(8,)`` for one axis).

    >>> shape_text((32, 4, 40)), shape_text((8,))
    ('(32, 4, 40)', '(8,)')
    """
    sizes = [str(int(s)) for s in shape]
    return "(" + ", ".join(sizes) + ("," if len(sizes) == 1 else "") + ")"
