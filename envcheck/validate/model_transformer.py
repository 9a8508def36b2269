"""The small decoder-only transformer of the ``transformer`` check (imports torch: worker only).

Pre-norm blocks (LayerNorm -> causal self-attention through
``torch.nn.functional.scaled_dot_product_attention`` -> residual; LayerNorm -> GELU MLP of
width 4d -> residual), learned positions, an untied LM head: the GPT-2 layout (Radford et
al. 2019) at toy size. The task is next-token prediction on a fixed periodic sequence: a
fixed random permutation of the vocabulary repeated, each sample starting at a random
offset, so every next token is determined by the current one and a few-layer model learns
it within tens of steps (loss ln(vocab) -> near 0), on the CPU as on a GPU.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint


class Block(nn.Module):
    def __init__(self, d: int, heads: int):
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.fc = nn.Linear(d, 4 * d)
        self.out = nn.Linear(4 * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=-1)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(a.transpose(1, 2).reshape(b, t, d))
        return x + self.out(F.gelu(self.fc(self.ln2(x))))


class Decoder(nn.Module):
    def __init__(self, vocab: int, d: int, heads: int, layers: int, seq: int, checkpointing: bool = False):
        super().__init__()
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Embedding(seq, d)
        self.blocks = nn.ModuleList(Block(d, heads) for _ in range(layers))
        self.ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)
        self.checkpointing = checkpointing

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        t = idx.shape[1]
        x = self.tok(idx) + self.pos(torch.arange(t, device=idx.device))
        for blk in self.blocks:
            # Activation checkpointing: keep only block inputs, recompute the rest in backward
            # (torch.utils.checkpoint; use_reentrant=False is the recommended variant).
            x = checkpoint(blk, x, use_reentrant=False) if self.checkpointing and self.training else blk(x)
        return self.head(self.ln(x))


def build(seed: int, device, *, vocab: int, d: int, heads: int, layers: int, seq: int,
          checkpointing: bool = False) -> Decoder:
    torch.manual_seed(seed)
    return Decoder(vocab, d, heads, layers, seq, checkpointing).to(device)


def matmul_params(model: Decoder) -> int:
    """Parameters that take part in matmuls (every weight but the embedding tables)."""
    skip = {id(model.tok.weight), id(model.pos.weight)}
    return sum(p.numel() for p in model.parameters() if id(p) not in skip)


def make_batches(device, *, vocab: int, seq: int, batch: int, steps: int, seed: int) -> torch.Tensor:
    """``steps`` batches of ``seq + 1`` tokens, generated on the device from ``seed``."""
    gen = torch.Generator(device=device).manual_seed(seed)
    cycle = torch.randperm(vocab, generator=gen, device=device)
    offsets = torch.randint(0, vocab, (steps, batch, 1), generator=gen, device=device)
    positions = (offsets + torch.arange(seq + 1, device=device)) % vocab
    return cycle[positions]


def loss_of(model: Decoder, tokens: torch.Tensor) -> torch.Tensor:
    logits = model(tokens[:, :-1])
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1))


def initial_loss(vocab: int) -> float:
    """Cross-entropy of a uniform guess: where training starts."""
    return math.log(vocab)
