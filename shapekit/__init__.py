"""shapekit: teach tensor shapes and catch shape bugs in PyTorch.

>>> import torch, shapekit
>>> layer = shapekit.nn.Linear(3, 2)
>>> layer(torch.ones(4, 3)).shape
torch.Size([4, 2])
"""

from . import nn
from ._errors import DataError, PitfallWarning, ShapeError
from ._modes import checks, get_checks, set_checks
from ._shaped import shaped

__version__ = "0.1.0"

__all__ = [
    "DataError",
    "PitfallWarning",
    "ShapeError",
    "checks",
    "get_checks",
    "nn",
    "set_checks",
    "shaped",
]
