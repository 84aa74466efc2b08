"""Layers."""

import torch
from torch import nn

from .ops import masked_mean


class Projection(nn.Module):
    """x @ W + b on the last axis."""

    def __init__(self, fan_in, fan_out):
        super().__init__()
        self.fan_in = fan_in
        self.fan_out = fan_out
        self.weight = nn.Parameter(torch.randn(fan_in, fan_out) / fan_in**0.5)
        self.bias = nn.Parameter(torch.zeros(fan_out))

    def forward(self, x):
        return x @ self.weight + self.bias  # any leading axes ride along


class Encoder(nn.Module):
    def __init__(self, vocab, dim):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.proj = Projection(dim, dim)

    def forward(self, ids, mask=None):
        h = torch.tanh(self.proj(self.embed(ids)))
        if mask is None:
            mask = torch.ones_like(ids, dtype=torch.bool)
        return masked_mean(h, mask), h
