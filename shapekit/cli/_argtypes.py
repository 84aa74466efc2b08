"""argparse value types with shapekit's messages: what was expected, what was got, the fix."""

from __future__ import annotations

import argparse

__all__ = ["count", "device", "nonneg_int", "positive_float", "positive_int", "row"]


def count(example: str):
    """An argparse type for an int >= 1 whose fix suggests ``example`` (a value that fits the
    flag: ``--threads`` wants 1, ``--steps`` 1000).

    >>> count("1")("4")
    4
    """

    def parse(text: str) -> int:
        value = _int(text, example)
        if value < 1:
            raise argparse.ArgumentTypeError(
                f"expected a positive integer, got {text}; fix: e.g. {example}")
        return value

    parse.__name__ = "positive integer"  # what argparse names in its own messages
    return parse


positive_int = count("1000")
positive_int.__doc__ = """An int >= 1 (a number of steps: the fix suggests 1000).

    >>> positive_int("200")
    200
    """


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
    from ..lecture.runs import resolve_row

    try:
        return resolve_row(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def device(text: str) -> str:
    """A torch device this machine has: ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.

    >>> device("cpu")
    'cpu'
    """
    import torch

    available = ["cpu"]
    if torch.cuda.is_available():
        available += ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if torch.backends.mps.is_available():
        available.append("mps")
    if text not in available:
        known = text in ("cuda", "mps") or text.startswith("cuda:")
        why = "not available on this machine" if known else "not a device shapekit trains on"
        raise argparse.ArgumentTypeError(
            f"{text!r} is {why}; expected one of {', '.join(available)} (what torch finds here); "
            "fix: --device cpu"
        )
    return text


def _int(text: str, example: str = "1000") -> int:
    try:
        return int(text.replace("_", "").replace(",", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an integer, got {text!r}; fix: e.g. {example}"
        ) from None
