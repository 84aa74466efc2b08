"""shapekit: teach tensor shapes and catch shape bugs in PyTorch.

>>> import torch, shapekit
>>> layer = shapekit.nn.Linear(3, 2)
>>> layer(torch.ones(4, 3)).shape
torch.Size([4, 2])

The tool lives here: the checked layers (``shapekit.nn``), checking (``ShapeError``, ``@shaped``,
the check modes), ``trace``, ``explain``, ``detect`` and ``observe`` (for ``shapekit annotate``).
The lecture's own names (the names data set, its models, training and sampling) are in
:mod:`shapekit.lecture`. Each name is defined in a subpackage (``shapekit.checking``,
``shapekit.debug``, ``shapekit.lecture``, ``shapekit.annotate``, ``shapekit.cli``,
``shapekit.pytest``) and loads on first use, so ``import shapekit`` does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._lazy import lazy_names
from .checking import DataError, PitfallWarning, ShapeError, checks, get_checks, set_checks

__version__ = "0.1.0"

__all__ = [
    "DOCS_URL", "RULES", "DataError", "PitfallWarning", "Row", "ShapeError", "Trace", "checks",
    "detect", "explain", "get_checks", "lecture", "nn", "observe", "print_trace", "set_checks",
    "shaped", "trace",
]

__getattr__, __dir__ = lazy_names(__name__, {
    "nn": ".nn",
    "lecture": ".lecture",
    "shaped": ".checking",
    "observe": ".annotate",
    **dict.fromkeys(("DOCS_URL", "RULES", "Row", "Trace", "detect", "explain", "print_trace",
                     "trace"), ".debug"),
})


def load_ipython_extension(ipython) -> None:
    """``%load_ext shapekit`` in IPython or Jupyter (no torch import until a cell needs it)."""
    from .debug import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython) -> None:
    """``%unload_ext shapekit``."""
    from .debug import unload_ipython_extension as unload

    unload(ipython)


if TYPE_CHECKING:
    from . import lecture, nn
    from .annotate import observe
    from .checking import shaped
    from .debug import DOCS_URL, RULES, Row, Trace, detect, explain, print_trace, trace
