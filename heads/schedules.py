"""The learning-rate schedule: a linear warm-up, then cosine decay to zero (or a constant rate).

Heads step it per epoch, fine-tuning per optimiser step. One function serves both; they differ only in
where the warm-up peaks: a head's reaches the full rate on the first epoch after it, fine-tuning's on its
own last step (each as it was first tuned, so results stay comparable across versions).
"""

from __future__ import annotations

import math

from vidprobe.heads.config import HeadConfig


def warmup_then_decay(
    base: float, step: int, warmup: int, total: int, decay: str = "cosine", peak_after_warmup: bool = False
) -> float:
    """`base` at 0-based `step` of `total`: linear warm-up over the first `warmup` steps, then `decay`
    ("cosine" to zero at `total`, or "constant")."""
    if step < warmup:
        return base * (step + 1) / (warmup + peak_after_warmup)
    if decay == "constant":
        return base
    progress = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def lr_at(cfg: HeadConfig, epoch: int) -> float:
    """A head's learning rate in (1-based) `epoch`."""
    return warmup_then_decay(cfg.lr, epoch - 1, cfg.warmup_epochs, cfg.epochs, cfg.schedule, peak_after_warmup=True)
