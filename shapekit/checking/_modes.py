"""Check modes: how often annotated shapes are checked at run time.

- ``"once"`` (the default): each checked function checks each new *signature* of a call in
  full, then trusts it. A hit gives the verdict a full check would, because the signature holds
  all the full check reads: each annotated argument's class (``Parameter`` is not ``Tensor``),
  shape and dtype, the same for numpy arrays and for the tensors inside lists, tuples, dicts,
  deques and dataclasses (their class and contents), scalars by value, other objects by class
  (by identity when the annotation is not a plain class), and the attributes f-string dims read
  (``{self.fan_in}``, ``{cfg.d}``) by value. The output is keyed too (class, shape, dtype, and
  any dims the body bound): a new one, say after ``model.eval()``, is checked. Not keyed, hence
  checked at every call: containers of more than 64 items, and f-string dims that are not a
  plain ``name.attribute`` path. On a hit the body still runs with the dims the arguments bound,
  so ``isinstance(x, Float[Tensor, "batch"])``, nested ``@jaxtyped`` helpers and
  ``jaxtyping.print_bindings()`` inside it behave as in a full check. A training loop that feeds
  the same shapes every step pays for one check. Under ``torch.compile`` the same holds: a
  trusted signature runs in the graph, and a new output is checked outside it.
- ``"always"``: every call is checked by beartype + jaxtyping.
- ``"off"``: no annotation checks, and Embedding no longer looks for negative indices (which, as
  in plain torch, then wrap around to the last rows). The guards that stop a crash deep inside
  torch or a NaN (a wrong dtype, BatchNorm on one example, an index past the table) still run.

Who sees which mode, as with torch's own switches:

- ``set_checks(mode)`` sets the mode of the whole process (like ``torch.set_default_dtype``); the
  environment variable ``SHAPEKIT_CHECKS`` gives its value at import time.
- ``with checks(mode):`` applies to the code in the block and what it calls, in the current
  thread only, like ``torch.no_grad()``. Blocks nest, and blocks in different threads may
  overlap in any order: each restores exactly what it replaced, in its own thread. A new thread
  starts with the process-wide mode. As with ``torch.no_grad()``, the asyncio tasks of one thread
  share its mode: don't hold a block open across an ``await`` while another task opens one.

The per-thread mode is a ``threading.local``, which ``torch.compile`` reads (and guards on) while
it traces: a compiled model sees the mode of the thread that calls it.

>>> import shapekit
>>> with shapekit.checks("always"):
...     shapekit.get_checks()
'always'
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["MODES", "checks", "current_mode", "get_checks", "set_checks"]

MODES = ("always", "once", "off")
DEFAULT_MODE = "once"


def _validate(mode: object, origin: str) -> str:
    if mode not in MODES:
        valid = ", ".join(repr(m) for m in MODES)
        raise ValueError(f"{origin}={mode!r} is not a check mode; use one of {valid}")
    return mode  # type: ignore[return-value]


class _State:
    """The process-wide mode, and how many ``checks()`` blocks are open in any thread."""

    mode: str = _validate(os.environ.get("SHAPEKIT_CHECKS", DEFAULT_MODE), "SHAPEKIT_CHECKS")
    generation: int = 0  # bumped on every change, so "once" caches forget what they trusted
    open_blocks: int = 0  # while 0, no context overrides the process-wide mode: skip the lookup


# .mode: the mode the innermost open `checks()` block of this thread set (unset outside them).
_thread = threading.local()
_lock = threading.Lock()  # guards the counters, which threads update together


def current_mode() -> str:
    """The mode in force here: the innermost ``checks()`` block's, else the process-wide one.

    >>> current_mode() in MODES
    True
    """
    if _State.open_blocks:
        mode = getattr(_thread, "mode", None)
        if mode is not None:
            return mode
    return _State.mode


def get_checks() -> str:
    """The current check mode: ``"always"``, ``"once"`` or ``"off"``.

    >>> get_checks() in ("always", "once", "off")
    True
    """
    return current_mode()


def set_checks(mode: str) -> str:
    """Set the check mode of the whole process; returns the previous process-wide mode.

    A ``checks()`` block that is open in this thread still wins inside it.

    >>> previous = set_checks("always")
    >>> _ = set_checks(previous)
    """
    mode = _validate(mode, "set_checks(mode)")
    with _lock:
        previous, _State.mode = _State.mode, mode
        _State.generation += 1
    return previous


@contextmanager
def checks(mode: str) -> Iterator[None]:
    """Use ``mode`` inside a ``with`` block, in this thread only, then restore the mode that was
    in force before it.

    >>> with checks("off"):
    ...     get_checks()
    'off'
    """
    mode = _validate(mode, "checks(mode)")
    with _lock:
        _State.open_blocks += 1
    replaced = getattr(_thread, "mode", None)
    _thread.mode = mode
    try:
        yield
    finally:
        _thread.mode = replaced
        with _lock:
            _State.open_blocks -= 1
