"""`vidprobe evaluate`: a trained run's metrics, predictions and confusion matrix on one split."""

from __future__ import annotations

import json

import pandas as pd

from pipeline.config import Config
from pipeline.train import load_bundle, load_split, open_features, predict, print_metrics


def run(cfg: Config) -> dict:
    split = cfg.evaluate.split
    bundle = load_bundle(cfg.run_dir() / "heads.pt")
    manifest, fs = open_features(cfg)
    data = load_split(cfg, manifest, fs, split)
    pred, metrics = predict(bundle, cfg, data)
    out = cfg.run_dir() / "eval" / split
    out.mkdir(parents=True, exist_ok=True)
    pred.to_csv(out / "predictions.csv", index=False)
    if "pred" in pred:  # what `dvc plots` draws as a confusion matrix
        pd.DataFrame({"actual": pred["label"], "predicted": pred["pred"]}).to_csv(out / "confusion.csv", index=False)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print_metrics(f"{split} ({len(data.ids)} samples)", metrics)
    return metrics
