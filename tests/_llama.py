"""A Llama-shaped decoder written for the trace tests: RMSNorm, multi-head causal attention
through ``F.scaled_dot_product_attention``, a SwiGLU MLP, untied embedding and head. With
``Config.llama_7b()`` (32 layers, d_model 4096, 32 heads, MLP 11008, vocab 32000) it has
6,738,415,616 parameters, as Llama 2 7B."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class Config:
    vocab: int = 256
    n_layer: int = 2
    d_model: int = 64
    n_head: int = 4
    d_mlp: int = 172

    @classmethod
    def llama_7b(cls) -> Config:
        return cls(vocab=32000, n_layer=32, d_model=4096, n_head=32, d_mlp=11008)

    def params(self) -> int:
        """The parameter count by formula: the oracle for trace's total."""
        d = self.d_model
        block = 4 * d * d + 3 * d * self.d_mlp + 2 * d  # attention, MLP, two norms
        return 2 * self.vocab * d + self.n_layer * block + d


class RMSNorm(nn.Module):
    def __init__(self, d: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class Attention(nn.Module):
    def __init__(self, c: Config) -> None:
        super().__init__()
        self.n_head = c.n_head
        self.q_proj = nn.Linear(c.d_model, c.d_model, bias=False)
        self.k_proj = nn.Linear(c.d_model, c.d_model, bias=False)
        self.v_proj = nn.Linear(c.d_model, c.d_model, bias=False)
        self.o_proj = nn.Linear(c.d_model, c.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        hs = C // self.n_head
        q = self.q_proj(x).view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
        k = self.k_proj(x).view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
        v = self.v_proj(x).view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, nh, T, hs)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, C))  # (B, T, C)


class MLP(nn.Module):
    def __init__(self, c: Config) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(c.d_model, c.d_mlp, bias=False)
        self.up_proj = nn.Linear(c.d_model, c.d_mlp, bias=False)
        self.down_proj = nn.Linear(c.d_mlp, c.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, c: Config) -> None:
        super().__init__()
        self.input_norm = RMSNorm(c.d_model)
        self.attn = Attention(c)
        self.post_norm = RMSNorm(c.d_model)
        self.mlp = MLP(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.input_norm(x))
        return x + self.mlp(self.post_norm(x))


class Llama(nn.Module):
    def __init__(self, c: Config) -> None:
        super().__init__()
        self.embed = nn.Embedding(c.vocab, c.d_model)
        self.layers = nn.ModuleList([Block(c) for _ in range(c.n_layer)])
        self.norm = RMSNorm(c.d_model)
        self.lm_head = nn.Linear(c.d_model, c.vocab, bias=False)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.embed(idx)  # (B, T, C)
        for layer in self.layers:
            x = layer(x)
        return self.lm_head(self.norm(x))  # (B, T, vocab)
