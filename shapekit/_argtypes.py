"""argparse value types with shapekit's messages: what was expected, what was got, the fix."""

from __future__ import annotations

import argparse

__all__ = ["nonneg_int", "positive_float", "positive_int", "row"]


def positive_int(text: str) -> int:
    """An int >= 1.

    >>> positive_int("200")
    200
    """
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}; fix: e.g. 1000")
    return value


def nonneg_int(text: str) -> int:
    """An int >= 0."""
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text}; fix: e.g. 0")
    return value


def positive_float(text: str) -> float:
    """A finite float > 0."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}; fix: e.g. 0.1")
    return value


def row(text: str):
    """A row of the lecture's performance log, by name or number (a ``ModelSpec``)."""
    from ._models import resolve_row

    try:
        return resolve_row(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _int(text: str) -> int:
    try:
        return int(text.replace("_", "").replace(",", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an integer, got {text!r}; fix: e.g. 1000"
        ) from None
