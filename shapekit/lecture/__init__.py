"""The lecture (makemore part 5): the names data set and its splits, the five models of its
performance log, the training loop, sampling, and the hierarchical model as dilated convolutions.

>>> from shapekit.lecture import build_dataset, build_model
>>> X, Y = build_dataset(["emma", "olivia"], block_size=8)
>>> X.shape, Y.shape
(torch.Size([12, 8]), torch.Size([12]))
>>> build_model("wavenet")(X).shape
torch.Size([12, 27])

Run directories (config, checkpoint, metrics, the lock) are in :mod:`shapekit.lecture.runs`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_names

__all__ = [
    "ROWS", "VOCAB", "BuggyBatchNorm1d", "ConvWaveNet", "ModelSpec", "Names", "Splits",
    "TrainResult", "build_dataset", "build_model", "decode", "encode", "evaluate", "itos",
    "load_names", "make_splits", "pad_names", "read_names_file", "runs", "sample", "split_words",
    "stoi", "to_conv", "train", "windows_loop",
]

# What every run, lesson and docs page that used the offline names prints (they look for these
# words). Defined here, not in ._data, so the lessons runner can look for it without torch.
FALLBACK_NOTICE = "first names shipped by the `names` package"

__getattr__, __dir__ = lazy_names(__name__, {
    **dict.fromkeys(("VOCAB", "Names", "Splits", "build_dataset", "decode", "encode", "itos",
                     "load_names", "make_splits", "read_names_file", "split_words", "stoi"),
                    "._data"),
    **dict.fromkeys(("ROWS", "ModelSpec", "build_model"), "._models"),
    "BuggyBatchNorm1d": "._buggy_batchnorm",
    **dict.fromkeys(("TrainResult", "evaluate", "train"), "._train"),
    "sample": "._sample",
    **dict.fromkeys(("ConvWaveNet", "pad_names", "to_conv", "windows_loop"), "._conv"),
    "runs": ".runs",
})

if TYPE_CHECKING:
    from . import runs
    from ._buggy_batchnorm import BuggyBatchNorm1d
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
    from ._models import ROWS, ModelSpec, build_model
    from ._sample import sample
    from ._train import TrainResult, evaluate, train
