"""The ``shapekit`` command: ``shapekit --help`` lists its subcommands (lessons, train, sample,
reproduce, trace, completion), one private module each.

>>> from shapekit.cli import main
>>> main(["lessons", "--list"]) == 0  # doctest: +ELLIPSIS
01_indexing...
True
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_names

__all__ = ["main"]

__getattr__, __dir__ = lazy_names(__name__, dict.fromkeys(("build_parser", "main"), "._main"))

if TYPE_CHECKING:
    from ._main import build_parser, main
