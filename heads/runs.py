"""What a head run writes into its folder (the caller chooses the folder):

`heads.pt` (the bundle), `config.yaml` (the resolved config that made it), `history/<head>.tsv` (per
epoch: what `dvc plots` draws), and for the validation split, or any split evaluated later under
`eval/<split>/`: `predictions.csv`, `per_class_ap[-multilabel].csv`, `metrics.json` (what `dvc metrics
show` reads) and, for a class head, `confusion.csv`.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from vidprobe.features.files import remove_partials, write_json, write_table, write_yaml
from vidprobe.heads.bundle import HeadBundle
from vidprobe.heads.config import HeadConfig
from vidprobe.heads.data import LabeledFeatures
from vidprobe.heads.tasks import Trained

HEADS_FILE = "heads.pt"


def save_run(out: Path, trained: Trained, head: HeadConfig, config: dict, coop_clip: tuple | None = None) -> dict:
    """A trained head config's run folder; returns its validation metrics."""
    out.mkdir(parents=True, exist_ok=True)
    remove_partials(out)
    for name, rows in trained.histories.items():
        write_history(out / "history" / f"{name}.tsv", rows)
    trained.bundle.save(out / HEADS_FILE)
    write_yaml(out / "config.yaml", config)
    pred, metrics, tables = trained.bundle.predict(trained.val, head, coop_clip)
    write_results(out, pred, metrics, tables)  # metrics.json last: a run folder that has it is finished
    print_metrics(f"validation ({len(trained.val.ids)} samples, trained on {trained.n_train})", metrics)
    return metrics


def load_run(run_dir: Path) -> HeadBundle:
    """The head bundle a run folder holds."""
    return HeadBundle.load(run_dir / HEADS_FILE)


def save_evaluation(
    out: Path, bundle: HeadBundle, data: LabeledFeatures, split: str, head: HeadConfig, coop_clip: tuple | None = None
) -> dict:
    """A trained bundle's predictions and metrics on one split, into `out`; returns the metrics."""
    pred, metrics, tables = bundle.predict(data, head, coop_clip)
    out.mkdir(parents=True, exist_ok=True)
    write_results(out, pred, metrics, tables)
    if "pred" in pred:  # what `dvc plots` draws as a confusion matrix
        write_table(out / "confusion.csv", pd.DataFrame({"actual": pred["label"], "predicted": pred["pred"]}))
    print_metrics(f"{split} ({len(data.ids)} samples)", metrics)
    return metrics


def write_results(out: Path, pred: pd.DataFrame, metrics: dict, tables: dict[str, pd.DataFrame]) -> None:
    write_table(out / "predictions.csv", pred)
    for name, table in tables.items():  # per class: what `dvc plots` draws as a bar chart
        write_table(
            out / ("per_class_ap.csv" if name == "label" else f"per_class_ap-{name}.csv"), table, float_format="%.6g"
        )
    write_json(out / "metrics.json", metrics)


def write_history(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_table(path, pd.DataFrame(rows), sep="\t", float_format="%.6g")


def print_metrics(title: str, metrics: dict) -> None:
    print(title)
    for key, value in metrics.items():
        print(f"  {key:<22} {value:.4f}")
