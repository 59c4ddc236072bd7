"""Head models behind a registry: `@register_head("name", settings=...)` builders taking (in_dim, out_dim, cfg):
linear, MLP, temporal attention pooling, V-JEPA's attentive probe over token grids, zero-shot from prompts.
A head's own settings are a dataclass declared beside it; they join the `head` section as `head.<key>`
(heads/config.py composes it), so a new head is one builder and its settings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.nn import functional as F
from vidprobe.features.config import choice
from vidprobe.heads.errors import HeadConfigError

if TYPE_CHECKING:
    from vidprobe.heads.config import HeadConfig

HEADS: dict[str, Callable[[int, int, HeadConfig], nn.Module]] = {}
SEQUENCE_HEADS: set[str] = set()  # heads that take (N, T, D) features instead of (N, D)
SETTINGS: dict[str, tuple[type, ...]] = {}  # head name -> the settings dataclasses it reads


def register_head(name: str, sequence: bool = False, settings: tuple[type, ...] = ()):
    def deco(fn):
        HEADS[name] = fn
        SETTINGS[name] = settings
        if sequence:
            SEQUENCE_HEADS.add(name)
        return fn

    return deco


def head_settings() -> list[type]:
    """Every registered head's settings, once each, in registration order (they join HeadConfig)."""
    return list(dict.fromkeys(s for group in SETTINGS.values() for s in group))


@dataclass
class MLPSettings:
    hidden: int = 256  # mlp (and gated fusion): hidden width
    dropout: float = 0.1  # mlp (and gated fusion): dropout after the hidden layer


@dataclass
class PromptSettings:
    prompts: str | None = None  # "<feature_set>[:<key>]" of class-prompt embeddings, one row per class name
    init: str = choice("random", "prompts")  # prompts: linear head initialised from the class-prompt embeddings
    logit_scale: float = 100.0  # zero-shot / prompt-initialised heads: cosine similarity times this


def build_head(
    cfg: HeadConfig, in_dim: int, out_dim: int, dims: list[int] | None = None, one_vs_rest: bool = False
) -> nn.Module:
    """The configured head; `dims` (one width per modality) makes it a fusion head over packed rows,
    `one_vs_rest` one independent binary head per output."""
    if cfg.name not in HEADS:
        raise HeadConfigError(f"head.name: unknown head {cfg.name!r}; valid: {', '.join(sorted(HEADS))}")
    if one_vs_rest:
        return OneVsRest([build_head(cfg, in_dim, 1, dims) for _ in range(out_dim)])
    if dims and len(dims) > 1:
        return Fusion(dims, out_dim, cfg)
    return HEADS[cfg.name](in_dim, out_dim, cfg)


@register_head("linear", settings=(PromptSettings,))
def linear(in_dim: int, out_dim: int, cfg: HeadConfig) -> nn.Module:
    """A linear probe on (N, D) features."""
    return nn.Linear(in_dim, out_dim)


@register_head("mlp", settings=(MLPSettings,))
def mlp(in_dim: int, out_dim: int, cfg: HeadConfig) -> nn.Module:
    """One hidden layer: LayerNorm, Linear, GELU, Dropout, Linear."""
    return MLP(
        nn.LayerNorm(in_dim),
        nn.Linear(in_dim, cfg.hidden),
        nn.GELU(),
        nn.Dropout(cfg.dropout),
        nn.Linear(cfg.hidden, out_dim),
    )


class MLP(nn.Sequential):
    """LayerNorm, Linear, ... as an `nn.Sequential` (same parameters and state dict), whose training
    forward runs the first two layers as `NormLinear`: a third fewer matmuls per step on the widest layer.
    Without gradients (evaluation, prediction) it is the plain sequence."""

    def forward(self, x):
        norm, first, *rest = self
        params = (norm.weight, norm.bias, first.weight, first.bias)
        if torch.is_grad_enabled() and not x.requires_grad and all(p.requires_grad for p in params):
            x = NormLinear.apply(x, *params, norm.eps)
        else:
            x = first(norm(x))
        for layer in rest:
            x = layer(x)
        return x


