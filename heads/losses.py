"""Losses behind a registry: `@register_loss(name, task, settings=...)` builders taking (head config, train
targets) -> loss(outputs, targets). A loss's own settings are a dataclass declared beside it; they join the
`head` section as `head.<key>` (heads/config.py composes it), so a new loss is one function and its settings.

Builders see the training targets, so class weights come from the training split only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from vidprobe.features.config import choice
from vidprobe.heads.errors import HeadConfigError

if TYPE_CHECKING:
    from vidprobe.heads.config import HeadConfig

LOSSES: dict[tuple[str, str], Callable] = {}  # (task, name) -> builder; task: class | multilabel | regression
SETTINGS: dict[tuple[str, str], tuple[type, ...]] = {}  # (task, name) -> the settings dataclasses it reads
TASK_KEYS = {"class": "head.loss", "multilabel": "head.multilabel_loss", "regression": "head.regression_loss"}


def register_loss(name: str, task: str, settings: tuple[type, ...] = ()):
    def deco(fn):
        LOSSES[(task, name)] = fn
        SETTINGS[(task, name)] = settings
        return fn

    return deco


def loss_names(task: str) -> list[str]:
    """The registered losses of a task (class, multilabel, regression)."""
    return sorted(n for t, n in LOSSES if t == task)


def loss_settings() -> list[type]:
    """Every registered loss's settings, once each, in registration order (they join HeadConfig)."""
    return list(dict.fromkeys(s for group in SETTINGS.values() for s in group))


@dataclass
class ClassWeights:
    class_weights: str = choice("none", "balanced", "effective")  # ce/focal: inverse frequency, or effective numbers
    cb_beta: float = 0.999  # effective-number class weights (Cui et al. 2019); ldam's deferred re-weighting too


@dataclass
class CrossEntropySettings:
    label_smoothing: float = 0.0  # ce


@dataclass
class FocalSettings:
    focal_gamma: float = 2.0  # focal: (1 - p_true)^gamma; 0 is cross-entropy


@dataclass
class EQLSettings:
    eql_tail_count: int = 100  # eql: classes with fewer train positives get no loss from their negatives


@dataclass
class LDAMSettings:
    ldam_max_margin: float = 0.5  # ldam: margin of the rarest class (margins fall as n^-1/4)
    ldam_scale: float = 30.0  # ldam: the logits' scale
    drw_epoch: int | None = None  # ldam (deferred re-weighting): effective-number class weights from this epoch


def check_loss(name: str, task: str) -> str | None:
    """Why `name` is no `task` loss (a config problem line), or None."""
    if (task, name) not in LOSSES:
        return f"{TASK_KEYS[task]}: unknown {task} loss {name!r}; valid: {', '.join(loss_names(task))}"
    return None


def build_loss(name: str, task: str, cfg: HeadConfig, y_train: torch.Tensor) -> Callable:
    if problem := check_loss(name, task):
        raise HeadConfigError(problem)
    return LOSSES[(task, name)](cfg, y_train)


def class_weights(cfg: HeadConfig, counts: torch.Tensor) -> torch.Tensor | None:
    """None, inverse frequency ('balanced', as scikit-learn), or effective numbers ((1-b)/(1-b^n), mean 1)."""
    counts = counts.float()
    if cfg.class_weights == "none":
        return None
    if cfg.class_weights == "balanced":
        return counts.sum() / (len(counts) * counts.clamp_min(1))
    return effective_weights(counts, cfg.cb_beta)


def effective_weights(counts: torch.Tensor, beta: float) -> torch.Tensor:
    """Class-balanced weights by effective numbers (Cui et al. 2019): (1-b)/(1-b^n), scaled to mean 1."""
    w = (1 - beta) / (1 - beta ** counts.float().clamp_min(1))
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


@register_loss("ce", "class", (ClassWeights, CrossEntropySettings))
def ce(cfg: HeadConfig, y: torch.Tensor):
    return CrossEntropy(class_weights(cfg, torch.bincount(y)), cfg.label_smoothing)


@register_loss("focal", "class", (ClassWeights, FocalSettings))
def focal(cfg: HeadConfig, y: torch.Tensor):
    return Focal(class_weights(cfg, torch.bincount(y)), cfg.focal_gamma, multilabel=False)


@register_loss("bce", "multilabel")
def bce(cfg: HeadConfig, y: torch.Tensor):
    return F.binary_cross_entropy_with_logits


class BalancedBCE:
    """BCE whose positives weigh by effective numbers (Cui et al. 2019): the rarer a class, the more."""

    def __init__(self, weight: torch.Tensor):
        self.weight = weight

    def __call__(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(logits, target, pos_weight=self.weight)


def balanced_multilabel_bce(cfg: HeadConfig, y: torch.Tensor) -> Callable:
    return BalancedBCE(effective_weights(y.sum(0), cfg.cb_beta))


@register_loss("focal", "multilabel", (FocalSettings,))
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


@register_loss("eql", "multilabel", (EQLSettings,))
def eql(cfg: HeadConfig, y: torch.Tensor):
    return EQL(y.sum(0) < cfg.eql_tail_count)


class LDAM:
    """Label-distribution-aware margins (Cao et al. 2019): the true classes' logits lose m_j = C / n_j^(1/4)
    before a scaled softmax (or sigmoid); with `drw_epoch`, effective-number class weights from then on."""

    def __init__(self, counts: torch.Tensor, cfg: HeadConfig, multilabel: bool):
        m = 1.0 / counts.float().clamp_min(1) ** 0.25
        self.margins = m * (cfg.ldam_max_margin / m.max())
        self.scale, self.multilabel, self.drw_epoch = cfg.ldam_scale, multilabel, cfg.drw_epoch
        self.drw_weights = effective_weights(counts, cfg.cb_beta)
        self.epoch = 0  # set by the trainer

    def __call__(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        target = y if self.multilabel else F.one_hot(y, logits.shape[1]).float()
        z = self.scale * (logits - self.margins[None, :] * target)
        weight = self.drw_weights if self.drw_epoch is not None and self.epoch >= self.drw_epoch else None
        if self.multilabel:
            return F.binary_cross_entropy_with_logits(z, y, pos_weight=weight)
        return F.cross_entropy(z, y, weight=weight)


@register_loss("ldam", "class", (ClassWeights, LDAMSettings))
def ldam(cfg: HeadConfig, y: torch.Tensor):
    return LDAM(torch.bincount(y), cfg, multilabel=False)


@register_loss("ldam", "multilabel", (ClassWeights, LDAMSettings))
def ldam_multilabel(cfg: HeadConfig, y: torch.Tensor):
    return LDAM(y.sum(0), cfg, multilabel=True)
