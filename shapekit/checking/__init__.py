"""Checking: the error shapekit raises, shape annotations for your own code (``@shaped``) and the
check modes that decide how often annotations are checked.

>>> import torch
>>> from jaxtyping import Float
>>> from shapekit.checking import shaped
>>> @shaped
... def rows(x: Float[torch.Tensor, "batch 3"]) -> Float[torch.Tensor, " batch"]:
...     return x.sum(-1)
>>> rows(torch.ones(4, 3)).shape
torch.Size([4])

Everything here is also importable from ``shapekit``. Torch loads only with ``shaped``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_names

__all__ = ["DataError", "PitfallWarning", "ShapeError", "checks", "get_checks", "set_checks",
           "shape_text", "shaped"]

__getattr__, __dir__ = lazy_names(__name__, {
    **dict.fromkeys(("DataError", "PitfallWarning", "ShapeError", "shape_error_like",
                     "shape_text"), "._errors"),
    **dict.fromkeys(("checks", "current_mode", "get_checks", "set_checks"), "._modes"),
    "shaped": "._shaped",
    # for shapekit's other subpackages (the layers, trace, the import hook): not public API
    **dict.fromkeys(("Failure", "annotations_of", "array_hint", "is_array_hint"), "._shaped"),
    # the import hook that puts @shaped on a package's annotated functions as they import
    **dict.fromkeys(("PACKAGE_NAME", "Finder", "Instrumenter", "Loader", "package_list"),
                    "._import_hook"),
}, modules={"dims": "._dims"})  # dims: the torch-free dim-string parser and matcher

if TYPE_CHECKING:
    from . import _dims as dims
    from ._errors import DataError, PitfallWarning, ShapeError, shape_error_like, shape_text
    from ._import_hook import PACKAGE_NAME, Finder, Instrumenter, Loader, package_list
    from ._modes import checks, current_mode, get_checks, set_checks
    from ._shaped import Failure, annotations_of, array_hint, is_array_hint, shaped