class NormLinear(torch.autograd.Function):
    """linear(layer_norm(x) * gamma + beta, W, b) for an input that needs no gradient.

    Autograd would take two matmuls of the batch's size for the Linear (dW = g^T u with u = xhat * gamma
    + beta, and du = g W, which LayerNorm's gamma and beta need); with G = g^T xhat, dW = G * gamma +
    outer(sum(g), beta), dgamma = sum_k W_k * G_k and dbeta = sum(g) W take one: the same gradients up to
    float rounding (tests/heads/test_models.py checks them against autograd in float64)."""

    @staticmethod
    def forward(ctx, x, gamma, beta, weight, bias, eps):
        xhat = F.layer_norm(x, x.shape[-1:], None, None, eps)
        ctx.save_for_backward(xhat, gamma, beta, weight)
        return F.linear(xhat, weight * gamma, torch.addmv(bias, weight, beta))  # gamma, beta folded into W, b

    @staticmethod
    def backward(ctx, grad):
        xhat, gamma, beta, weight = ctx.saved_tensors
        g = grad.reshape(-1, grad.shape[-1])
        G = g.T @ xhat.reshape(-1, xhat.shape[-1])  # (out, in): the one matmul over the batch
        s = g.sum(0)
        return None, (weight * G).sum(0), s @ weight, G * gamma + torch.outer(s, beta), s, None


@register_head("zero-shot", settings=(PromptSettings,))
def zero_shot(in_dim: int, out_dim: int, cfg: HeadConfig) -> nn.Module:
    """The class-prompt embeddings of head.prompts as a fixed linear classifier (see `prompt_linear`); never trained."""
    return nn.Linear(in_dim, out_dim)


class AttentionPool(nn.Module):
    """Learned softmax weights over the time axis, then a linear layer: (N, T, D) -> (N, out)."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.score = nn.Linear(in_dim, 1)
        self.out = nn.Linear(in_dim, out_dim)

    def forward(self, x):
        weights = self.score(x).softmax(dim=1)  # (N, T, 1)
        return self.out((weights * x).sum(dim=1))


@register_head("attention", sequence=True)
def attention(in_dim: int, out_dim: int, cfg: HeadConfig) -> nn.Module:
    """Temporal attention pooling over (N, T, D) features such as video/temporal."""
    return AttentionPool(in_dim, out_dim)


@dataclass
class AttentiveSettings:
    queries: int = 1  # attentive: learnable query tokens (V-JEPA: 1), their outputs side by side for the linear
    heads: int | None = None  # attentive: attention heads (None: 16, else the most up to 16 that divide the width)
    mlp_ratio: float = 4.0  # attentive: the MLP block's hidden width over the token width


def attention_heads(dim: int, asked: int | None) -> int:
    """`asked` heads (they must divide `dim`), else 16 or the largest count below it that divides `dim`."""
    if asked is not None:
        if asked < 1 or dim % asked:
            raise HeadConfigError(
                f"head.heads: {asked} heads do not divide the token width {dim}; use a divisor "
                f"of {dim}, or leave head.heads unset"
            )
        return asked
    return max(h for h in range(1, 17) if dim % h == 0)


class AttentiveProbe(nn.Module):
    """V-JEPA's attentive classifier (its `AttentivePooler` of depth 1 and a linear layer): learnable query tokens
    cross-attend over the tokens, then one MLP block, each with a residual connection and LayerNorm, then a
    linear layer over the queries' outputs. (N, L, D) tokens -> (N, out).

    q = queries; y = proj(attention(Wq q, Wkv LN1(x))); q = q + y; q = q + fc2(GELU(fc1(LN2(q)))); linear(q).
    Initialised as V-JEPA initialises it: weights and queries from a normal of std 0.02 (cut at +-2, as V-JEPA calls
    trunc_normal_: in effect uncut), biases
    0, fc2's weights divided by sqrt(2).
    """

    def __init__(self, dim: int, out_dim: int, queries: int = 1, heads: int = 16, mlp_ratio: float = 4.0):
        super().__init__()
        self.heads = heads
        self.query = nn.Parameter(torch.zeros(1, queries, dim))
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.q, self.kv, self.proj = nn.Linear(dim, dim), nn.Linear(dim, 2 * dim), nn.Linear(dim, dim)
        hidden = int(dim * mlp_ratio)
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)
        self.linear = nn.Linear(queries * dim, out_dim)
        nn.init.trunc_normal_(self.query, std=0.02, a=-2.0, b=2.0)
        for layer in (self.q, self.kv, self.proj, self.fc1, self.fc2, self.linear):
            nn.init.trunc_normal_(layer.weight, std=0.02, a=-2.0, b=2.0)
            nn.init.zeros_(layer.bias)
        with torch.no_grad():
            self.fc2.weight.div_(2.0**0.5)

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """(N, L, D) tokens -> (N, queries, D): what the queries read of them."""
        n, length, d = x.shape
        h = self.heads
        q = self.query.expand(n, -1, -1)
        heads_q = self.q(q).reshape(n, q.shape[1], h, d // h).transpose(1, 2)
        k, v = self.kv(self.norm1(x)).reshape(n, length, 2, h, d // h).permute(2, 0, 3, 1, 4)
        read = F.scaled_dot_product_attention(heads_q, k, v).transpose(1, 2).reshape(n, q.shape[1], d)
        q = q + self.proj(read)
        return q + self.fc2(F.gelu(self.fc1(self.norm2(q))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.pool(x).flatten(1))


@register_head("attentive", sequence=True, settings=(AttentiveSettings,))
def attentive(in_dim: int, out_dim: int, cfg: HeadConfig) -> nn.Module:
    """V-JEPA's attentive probe over token grids (`head.features=video/tokens`, see `AttentiveProbe`)."""
    return AttentiveProbe(in_dim, out_dim, cfg.queries, attention_heads(in_dim, cfg.heads), cfg.mlp_ratio)


