"""Shared by the model/train/sample/CLI tests: the names file, the plain-torch oracle, the bug."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
NAMES = Path(os.environ.get("SHAPEKIT_NAMES") or ROOT.parent / "shared/data/names.txt")


@pytest.fixture(autouse=True)
def one_thread():
    """Run each test with one torch thread, as training does: this model's matmuls are tiny, and
    two threads on a busy 2-core machine spin in OpenMP barriers (a forward can take 100x longer).
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def names_path() -> Path:
    """names.txt, or skip: CI sets SHAPEKIT_NAMES; a checkout finds ../shared/data/names.txt."""
    if not NAMES.is_file():
        pytest.skip(f"names.txt not found at {NAMES}; set SHAPEKIT_NAMES=/path/to/names.txt")
    return NAMES


def reference():
    """tests/lecture_reference.py: the lecture's loop in plain torch."""
    import lecture_reference

    return lecture_reference


def buggy_batchnorm() -> type:
    """The lecture's buggy BatchNorm1d that shapekit ships for the hierarchical-bug row."""
    from shapekit.lecture._buggy_batchnorm import BuggyBatchNorm1d

    return BuggyBatchNorm1d


class UserBuggyBatchNorm1d(torch.nn.Module):
    """The lecture's buggy BatchNorm1d as a learner writes it in their own file (user code, so the
    detectors report its lines): statistics over axis 0 only, buffers replaced by assignment."""

    def __init__(self, dim: int, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self.gamma = torch.nn.Parameter(torch.ones(dim))
        self.beta = torch.nn.Parameter(torch.zeros(dim))
        self.register_buffer("running_mean", torch.zeros(dim))
        self.register_buffer("running_var", torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            xmean, xvar = x.mean(0, keepdim=True), x.var(0, keepdim=True)  # (1, T, C): the bug
        else:
            xmean, xvar = self.running_mean, self.running_var
        out = self.gamma * (x - xmean) / torch.sqrt(xvar + self.eps) + self.beta
        if self.training:
            with torch.no_grad():
                self.running_mean = (1 - self.momentum) * self.running_mean + self.momentum * xmean
                self.running_var = (1 - self.momentum) * self.running_var + self.momentum * xvar
        return out
