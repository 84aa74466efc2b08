"""shapekit: teach tensor shapes and catch shape bugs in PyTorch.

>>> import torch, shapekit
>>> layer = shapekit.nn.Linear(3, 2)
>>> layer(torch.ones(4, 3)).shape
torch.Size([4, 2])
"""

from . import nn
from ._conv import ConvWaveNet, pad_names, to_conv, windows_loop
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
from ._detect import detect
from ._errors import DataError, PitfallWarning, ShapeError
from ._explain import explain
from ._models import ROWS, ModelSpec, build_model
from ._modes import checks, get_checks, set_checks
from ._pitfalls import DOCS_URL, RULES
from ._sample import sample
from ._shaped import shaped
from ._trace import Row, Trace, print_trace, trace
from ._train import TrainResult, evaluate, train

__version__ = "0.1.0"

__all__ = [
    "DOCS_URL",
    "ROWS",
    "RULES",
    "VOCAB",
    "ConvWaveNet",
    "DataError",
    "ModelSpec",
    "Names",
    "PitfallWarning",
    "Row",
    "ShapeError",
    "Splits",
    "Trace",
    "TrainResult",
    "build_dataset",
    "build_model",
    "checks",
    "decode",
    "detect",
    "encode",
    "evaluate",
    "explain",
    "get_checks",
    "itos",
    "load_names",
    "make_splits",
    "nn",
    "pad_names",
    "print_trace",
    "read_names_file",
    "sample",
    "set_checks",
    "shaped",
    "split_words",
    "stoi",
    "to_conv",
    "trace",
    "train",
    "windows_loop",
]
