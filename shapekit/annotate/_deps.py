"""What the annotate subpackage uses of shapekit's other subpackages, imported in this one place:
the dim-string parser and matcher, and the import hook ``--shapekit-packages`` checks with (and
its package-list parsing)."""

from __future__ import annotations

from ..checking import Finder, Instrumenter, Loader, package_list
from ..checking import dims as _dims

Memo, match, parse = _dims.Memo, _dims.match, _dims.parse


def is_array_hint(hint: object) -> bool:
    """Whether ``hint`` is a jaxtyping array type (``Float[Tensor, "n"]``); loads torch."""
    from ..checking import is_array_hint as check

    return check(hint)


__all__ = ["Finder", "Instrumenter", "Loader", "Memo", "is_array_hint", "match", "package_list",
           "parse"]