class OneVsRest(nn.Module):
    """Independent binary heads, one per class, read together as (N, classes) logits."""

    def __init__(self, heads: list[nn.Module]):
        super().__init__()
        self.heads = nn.ModuleList(heads)

    def forward(self, x):
        return torch.cat([h(x) for h in self.heads], dim=1)


class Fusion(nn.Module):
    """Several modalities packed in one row: [x_1 | ... | x_M | mask_1 .. mask_M].

    A missing modality arrives as zeros with mask 0 (see `heads.data.load_split`). `concat`
    feeds the whole row, mask indicators included, to one head; `late` averages per-modality heads
    over the modalities present; `gated` mixes per-modality projections with softmax gates computed
    over the present modalities only.
    """

    def __init__(self, dims: list[int], out_dim: int, cfg: HeadConfig):
        super().__init__()
        self.dims, self.mode = list(dims), cfg.fusion
        if cfg.fusion == "concat":
            self.head = HEADS[cfg.name](sum(dims) + len(dims), out_dim, cfg)
        elif cfg.fusion == "late":
            self.heads = nn.ModuleList(HEADS[cfg.name](d, out_dim, cfg) for d in dims)
        else:
            self.proj = nn.ModuleList(nn.Linear(d, cfg.hidden) for d in dims)
            self.gate = nn.ModuleList(nn.Linear(d, 1) for d in dims)
            self.out = nn.Sequential(nn.GELU(), nn.Dropout(cfg.dropout), nn.Linear(cfg.hidden, out_dim))

    def forward(self, packed):
        if self.mode == "concat":
            return self.head(packed)
        *xs, mask = packed.split(self.dims + [len(self.dims)], dim=1)  # mask: (N, M), 1 where present
        if self.mode == "late":
            outs = torch.stack([h(x) for h, x in zip(self.heads, xs)], dim=1)  # (N, M, out)
            return (outs * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp_min(1)
        scores = torch.cat([g(x) for g, x in zip(self.gate, xs)], dim=1).masked_fill(mask == 0, float("-inf"))
        weights = scores.softmax(dim=1).nan_to_num(0.0)  # a row with nothing present gets zero weights
        mixed = sum(w[:, None] * p(x) for w, p, x in zip(weights.unbind(1), self.proj, xs))
        return self.out(mixed)


def prompt_linear(prompts: torch.Tensor, scale: float) -> nn.Linear:
    """A linear classifier whose rows are the L2-normalised class-prompt embeddings (times `scale`).

    On L2-normalised features its logits are scaled cosine similarities: CLIP's zero-shot classifier.
    """
    layer = nn.Linear(prompts.shape[1], prompts.shape[0])
    with torch.no_grad():
        layer.weight.copy_(scale * nn.functional.normalize(prompts.float(), dim=1))
        layer.bias.zero_()
    return layer
