"""shapekit: teach tensor shapes and catch shape bugs in PyTorch.

>>> import torch, shapekit
>>> layer = shapekit.nn.Linear(3, 2)
>>> layer(torch.ones(4, 3)).shape
torch.Size([4, 2])

Only the light modules load with ``import shapekit``; everything that needs torch loads on first
use (``shapekit.nn``, ``shapekit.trace``, ...), so the pytest plugin and the CLI's ``--help`` start
fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ._errors import DataError, PitfallWarning, ShapeError
from ._modes import checks, get_checks, set_checks

__version__ = "0.1.0"

# public name -> the private module that defines it, imported on first use
_LAZY = {
    "nn": ".nn",
    **dict.fromkeys(("ConvWaveNet", "pad_names", "to_conv", "windows_loop"), "._conv"),
    **dict.fromkeys(
        (
            "VOCAB", "Names", "Splits", "build_dataset", "decode", "encode", "itos", "load_names",
            "make_splits", "read_names_file", "split_words", "stoi",
        ),
        "._data",
    ),
    "detect": "._detect",
    "explain": "._explain",
    **dict.fromkeys(("ROWS", "ModelSpec", "build_model"), "._models"),
    **dict.fromkeys(("DOCS_URL", "RULES"), "._pitfalls"),
    "sample": "._sample",
    "shaped": "._shaped",
    **dict.fromkeys(("Row", "Trace", "print_trace", "trace"), "._trace"),
    **dict.fromkeys(("TrainResult", "evaluate", "train"), "._train"),
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'shapekit' has no attribute {name!r}")
    loaded = importlib.import_module(module, __name__)
    value = loaded if name == "nn" else getattr(loaded, name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def load_ipython_extension(ipython) -> None:
    """``%load_ext shapekit`` in IPython or Jupyter (``shapekit._ipython``; no torch import)."""
    from ._ipython import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython) -> None:
    """``%unload_ext shapekit``."""
    from ._ipython import unload_ipython_extension as unload

    unload(ipython)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


if TYPE_CHECKING:
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
    from ._explain import explain
    from ._models import ROWS, ModelSpec, build_model
    from ._pitfalls import DOCS_URL, RULES
    from ._sample import sample
    from ._shaped import shaped
    from ._trace import Row, Trace, print_trace, trace
    from ._train import TrainResult, evaluate, train

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
