"""A small unannotated PyTorch package, as a user writes it before shapekit annotate."""

from .layers import Encoder, Projection
from .ops import causal_mask, masked_mean, pairwise_distances, total_loss

__all__ = ["Encoder", "Projection", "causal_mask", "masked_mean", "pairwise_distances",
           "total_loss"]
