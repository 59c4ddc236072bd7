"""`vidprobe evaluate`: a trained run's metrics, predictions and confusion matrix on one split."""

from __future__ import annotations

import json

import pandas as pd

from pipeline.config import Config
from pipeline.train import check_inputs, load_bundle, load_split, open_features, predict, print_metrics, write_tables


def run(cfg: Config) -> dict:
    split = cfg.evaluate.split
    bundle = load_bundle(cfg.run_dir() / "heads.pt")
    manifest, fs = open_features(cfg)
    check_inputs(bundle, cfg)
    data = load_split(cfg, manifest, fs, split)
    tables: dict = {}
    pred, metrics = predict(bundle, cfg, data, tables)
    out = cfg.run_dir() / "eval" / split
    out.mkdir(parents=True, exist_ok=True)
    pred.to_csv(out / "predictions.csv", index=False)
    write_tables(out, tables)
    if "pred" in pred:  # what `dvc plots` draws as a confusion matrix
        pd.DataFrame({"actual": pred["label"], "predicted": pred["pred"]}).to_csv(out / "confusion.csv", index=False)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print_metrics(f"{split} ({len(data.ids)} samples)", metrics)
    return metrics
