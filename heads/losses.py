"""Losses behind a registry: `@register_loss(name)` builders taking (cfg, train targets) -> loss(outputs, targets).

Builders see the training targets, so class weights come from the training split only.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from vidprobe.heads.config import HeadConfig
from vidprobe.heads.errors import HeadConfigError

LOSSES: dict[tuple[str, str], Callable] = {}  # (task, name) -> builder; task: class | multilabel | regression


def register_loss(name: str, task: str):
    def deco(fn):
        LOSSES[(task, name)] = fn
        return fn

    return deco


def build_loss(name: str, task: str, cfg: HeadConfig, y_train: torch.Tensor) -> Callable:
    if (task, name) not in LOSSES:
        key = {"class": "head.loss", "multilabel": "head.multilabel_loss", "regression": "head.regression_loss"}[task]
        valid = sorted(n for t, n in LOSSES if t == task)
        raise HeadConfigError(f"{key}: unknown {task} loss {name!r}; valid: {', '.join(valid)}")
    return LOSSES[(task, name)](cfg, y_train)


def class_weights(cfg: HeadConfig, counts: torch.Tensor) -> torch.Tensor | None:
    """None, inverse frequency ('balanced', as scikit-learn), or effective numbers ((1-b)/(1-b^n), mean 1)."""
    counts = counts.float()
    if cfg.class_weights == "none":
        return None
    if cfg.class_weights == "balanced":
        return counts.sum() / (len(counts) * counts.clamp_min(1))
    w = (1 - cfg.cb_beta) / (1 - cfg.cb_beta ** counts.clamp_min(1))
    return w * len(w) / w.sum()


class CrossEntropy:
    def __init__(self, weight: torch.Tensor | None, smoothing: float):
        self.weight, self.smoothing = weight, smoothing

    def __call__(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, y, weight=self.weight, label_smoothing=self.smoothing)


class Focal:
    """Focal loss (Lin et al. 2017): cross-entropy scaled by (1 - p_true)^gamma; gamma 0 is cross-entropy."""

    def __init__(self, weight: torch.Tensor | None, gamma: float, multilabel: bool):
        self.weight, self.gamma, self.multilabel = weight, gamma, multilabel

    def __call__(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.multilabel:
            ce = F.binary_cross_entropy_with_logits(logits, y, reduction="none")
            p_true = torch.exp(-ce)
            return ((1 - p_true) ** self.gamma * ce).mean()
        ce = F.cross_entropy(logits, y, reduction="none")
        loss = (1 - torch.exp(-ce)) ** self.gamma * ce
        if self.weight is not None:
            w = self.weight[y]
            return (w * loss).sum() / w.sum()
        return loss.mean()


@register_loss("ce", "class")
def ce(cfg: HeadConfig, y: torch.Tensor):
    return CrossEntropy(class_weights(cfg, torch.bincount(y)), cfg.label_smoothing)


@register_loss("focal", "class")
def focal(cfg: HeadConfig, y: torch.Tensor):
    return Focal(class_weights(cfg, torch.bincount(y)), cfg.focal_gamma, multilabel=False)


@register_loss("bce", "multilabel")
def bce(cfg: HeadConfig, y: torch.Tensor):
    return F.binary_cross_entropy_with_logits


def balanced_multilabel_bce(cfg: HeadConfig, y: torch.Tensor) -> Callable:
    """BCE whose positives weigh by effective numbers (Cui et al. 2019): the rarer a class, the more."""
    weight = class_weights(HeadConfig(class_weights="effective", cb_beta=cfg.cb_beta), y.sum(0))

    def loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(logits, target, pos_weight=weight)

    return loss


@register_loss("focal", "multilabel")
def focal_multilabel(cfg: HeadConfig, y: torch.Tensor):
    return Focal(None, cfg.focal_gamma, multilabel=True)


def ccc(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Lin's concordance correlation per column."""
    pm, ym = pred.mean(0), y.mean(0)
    cov = ((pred - pm) * (y - ym)).mean(0)
    return 2 * cov / (pred.var(0, unbiased=False) + y.var(0, unbiased=False) + (pm - ym) ** 2 + 1e-8)


def ccc_loss(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return 1 - ccc(pred, y).mean()


@register_loss("mse", "regression")
def mse(cfg: HeadConfig, y: torch.Tensor):
    return F.mse_loss


@register_loss("l1", "regression")
def l1(cfg: HeadConfig, y: torch.Tensor):
    return F.l1_loss


@register_loss("huber", "regression")
def huber(cfg: HeadConfig, y: torch.Tensor):
    return F.huber_loss


@register_loss("ccc", "regression")
def ccc_builder(cfg: HeadConfig, y: torch.Tensor):
    return ccc_loss


class EQL:
    """Equalization loss (Tan et al. 2020), sigmoid form: negatives of rare classes add no loss,
    so frequent classes stop suppressing them."""

    def __init__(self, rare: torch.Tensor):
        self.rare = rare.float()

    def __call__(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        weight = 1 - self.rare[None, :] * (1 - y)
        return F.binary_cross_entropy_with_logits(logits, y, weight=weight)


@register_loss("eql", "multilabel")
def eql(cfg: HeadConfig, y: torch.Tensor):
    return EQL(y.sum(0) < cfg.eql_tail_count)


class LDAM:
    """Label-distribution-aware margins (Cao et al. 2019): the true classes' logits lose m_j = C / n_j^(1/4)
    before a scaled softmax (or sigmoid); with `drw_epoch`, effective-number class weights from then on."""

    def __init__(self, counts: torch.Tensor, cfg: HeadConfig, multilabel: bool):
        m = 1.0 / counts.float().clamp_min(1) ** 0.25
        self.margins = m * (cfg.ldam_max_margin / m.max())
        self.scale, self.multilabel, self.drw_epoch = cfg.ldam_scale, multilabel, cfg.drw_epoch
        self.drw_weights = class_weights(HeadConfig(class_weights="effective", cb_beta=cfg.cb_beta), counts)
        self.epoch = 0  # set by the trainer

    def __call__(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        target = y if self.multilabel else F.one_hot(y, logits.shape[1]).float()
        z = self.scale * (logits - self.margins[None, :] * target)
        weight = self.drw_weights if self.drw_epoch is not None and self.epoch >= self.drw_epoch else None
        if self.multilabel:
            return F.binary_cross_entropy_with_logits(z, y, pos_weight=weight)
        return F.cross_entropy(z, y, weight=weight)


@register_loss("ldam", "class")
def ldam(cfg: HeadConfig, y: torch.Tensor):
    return LDAM(torch.bincount(y), cfg, multilabel=False)


@register_loss("ldam", "multilabel")
def ldam_multilabel(cfg: HeadConfig, y: torch.Tensor):
    return LDAM(y.sum(0), cfg, multilabel=True)
