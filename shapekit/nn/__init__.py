"""The lecture's layers, torchified: from-scratch math, jaxtyping-annotated, checked at run time.

>>> import torch
>>> from shapekit import nn
>>> model = nn.Sequential([
...     nn.Embedding(27, 24),
...     nn.FlattenConsecutive(2), nn.Linear(48, 128, bias=False), nn.BatchNorm1d(128), nn.Tanh(),
...     nn.FlattenConsecutive(2), nn.Linear(256, 128, bias=False), nn.BatchNorm1d(128), nn.Tanh(),
...     nn.FlattenConsecutive(2), nn.Linear(256, 128, bias=False), nn.BatchNorm1d(128), nn.Tanh(),
...     nn.Linear(128, 27),
... ])
>>> model(torch.zeros(32, 8, dtype=torch.long)).shape
torch.Size([32, 27])
"""

from ._batchnorm import BatchNorm1d
from ._embedding import Embedding
from ._flatten import FlattenConsecutive
from ._linear import Linear
from ._sequential import Sequential
from ._tanh import Tanh

__all__ = ["BatchNorm1d", "Embedding", "FlattenConsecutive", "Linear", "Sequential", "Tanh"]
