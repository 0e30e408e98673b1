"""The denoiser: a small transformer (RoPE, RMSNorm, SwiGLU) over context + span slots.

Layout of one sequence (see DESIGN.md, "Engine"): the *context* tokens (prefix and suffix
pieces, holes removed) come first, then the *span slots* of every hole. Every token carries
its natural document position, so a slot of a hole sits (for RoPE) right where the hole
is, between its prefix and its suffix, and the hole's size shows as a gap in the
context's positions.

Attention is asymmetric: context tokens attend only to context tokens, span slots attend
to everything. So the context never depends on the (noisy) span, the context can be
encoded once per request (:meth:`Denoiser.encode` returns per-layer keys/values), and each
denoising step (:meth:`Denoiser.step`) runs only the span slots against that cache.
Training (:meth:`Denoiser.forward`) uses the same mask, so cached inference is exact.

With ``causal=True`` the same backbone is an autoregressive baseline (benchmarks only).

It knows nothing about text or tokenizers: ids and positions in, logits out.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class ModelConfig:
    vocab_size: int = 8192
    d_model: int = 256
    n_layers: int = 6
    n_heads: int = 8
    ffn_hidden: int = 704
    rope_base: float = 10000.0
    causal: bool = False

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    def to_dict(self) -> dict:
        return asdict(self)


class RMSNorm(nn.Module):
    def __init__(self, d: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope(x: torch.Tensor, pos: torch.Tensor, base: float) -> torch.Tensor:
    """Rotate pairs of channels of ``x`` (B, H, T, D) by angles pos * base^(-2i/D); pos (B, T)."""
    d = x.shape[-1]
    inv = torch.exp(torch.arange(0, d, 2, dtype=torch.float32, device=x.device) * (-math.log(base) / d))
    ang = pos.to(torch.float32)[:, None, :, None] * inv  # (B, 1, T, D/2)
    cos, sin = ang.cos().to(x.dtype), ang.sin().to(x.dtype)
    x1, x2 = x[..., 0::2], x[..., 1::2]
    out = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)
    return out.flatten(-2)


class Block(nn.Module):
    def __init__(self, c: ModelConfig):
        super().__init__()
        self.c = c
        self.norm1 = RMSNorm(c.d_model)
        self.qkv = nn.Linear(c.d_model, 3 * c.d_model, bias=False)
        self.proj = nn.Linear(c.d_model, c.d_model, bias=False)
        self.norm2 = RMSNorm(c.d_model)
        self.up = nn.Linear(c.d_model, 2 * c.ffn_hidden, bias=False)
        self.down = nn.Linear(c.ffn_hidden, c.d_model, bias=False)

    def _qkv(self, x: torch.Tensor, pos: torch.Tensor):
        B, T, _ = x.shape
        H, D = self.c.n_heads, self.c.head_dim
        q, k, v = self.qkv(self.norm1(x)).view(B, T, 3, H, D).permute(2, 0, 3, 1, 4)  # 3 x (B, H, T, D)
        return rope(q, pos, self.c.rope_base), rope(k, pos, self.c.rope_base), v

    def _rest(self, x: torch.Tensor, att: torch.Tensor) -> torch.Tensor:
        B, H, T, D = att.shape
        x = x + self.proj(att.transpose(1, 2).reshape(B, T, H * D))
        a, b = self.up(self.norm2(x)).chunk(2, dim=-1)
        return x + self.down(F.silu(a) * b)

    def forward(self, x, pos, mask):
        q, k, v = self._qkv(x, pos)
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self._rest(x, att)

    def encode(self, x, pos):
        """Context only: bidirectional over the context; returns (x_out, k, v)."""
        q, k, v = self._qkv(x, pos)
        att = F.scaled_dot_product_attention(q, k, v)
        return self._rest(x, att), k, v

    def step(self, x, pos, k_ctx, v_ctx):
        """Span slots attend to the cached context keys/values and to each other."""
        q, k, v = self._qkv(x, pos)
        B = x.shape[0]
        k = torch.cat([k_ctx.expand(B, -1, -1, -1), k], dim=2)
        v = torch.cat([v_ctx.expand(B, -1, -1, -1), v], dim=2)
        att = F.scaled_dot_product_attention(q, k, v)
        return self._rest(x, att)


class Denoiser(nn.Module):
    def __init__(self, c: ModelConfig):
        super().__init__()
        self.c = c
        self.embed = nn.Embedding(c.vocab_size, c.d_model)
        self.blocks = nn.ModuleList(Block(c) for _ in range(c.n_layers))
        self.norm = RMSNorm(c.d_model)
        self.apply(self._init)
        for b in self.blocks:  # scaled init of residual projections (GPT-2)
            nn.init.normal_(b.proj.weight, std=0.02 / math.sqrt(2 * c.n_layers))
            nn.init.normal_(b.down.weight, std=0.02 / math.sqrt(2 * c.n_layers))

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear | nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        return self.norm(h) @ self.embed.weight.T  # tied output head

    @staticmethod
    def attention_mask(is_ctx: torch.Tensor, valid: torch.Tensor, causal: bool) -> torch.Tensor:
        """(B, 1, T, T) bool: query q may see key k."""
        T = is_ctx.shape[1]
        allowed = valid[:, None, :] & (~is_ctx[:, :, None] | is_ctx[:, None, :])
        if causal:
            allowed = allowed & torch.ones(T, T, dtype=torch.bool, device=is_ctx.device).tril()
        allowed = allowed | torch.eye(T, dtype=torch.bool, device=is_ctx.device)  # no empty rows
        return allowed[:, None]

    def forward(self, ids, pos, is_ctx, valid):
        """Training pass: ids/pos/is_ctx/valid (B, T) -> hidden (B, T, d). Call .logits on a selection."""
        mask = self.attention_mask(is_ctx, valid, self.c.causal)
        x = self.embed(ids)
        for b in self.blocks:
            x = b(x, pos, mask)
        return x

    @torch.no_grad()
    def encode(self, ctx_ids: torch.Tensor, ctx_pos: torch.Tensor) -> torch.Tensor:
        """(1, C) -> kv cache (L, 2, 1, H, C, D)."""
        x = self.embed(ctx_ids)
        kvs = []
        for b in self.blocks:
            x, k, v = b.encode(x, ctx_pos)
            kvs.append(torch.stack([k, v]))
        return torch.stack(kvs)

    @torch.no_grad()
    def step(self, span_ids: torch.Tensor, span_pos: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
        """(B, S) slots + cache (L, 2, 1, H, C, D) -> logits (B, S, V)."""
        x = self.embed(span_ids)
        for i, b in enumerate(self.blocks):
            x = b.step(x, span_pos, kv[i, 0], kv[i, 1])
        return self.logits(x)
