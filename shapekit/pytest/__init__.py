"""The pytest plugin (the ``pytest11`` entry point ``shapekit``, in :mod:`shapekit.pytest.plugin`):
``--shapekit`` runs each test under ``detect(strict=True)``, ``--shapekit-packages`` checks a
package's annotations, and the ``shapes`` fixture is a :class:`Shapes`.

>>> import numpy as np
>>> from shapekit.pytest import Shapes
>>> shapes = Shapes()
>>> _ = shapes.check(np.zeros((4, 8)), "batch time")
>>> shapes.sizes
{'batch': 4, 'time': 8}
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_names

__all__ = ["Shapes"]

__getattr__, __dir__ = lazy_names(__name__, {"Shapes": "._shapes"})

if TYPE_CHECKING:
    from ._shapes import Shapes
