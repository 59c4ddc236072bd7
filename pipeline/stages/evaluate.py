"""`vidprobe evaluate`: a trained run's metrics, predictions and confusion matrix on one split."""

from __future__ import annotations

from vidprobe.config import Config
from vidprobe.training import evaluate_run


def run(cfg: Config) -> dict:
    return evaluate_run(cfg)
