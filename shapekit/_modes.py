"""Check modes: how often annotated shapes are checked at run time.

- ``"once"`` (the default): each checked function checks each new *shape signature* of its
  arguments (the shapes and dtypes of its tensors, the identity of ``self``) once, then trusts it.
  A training loop that feeds the same shapes every step pays for one check, so learners can leave
  checks on. What it can miss: a return shape that depends on tensor *values* rather than shapes,
  and a module whose parameters are replaced by tensors of another shape between calls.
- ``"always"``: every call is checked by beartype + jaxtyping.
- ``"off"``: no annotation checks, and Embedding no longer looks for negative indices (which, as
  in plain torch, then wrap around to the last rows). The guards that stop a crash deep inside
  torch or a NaN (a wrong dtype, BatchNorm on one example, an index past the table) still run.

The environment variable ``SHAPEKIT_CHECKS`` sets the mode at import time.

>>> import shapekit
>>> with shapekit.checks("always"):
...     shapekit.get_checks()
'always'
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["MODES", "checks", "get_checks", "set_checks"]

MODES = ("always", "once", "off")
DEFAULT_MODE = "once"


def _validate(mode: object, origin: str) -> str:
    if mode not in MODES:
        valid = ", ".join(repr(m) for m in MODES)
        raise ValueError(f"{origin}={mode!r} is not a check mode; use one of {valid}")
    return mode  # type: ignore[return-value]


class _State:
    mode: str = _validate(os.environ.get("SHAPEKIT_CHECKS", DEFAULT_MODE), "SHAPEKIT_CHECKS")
    generation: int = 0  # bumped on every change, so "once" caches forget what they trusted


def get_checks() -> str:
    """The current check mode: ``"always"``, ``"once"`` or ``"off"``.

    >>> get_checks() in ("always", "once", "off")
    True
    """
    return _State.mode


def set_checks(mode: str) -> str:
    """Set the check mode for the whole process; returns the previous mode.

    >>> previous = set_checks("always")
    >>> _ = set_checks(previous)
    """
    previous = _State.mode
    _State.mode = _validate(mode, "set_checks(mode)")
    _State.generation += 1
    return previous


@contextmanager
def checks(mode: str) -> Iterator[None]:
    """Use ``mode`` inside a ``with`` block, then restore the previous mode.

    >>> with checks("off"):
    ...     get_checks()
    'off'
    """
    previous = set_checks(mode)
    try:
        yield
    finally:
        set_checks(previous)
