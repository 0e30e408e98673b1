"""The base Llama in PyTorch, for training only: loads the GGUF weights, adds LoRA adapters.

A small nanoGPT-style module with the same arithmetic as the runtime graph of
:mod:`unmask.engine.llama_onnx` (RMSNorm, rotate-half RoPE, grouped-query attention, SwiGLU,
tied embeddings), so adapters trained here mean the same thing there. Parameter names are
Hugging Face's, exactly the names :func:`unmask.engine.base.read_gguf` returns plus
``.weight``: ``layers.3.mlp.down_proj`` is the module, ``layers.3.mlp.down_proj.weight`` its
matrix (out, in).

``forward(ids, pos, attn_mask)`` takes the attention pattern from the caller: a bool mask
(True = may attend) or an additive float one, shaped (B, 1, L, L), or None for causal.
The pattern is what makes it a causal LM or a block-diffusion denoiser; this module does not
know which (see :mod:`unmask.engine.adapt`).

LoRA (Hu et al. 2021): :func:`add_lora` turns chosen linear layers into :class:`LoRALinear`
(``W x + (alpha / r) B A x``, ``B`` starts at zero so the model starts as the base) and freezes
everything else; :func:`train_top_layers` is the alternative, full training of the last k
layers. :func:`deltas` returns what was learnt in the form ``engine.causal._apply_delta``
merges at run time.

It knows the Llama architecture and parameter names; nothing about tokens, prompts or data.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .base import LlamaConfig


class RMSNorm(nn.Module):
    def __init__(self, d: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x) * self.weight.type_as(x)


class LoRALinear(nn.Linear):
    """A frozen linear layer plus a trainable low-rank update ``(alpha / r) * B @ A``."""

    def __init__(self, d_in: int, d_out: int, r: int, alpha: float):
        super().__init__(d_in, d_out, bias=False)
        self.r, self.alpha = r, alpha
        self.scale = alpha / r
        self.lora_a = nn.Parameter(torch.empty(r, d_in))
        self.lora_b = nn.Parameter(torch.zeros(d_out, r))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))  # as nn.Linear (and peft) initialise A

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight) + F.linear(F.linear(x, self.lora_a), self.lora_b) * self.scale


def rope_tables(pos: torch.Tensor, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin (B, 1, L, hd) for absolute positions ``pos`` (B, L); rotate-half layout."""
    inv = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64, device=pos.device) / head_dim)
    ang = pos[..., None].float() * inv.float()  # (B, L, hd/2)
    ang = torch.cat([ang, ang], dim=-1)[:, None]
    return ang.cos(), ang.sin()


def apply_rope(t: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    a, b = t.chunk(2, dim=-1)
    return t * cos.type_as(t) + torch.cat([-b, a], dim=-1) * sin.type_as(t)


class Attention(nn.Module):
    def __init__(self, c: LlamaConfig):
        super().__init__()
        hd = c.head_dim
        self.c = c
        self.q_proj = nn.Linear(c.d_model, c.n_head * hd, bias=False)
        self.k_proj = nn.Linear(c.d_model, c.n_kv_head * hd, bias=False)
        self.v_proj = nn.Linear(c.d_model, c.n_kv_head * hd, bias=False)
        self.o_proj = nn.Linear(c.n_head * hd, c.d_model, bias=False)

    def forward(self, x, cos, sin, mask):
        B, L, _ = x.shape
        c = self.c
        q = self.q_proj(x).view(B, L, c.n_head, c.head_dim).transpose(1, 2)  # (B, H, L, hd)
        k = self.k_proj(x).view(B, L, c.n_kv_head, c.head_dim).transpose(1, 2)  # (B, KV, L, hd)
        v = self.v_proj(x).view(B, L, c.n_kv_head, c.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        rep = c.n_head // c.n_kv_head
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)  # (B, H, L, hd)
        if mask is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask if mask.dtype == torch.bool else mask.type_as(q))
        return self.o_proj(y.transpose(1, 2).reshape(B, L, -1))


