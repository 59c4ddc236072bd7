"""The fast trainer: whole feature matrices as tensors, AdamW, early stopping on validation loss."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn

from pipeline.config import ConfigError, HeadConfig


@dataclass
class Standardizer:
    """Per-column mean/std from the training rows only, applied to every split.

    NaN marks a missing value (a modality absent for a sample): it is left out of the statistics and
    becomes 0, the training mean, once scaled. The last `passthrough` columns (modality masks) stay
    as they are. With `l2`, rows are scaled to unit length instead (cosine-similarity heads).
    """

    mean: torch.Tensor
    std: torch.Tensor
    l2: bool = False

    @classmethod
    def fit(cls, x: torch.Tensor, passthrough: int = 0, l2: bool = False) -> "Standardizer":
        rows = x.flatten(0, -2)  # (N, D) or (N, T, D): statistics per feature, over samples and time
        if l2:
            return cls(torch.zeros(rows.shape[1]), torch.ones(rows.shape[1]), l2=True)
        mean = rows.nanmean(0)
        std = (rows - mean).square().nanmean(0).sqrt().nan_to_num(1.0).clamp_min(1e-6)
        mean = mean.nan_to_num(0.0)
        if passthrough:
            mean[-passthrough:], std[-passthrough:] = 0.0, 1.0
        return cls(mean, std)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        z = (x - self.mean) / self.std
        z = torch.where(torch.isnan(z), 0.0, z)
        return nn.functional.normalize(z, dim=-1) if self.l2 else z


@dataclass
class Fitted:
    model: nn.Module
    best_epoch: int
    history: list[dict] = field(default_factory=list)


def fit(
    model: nn.Module,
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    cfg: HeadConfig,
    val_metrics: Callable[[torch.Tensor], dict] | None = None,
    sample_weights: torch.Tensor | None = None,
) -> Fitted:
    """Train on tensors in shuffled minibatches; keep the weights of the best `cfg.monitor` on validation."""
    (x, y), (xv, yv) = train, val
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sign = 1.0 if cfg.monitor == "val_loss" or cfg.monitor.startswith(("mae", "loss")) else -1.0  # lower is better?
    best = (float("inf"), 0, copy.deepcopy(model.state_dict()))
    history = []
    for epoch in range(1, cfg.epochs + 1):
        for group in opt.param_groups:
            group["lr"] = lr_at(cfg, epoch)
        if hasattr(loss_fn, "epoch"):
            loss_fn.epoch = epoch  # losses that change over training (deferred re-weighting)
        model.train()
        total = 0.0
        if sample_weights is None:
            order = torch.randperm(len(x), generator=gen)
        else:  # e.g. class-balanced: draw with replacement, as many as there are samples
            order = torch.multinomial(sample_weights, len(x), replacement=True, generator=gen)
        for idx in order.split(cfg.batch_size):
            loss = loss_fn(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        model.eval()
        with torch.no_grad():
            out = model(xv)
            val_loss = loss_fn(out, yv).item()
        row = {"epoch": epoch, "train_loss": total / len(x), "val_loss": val_loss, "lr": lr_at(cfg, epoch)}
        row.update(val_metrics(out) if val_metrics else {})
        history.append(row)
        if cfg.monitor not in row:
            raise ConfigError(f"head.monitor: {cfg.monitor!r} is not measured here; choose one of {sorted(row)[1:]}")
        score = sign * row[cfg.monitor]
        if score < best[0]:
            best = (score, epoch, copy.deepcopy(model.state_dict()))
        elif epoch - best[1] >= cfg.patience:
            break
    model.load_state_dict(best[2])
    model.eval()
    return Fitted(model=model, best_epoch=best[1], history=history)


def lr_at(cfg: HeadConfig, epoch: int) -> float:
    """Linear warm-up over `warmup_epochs`, then constant or cosine decay to zero at the last epoch."""
    if epoch <= cfg.warmup_epochs:
        return cfg.lr * epoch / (cfg.warmup_epochs + 1)
    if cfg.schedule == "constant":
        return cfg.lr
    progress = (epoch - cfg.warmup_epochs - 1) / max(1, cfg.epochs - cfg.warmup_epochs)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * progress))


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
