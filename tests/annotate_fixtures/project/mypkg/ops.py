"""Tensor helpers."""

import torch


def masked_mean(x, mask):
    # mean over time of the positions the mask keeps
    kept = mask.unsqueeze(-1).to(x.dtype)
    return (x * kept).sum(1) / kept.sum(1).clamp(min=1)


def pairwise_distances(a, b):
    return torch.cdist(a, b)


def causal_mask(size):
    return torch.ones(size, size, dtype=torch.bool).tril()


def total_loss(losses, weights=None):
    """Sum of named scalar losses."""
    if weights is None:
        return sum(losses.values())
    return sum(weights[k] * v for k, v in losses.items())