class MLP(nn.Module):
    def __init__(self, c: LlamaConfig):
        super().__init__()
        self.gate_proj = nn.Linear(c.d_model, c.d_ff, bias=False)
        self.up_proj = nn.Linear(c.d_model, c.d_ff, bias=False)
        self.down_proj = nn.Linear(c.d_ff, c.d_model, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, c: LlamaConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(c.d_model, c.norm_eps)
        self.self_attn = Attention(c)
        self.post_attention_layernorm = RMSNorm(c.d_model, c.norm_eps)
        self.mlp = MLP(c)

    def forward(self, x, cos, sin, mask):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
        return x + self.mlp(self.post_attention_layernorm(x))


class Llama(nn.Module):
    def __init__(self, c: LlamaConfig):
        super().__init__()
        self.c = c
        self.embed_tokens = nn.Embedding(c.vocab, c.d_model)
        self.layers = nn.ModuleList(Block(c) for _ in range(c.n_layer))
        self.norm = RMSNorm(c.d_model, c.norm_eps)
        self.lm_head: nn.Linear | None = None  # None: tied to embed_tokens

    def hidden(self, ids: torch.Tensor, pos: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Final-norm hidden states (B, L, D) of ids (B, L) at positions pos (B, L)."""
        cos, sin = rope_tables(pos, self.c.head_dim, self.c.rope_theta)
        x = self.embed_tokens(ids)
        for layer in self.layers:
            x = layer(x, cos, sin, attn_mask)
        return self.norm(x)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """(..., D) -> (..., V): the LM head (the embedding matrix unless the weights have their own)."""
        return F.linear(h, self.embed_tokens.weight if self.lm_head is None else self.lm_head.weight)

    def forward(self, ids: torch.Tensor, pos: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.logits(self.hidden(ids, pos, attn_mask))

    # -- weights ---------------------------------------------------------------------------
    @classmethod
    def from_weights(cls, cfg: LlamaConfig, w: dict[str, np.ndarray]) -> Llama:
        """The model with ``read_gguf``'s float32 weights (HF names without ``.weight``)."""
        m = cls(cfg)
        if "lm_head" in w:
            m.lm_head = nn.Linear(cfg.d_model, cfg.vocab, bias=False)
        m.load_base(w)
        return m

    def load_base(self, w: dict[str, np.ndarray]) -> None:
        sd = {f"{k}.weight": torch.from_numpy(np.require(v, np.float32, "W")) for k, v in w.items()}
        own = {k for k in self.state_dict() if not k.endswith((".lora_a", ".lora_b"))}
        if set(sd) != own:
            raise ValueError(
                f"weights do not match the model: missing {sorted(own - set(sd))[:5]}, "
                f"unexpected {sorted(set(sd) - own)[:5]}"
            )
        self.load_state_dict(sd, strict=False)

    def n_params(self, trainable: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable)


LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def add_lora(model: Llama, r: int, alpha: float, targets=LORA_TARGETS, layers: list[int] | None = None) -> list[str]:
    """Replace the ``targets`` linears of ``layers`` (default all) with LoRA ones; freeze the rest.

    Returns the names of the adapted modules.
    """
    for p in model.parameters():
        p.requires_grad_(False)
    names = []
    for i, layer in enumerate(model.layers):
        if layers is not None and i not in layers:
            continue
        for parent_name, parent in (("self_attn", layer.self_attn), ("mlp", layer.mlp)):
            for t in targets:
                old = getattr(parent, t, None)
                if old is None:
                    continue
                new = LoRALinear(old.in_features, old.out_features, r, alpha).to(old.weight.device)
                new.weight.data = old.weight.data
                new.weight.requires_grad_(False)
                setattr(parent, t, new)
                names.append(f"layers.{i}.{parent_name}.{t}")
    return names


def train_top_layers(model: Llama, k: int, final_norm: bool = True) -> list[str]:
    """Freeze everything but the last ``k`` layers (and the final norm); returns the trained tensors' names."""
    for p in model.parameters():
        p.requires_grad_(False)
    names = []
    for i in range(model.c.n_layer - k, model.c.n_layer):
        for n, p in model.layers[i].named_parameters():
            p.requires_grad_(True)
            names.append(f"layers.{i}.{n.removesuffix('.weight')}")
    if final_norm:
        model.norm.weight.requires_grad_(True)
        names.append("norm")
    return names


def trainable_state(model: Llama) -> dict[str, torch.Tensor]:
    """The trainable tensors by parameter name (what a checkpoint needs besides the base)."""
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def deltas(model: Llama, base: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """What training changed, as float32 arrays keyed the way ``causal._apply_delta`` reads them.

    LoRA modules give ``{name}.lora_a`` (r, in) and ``{name}.lora_b`` (out, r) with the scale
    folded into b; other trained tensors give ``{name}`` = trained - ``base[name]``.
    """
    out: dict[str, np.ndarray] = {}
    for name, mod in model.named_modules():
        if isinstance(mod, LoRALinear):
            out[f"{name}.lora_a"] = mod.lora_a.detach().float().cpu().numpy()
            out[f"{name}.lora_b"] = (mod.lora_b.detach().float() * mod.scale).cpu().numpy()
    for n, p in model.named_parameters():
        if p.requires_grad and not n.endswith((".lora_a", ".lora_b")):
            name = n.removesuffix(".weight")
            if base is None:
                raise ValueError("full deltas need the base weights")
            out[name] = p.detach().float().cpu().numpy() - base[name]
    return out
