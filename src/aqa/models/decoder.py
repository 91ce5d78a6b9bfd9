"""Procedure-aware cross-attention decoder (PAPERS.md section 3).

Pre-norm blocks: ``q = q + CrossAttn(LN(q), LN(kv))``, ``q = q + MLP(LN(q))``; the keys and
values are the same (normalised) memory tokens, q/k/v projections carry no bias, the output
projection does. No dropout (the reference sets all rates to 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class DecoderConfig:
    dim: int = 64
    heads: int = 8
    depth: int = 3
    mlp_ratio: float = 4.0
    qkv_bias: bool = False


class CrossAttention(nn.Module):
    def __init__(self, dim: int, heads: int, qkv_bias: bool = False):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} must divide by heads {heads}")
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.k = nn.Linear(dim, dim, bias=qkv_bias)
        self.v = nn.Linear(dim, dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.view(b, n, self.heads, c // self.heads).transpose(1, 2)  # (B, h, N, C/h)

    def forward(self, q: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
        b, n, c = q.shape  # q (B, Nq, C), kv (B, Nk, C)
        qh, kh, vh = self._split(self.q(q)), self._split(self.k(kv)), self._split(self.v(kv))
        attn = (qh @ kh.transpose(-2, -1) * self.scale).softmax(-1)  # (B, h, Nq, Nk)
        out = (attn @ vh).transpose(1, 2).reshape(b, n, c)  # (B, Nq, C)
        return self.proj(out)


class DecoderBlock(nn.Module):
    def __init__(self, cfg: DecoderConfig):
        super().__init__()
        self.norm_q = nn.LayerNorm(cfg.dim)
        self.norm_kv = nn.LayerNorm(cfg.dim)
        self.attn = CrossAttention(cfg.dim, cfg.heads, cfg.qkv_bias)
        self.norm_mlp = nn.LayerNorm(cfg.dim)
        hidden = int(cfg.dim * cfg.mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(cfg.dim, hidden), nn.GELU(), nn.Linear(hidden, cfg.dim))

    def forward(self, q: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
        q = q + self.attn(self.norm_q(q), self.norm_kv(kv))  # (B, Nq, C)
        return q + self.mlp(self.norm_mlp(q))


class Decoder(nn.Module):
    """`depth` blocks; the same memory `kv` feeds every block."""

    def __init__(self, cfg: DecoderConfig = DecoderConfig()):
        super().__init__()
        self.cfg = cfg
        self.blocks = nn.ModuleList(DecoderBlock(cfg) for _ in range(cfg.depth))

    def forward(self, q: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            q = block(q, kv)  # (B, Nq, C)
        return q
