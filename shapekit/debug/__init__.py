"""Debugging tools: ``trace`` (a per-layer shape table), ``explain`` (torch's shape errors re-raised
with the operands, your line and a fix) and ``detect`` (that, plus warnings for silent shape bugs,
one rule per pitfall page).

>>> import torch
>>> from shapekit import nn
>>> from shapekit.debug import trace
>>> t = trace(nn.Sequential([nn.Linear(3, 4), nn.Tanh()]), torch.zeros(2, 3))
>>> [(row.path, row.output_shapes) for row in t.rows]
[('', ((2, 4),)), ('layers[0]', ((2, 4),)), ('layers[1]', ((2, 4),))]

Everything here is also importable from ``shapekit``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_names

__all__ = ["COLUMNS", "DOCS_URL", "RULES", "Row", "Trace", "detect", "explain", "print_trace",
           "trace"]

__getattr__, __dir__ = lazy_names(__name__, {
    **dict.fromkeys(("COLUMNS", "DEFAULT_COLUMNS", "Row", "Trace", "print_trace", "trace"),
                    "._trace"),
    "explain": "._explain",
    "detect": "._detect",
    **dict.fromkeys(("DOCS_URL", "RULES", "docs_url"), "._pitfalls"),
    **dict.fromkeys(("is_user_file", "location"), "._frames"),
    **dict.fromkeys(("load_ipython_extension", "unload_ipython_extension"), "._ipython"),
})

if TYPE_CHECKING:
    from ._detect import detect
    from ._explain import explain
    from ._frames import is_user_file, location
    from ._ipython import load_ipython_extension, unload_ipython_extension
    from ._pitfalls import DOCS_URL, RULES, docs_url
    from ._trace import COLUMNS, DEFAULT_COLUMNS, Row, Trace, print_trace, trace
