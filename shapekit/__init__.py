"""shapekit: teach tensor shapes and catch shape bugs in PyTorch.

>>> import torch, shapekit
>>> layer = shapekit.nn.Linear(3, 2)
>>> layer(torch.ones(4, 3)).shape
torch.Size([4, 2])
"""

from . import nn
from ._data import (
    VOCAB,
    Names,
    Splits,
    build_dataset,
    decode,
    encode,
    itos,
    load_names,
    make_splits,
    read_names_file,
    split_words,
    stoi,
)
from ._errors import DataError, PitfallWarning, ShapeError
from ._modes import checks, get_checks, set_checks
from ._shaped import shaped

__version__ = "0.1.0"

__all__ = [
    "VOCAB",
    "DataError",
    "Names",
    "PitfallWarning",
    "ShapeError",
    "Splits",
    "build_dataset",
    "checks",
    "decode",
    "encode",
    "get_checks",
    "itos",
    "load_names",
    "make_splits",
    "nn",
    "read_names_file",
    "set_checks",
    "shaped",
    "split_words",
    "stoi",
]
