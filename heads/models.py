"""Head models behind a registry: `@register_head("name")` builders taking (in_dim, out_dim, cfg)."""

from __future__ import annotations

from typing import Callable

from torch import nn

from pipeline.config import ConfigError, HeadConfig

HEADS: dict[str, Callable[[int, int, HeadConfig], nn.Module]] = {}
SEQUENCE_HEADS: set[str] = set()  # heads that take (N, T, D) features instead of (N, D)


def register_head(name: str, sequence: bool = False):
    def deco(fn):
        HEADS[name] = fn
        if sequence:
            SEQUENCE_HEADS.add(name)
        return fn

    return deco


def build_head(cfg: HeadConfig, in_dim: int, out_dim: int) -> nn.Module:
    if cfg.name not in HEADS:
        raise ConfigError(f"head.name: unknown head {cfg.name!r}; valid: {', '.join(sorted(HEADS))}")
    return HEADS[cfg.name](in_dim, out_dim, cfg)


@register_head("linear")
def linear(in_dim: int, out_dim: int, cfg: HeadConfig) -> nn.Module:
    """A linear probe on (N, D) features."""
    return nn.Linear(in_dim, out_dim)


@register_head("mlp")
def mlp(in_dim: int, out_dim: int, cfg: HeadConfig) -> nn.Module:
    """One hidden layer: LayerNorm, Linear, GELU, Dropout, Linear."""
    return nn.Sequential(nn.LayerNorm(in_dim), nn.Linear(in_dim, cfg.hidden), nn.GELU(), nn.Dropout(cfg.dropout),
                         nn.Linear(cfg.hidden, out_dim))


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
