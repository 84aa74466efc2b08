"""Transformer code as the well-known repositories write it (nanoGPT, minGPT, Hugging Face
GPT-2/BERT, vit-pytorch, x-transformers), at toy sizes. Correct code: detect() must stay silent.

Sizes are picked so the ambiguous cases occur: batch == block size (a padding mask could line up
with the query axis), square Linear layers, sequence length == channels.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn

# --- nanoGPT -----------------------------------------------------------------------------------


class CausalSelfAttention(nn.Module):
    def __init__(self, n_embd, n_head, block_size, flash=False):
        super().__init__()
        assert n_embd % n_head == 0
        self.c_attn = nn.Linear(n_embd, 3 * n_embd)
        self.c_proj = nn.Linear(n_embd, n_embd)
        self.n_head, self.n_embd, self.flash = n_head, n_embd, flash
        self.register_buffer("bias", torch.tril(torch.ones(block_size, block_size))
                             .view(1, 1, block_size, block_size))

    def forward(self, x):
        B, T, C = x.size()  # batch size, sequence length, embedding dimensionality (n_embd)
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        if self.flash:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
            att = att.masked_fill(self.bias[:, :, :T, :T] == 0, float("-inf"))
            att = F.softmax(att, dim=-1)
            y = att @ v  # (B, nh, T, T) x (B, nh, T, hs) -> (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # re-assemble all head outputs
        return self.c_proj(y)


class MLP(nn.Module):
    def __init__(self, n_embd):
        super().__init__()
        self.c_fc = nn.Linear(n_embd, 4 * n_embd)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * n_embd, n_embd)

    def forward(self, x):
        return self.c_proj(self.gelu(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self, n_embd, n_head, block_size, flash=False):
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd)
        self.attn = CausalSelfAttention(n_embd, n_head, block_size, flash)
        self.ln_2 = nn.LayerNorm(n_embd)
        self.mlp = MLP(n_embd)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, vocab_size=65, block_size=8, n_layer=2, n_head=2, n_embd=32, flash=False):
        super().__init__()
        self.block_size = block_size
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(vocab_size, n_embd),
            wpe=nn.Embedding(block_size, n_embd),
            h=nn.ModuleList([Block(n_embd, n_head, block_size, flash) for _ in range(n_layer)]),
            ln_f=nn.LayerNorm(n_embd),
        ))
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # weight tying
        self.apply(self._init_weights)

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, idx, targets=None):
        _, t = idx.size()
        pos = torch.arange(0, t, dtype=torch.long)  # shape (t)
        x = self.transformer.wte(idx) + self.transformer.wpe(pos)
        for block in self.transformer.h:
            x = block(x)
        x = self.transformer.ln_f(x)
        if targets is not None:
            logits = self.lm_head(x)
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1),
                                   ignore_index=-1)
        else:
            logits = self.lm_head(x[:, [-1], :])  # note: using list [-1] to preserve the time dim
            loss = None
        return logits, loss

    @torch.no_grad()
    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None):
        for _ in range(max_new_tokens):
            idx_cond = idx if idx.size(1) <= self.block_size else idx[:, -self.block_size:]
            logits, _ = self(idx_cond)
            logits = logits[:, -1, :] / temperature
            if top_k is not None:
                v, _ = torch.topk(logits, min(top_k, logits.size(-1)))
                logits[logits < v[:, [-1]]] = -float("Inf")
            probs = F.softmax(logits, dim=-1)
            idx_next = torch.multinomial(probs, num_samples=1)
            idx = torch.cat((idx, idx_next), dim=1)
        return idx


def nanogpt(flash=False):
    torch.manual_seed(1337)
    model = GPT(flash=flash)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95),
                                  weight_decay=0.1)
    data = torch.randint(0, 65, (500,))
    batch_size, block_size = 8, 8  # batch == block: the ambiguous case for masks
    for _ in range(3):
        ix = torch.randint(len(data) - block_size, (batch_size,))
        x = torch.stack([data[i:i + block_size] for i in ix])
        y = torch.stack([data[i + 1:i + 1 + block_size] for i in ix])
        _, loss = model(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    model.eval()
    model.generate(torch.zeros((1, 1), dtype=torch.long), max_new_tokens=10, top_k=5)


# --- Hugging Face BERT / GPT-2 style: extended attention masks ---------------------------------


class BertSelfAttention(nn.Module):
    def __init__(self, hidden=32, heads=4):
        super().__init__()
        self.heads, self.head_size = heads, hidden // heads
        self.query, self.key, self.value = (nn.Linear(hidden, hidden) for _ in range(3))
        self.dense = nn.Linear(hidden, hidden)

    def transpose_for_scores(self, x):
        new_x_shape = (*x.size()[:-1], self.heads, self.head_size)
        return x.view(new_x_shape).permute(0, 2, 1, 3)

    def forward(self, hidden_states, attention_mask):
        q = self.transpose_for_scores(self.query(hidden_states))
        k = self.transpose_for_scores(self.key(hidden_states))
        v = self.transpose_for_scores(self.value(hidden_states))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_size)
        scores = scores + attention_mask  # (B, 1, 1, T), precomputed
        probs = nn.functional.softmax(scores, dim=-1)
        context = torch.matmul(probs, v).permute(0, 2, 1, 3).contiguous()
        context = context.view((*context.size()[:-2], self.heads * self.head_size))
        return self.dense(context)


class TinyBert(nn.Module):
    def __init__(self, vocab=100, hidden=32, max_len=8, layers=2):
        super().__init__()
        self.word = nn.Embedding(vocab, hidden)
        self.position = nn.Embedding(max_len, hidden)
        self.token_type = nn.Embedding(2, hidden)
        self.norm = nn.LayerNorm(hidden, eps=1e-12)
        self.layers = nn.ModuleList([BertSelfAttention(hidden) for _ in range(layers)])
        self.pooler = nn.Linear(hidden, hidden)
        self.classifier = nn.Linear(hidden, 3)

    def forward(self, input_ids, attention_mask, token_type_ids):
        B, T = input_ids.shape
        position_ids = torch.arange(T).unsqueeze(0).expand(B, T)
        x = self.word(input_ids) + self.position(position_ids) + self.token_type(token_type_ids)
        x = self.norm(x)
        extended = attention_mask[:, None, None, :].to(x.dtype)  # (B, 1, 1, T)
        extended = (1.0 - extended) * torch.finfo(x.dtype).min
        for layer in self.layers:
            x = x + layer(x, extended)
        pooled = torch.tanh(self.pooler(x[:, 0]))
        return self.classifier(pooled)


def hf_bert():
    torch.manual_seed(0)
    model = TinyBert()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    B = T = 8
    lengths = torch.tensor([8, 5, 3, 8, 6, 2, 7, 4])
    mask = (torch.arange(T)[None, :] < lengths[:, None]).long()  # (B, T), B == T
    ids = torch.randint(0, 100, (B, T)) * mask
    types = torch.zeros(B, T, dtype=torch.long)
    labels = torch.randint(0, 3, (B,))
    for _ in range(2):
        loss = F.cross_entropy(model(ids, mask, types), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        model(ids, mask, types).argmax(-1)


def gpt2_padded_batch():
    """GPT-2 style: a causal mask combined with a padding mask, both broadcast on purpose."""
    B = T = 8
    nh, hs = 2, 4
    q, k = torch.randn(B, nh, T, hs), torch.randn(B, nh, T, hs)
    attention_mask = (torch.arange(T)[None, :] < torch.tensor([8, 6, 4, 8, 2, 7, 5, 3])[:, None])
    causal = torch.tril(torch.ones(T, T, dtype=torch.bool)).view(1, 1, T, T)
    w = torch.matmul(q, k.transpose(-1, -2)) / hs**0.5
    w = torch.where(causal, w, torch.tensor(torch.finfo(w.dtype).min))
    pad = attention_mask.view(B, -1)[:, None, None, :]
    w = w + (1.0 - pad.float()) * -10000.0
    torch.softmax(w, dim=-1)
    # torch's MultiheadAttention with a key padding mask
    mha = nn.MultiheadAttention(16, 2, batch_first=True)
    x = torch.randn(B, T, 16)
    mha(x, x, x, key_padding_mask=~attention_mask, attn_mask=~causal[0, 0])
    F.scaled_dot_product_attention(q, k, k, attn_mask=pad)


# --- vit-pytorch / timm style ------------------------------------------------------------------


class ViT(nn.Module):
    def __init__(self, image=16, patch=4, dim=16, depth=1, heads=2, classes=10, channels=3):
        super().__init__()
        n = (image // patch) ** 2
        self.patch, self.heads = patch, heads
        self.to_patch = nn.Linear(channels * patch * patch, dim)
        self.pos = nn.Parameter(torch.randn(1, n + 1, dim))
        self.cls = nn.Parameter(torch.randn(1, 1, dim))
        self.norm = nn.LayerNorm(dim)
        self.to_qkv = nn.Linear(dim, dim * 3, bias=False)
        self.to_out = nn.Linear(dim, dim)
        self.ff = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim * 2), nn.GELU(),
                                nn.Linear(dim * 2, dim))
        self.depth = depth
        self.head = nn.Linear(dim, classes)

    def forward(self, img):
        x = rearrange(img, "b c (h p1) (w p2) -> b (h w) (p1 p2 c)", p1=self.patch, p2=self.patch)
        x = self.to_patch(x)
        b, n, _ = x.shape
        cls = repeat(self.cls, "1 1 d -> b 1 d", b=b)
        x = torch.cat((cls, x), dim=1)
        x = x + self.pos[:, : n + 1]
        for _ in range(self.depth):
            qkv = self.to_qkv(self.norm(x)).chunk(3, dim=-1)
            q, k, v = (rearrange(t, "b n (h d) -> b h n d", h=self.heads) for t in qkv)
            dots = torch.matmul(q, k.transpose(-1, -2)) * q.shape[-1] ** -0.5
            out = torch.matmul(dots.softmax(dim=-1), v)
            x = self.to_out(rearrange(out, "b h n d -> b n (h d)")) + x
            x = self.ff(x) + x
        return self.head(x[:, 0])


def vit():
    torch.manual_seed(0)
    model = ViT()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    imgs, labels = torch.randn(4, 3, 16, 16), torch.randint(0, 10, (4,))
    for _ in range(2):
        loss = F.cross_entropy(model(imgs), labels, label_smoothing=0.1)
        opt.zero_grad()
        loss.backward()
        opt.step()


# --- x-transformers style: rotary embeddings, RMSNorm, square projections ----------------------


class RMSNorm(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.scale = dim**0.5
        self.g = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return F.normalize(x, dim=-1) * self.scale * self.g


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def x_transformers():
    torch.manual_seed(0)
    B, T, D, H = 4, 8, 16, 2
    norm, proj = RMSNorm(D), nn.Linear(D, D, bias=False)  # square: used as a layer
    x = torch.randn(B, T, D)
    inv_freq = 1.0 / (10000 ** (torch.arange(0, D // H, 2).float() / (D // H)))
    freqs = torch.einsum("i,j->ij", torch.arange(T).float(), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)  # (T, hs)
    q = rearrange(proj(norm(x)), "b n (h d) -> b h n d", h=H)
    q = q * emb.cos() + rotate_half(q) * emb.sin()
    k = q
    sim = torch.einsum("b h i d, b h j d -> b h i j", q, k)
    mask = torch.ones(T, T, dtype=torch.bool).triu(1)
    sim = sim.masked_fill(mask, -torch.finfo(sim.dtype).max)
    out = torch.einsum("b h i j, b h j d -> b h i d", sim.softmax(dim=-1), q)
    rearrange(out, "b h n d -> b n (h d)").sum().backward()
    # a tied output head: logits against the embedding table (stored (vocab, dim))
    emb_table = nn.Embedding(D, D)
    assert (x @ emb_table.weight.t()).shape == (B, T, D)
    F.linear(x, proj.weight)


def nanogpt_flash():
    nanogpt(flash=True)


CASES = [nanogpt, nanogpt_flash, hf_bert, gpt2_padded_batch, vit, x_transformers]
