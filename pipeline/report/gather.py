"""What a report shows, read from what the stages wrote: a sweep's (or probe's) leaderboard and its best run, or
one run; the best run's config (provenance) leads to the manifest, the features and the predictions."""

from __future__ import annotations

import contextlib
import io
import json
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from vidprobe import config as configs
from vidprobe.access import load_features, samples
from vidprobe.artifacts import read_manifest
from vidprobe.config import Config
from vidprobe.errors import ConfigError, RunFailed
from vidprobe.heads.metrics import lower_is_better
from vidprobe.training import evaluate_run

BASELINE = "baseline"
RUN_METRICS = ("acc", "macro_f1", "top5", "mAP", "spearman/mean", "ccc/mean", "mae/mean")


@dataclass
class Source:
    dir: Path  # what the report is of: a sweep (or probe) folder, or a run folder
    board: pd.DataFrame | None  # the leaderboard (None: one run)
    metric: str
    run: Path  # the best run (the run itself)
    cfg: Config  # its config, as it trained
    split: str  # the split its predictions below are on: test when there is one, else val
    predictions: pd.DataFrame
    metrics: dict  # on `split`
    val_metrics: dict
    per_class_ap: dict[str, pd.DataFrame]  # on `split`: per_class_ap.csv (classes), per_class_ap-multilabel.csv
    manifest: pd.DataFrame
    probe: dict | None  # probe.json: what `vidprobe probe` inferred


def best_of(board: pd.DataFrame, metric: str, where: Path) -> dict:
    """The best configuration (baselines aside, diverged seeds aside) and its best seed on val."""
    heads = board[~board.config.astype(str).str.startswith(BASELINE) & board[f"{metric} mean"].notna()]
    if heads.empty:
        raise RunFailed(f"{where}: every head diverged ({metric} is NaN for all); see the leaderboard's runs")
    row = heads.iloc[0]
    runs = [run_path(r, where) for r in str(row["runs"]).split("; ") if r]
    sign = 1 if lower_is_better(metric) else -1
    scores = [sign * json.loads((r / "metrics.json").read_text()).get(metric, math.nan) for r in runs]
    best = min(range(len(runs)), key=lambda i: (math.isnan(scores[i]), scores[i]))
    return {
        "config": str(row.config),
        "backbone": str(row.get("backbone", "")),
        "run": str(runs[best].resolve()),
        "runs": [str(r.resolve()) for r in runs],
        "val": json.loads((runs[best] / "metrics.json").read_text()),
    }


def run_path(recorded: str, sweep: Path) -> Path:
    """A run folder the leaderboard names: as recorded (relative to where the sweep ran), else under the sweep."""
    path = Path(recorded)
    if (path / "metrics.json").is_file():
        return path
    inside = sweep / Path(*path.parts[-2:])
    if (inside / "metrics.json").is_file():
        return inside
    raise ConfigError(f"{sweep}: the leaderboard names run {recorded}, which is not there (moved or deleted?)")


def resolve(target: str | Path, cache: str | None = None) -> Path:
    """A sweep, probe or run folder; a bare name is looked up under `<cache>/runs/`."""
    path = Path(target)
    if not path.is_dir() and cache:
        path = Path(cache) / "runs" / str(target)
    if not path.is_dir():
        raise ConfigError(
            f"report: {target} is not a folder; pass a sweep folder (with leaderboard.csv), a run folder (with "
            "metrics.json) or a probe's folder, e.g. cache/runs/probe-demo"
        )
    return path


def source(target: Path) -> Source:
    probe = json.loads((target / "probe.json").read_text()) if (target / "probe.json").is_file() else None
    if (target / "leaderboard.csv").is_file():
        board = pd.read_csv(target / "leaderboard.csv")
        sweep = json.loads((target / "sweep.json").read_text()) if (target / "sweep.json").is_file() else {}
        metric = sweep.get("metric") or (probe or {}).get("metric") or "acc"
        run = Path((probe or {}).get("best", {}).get("run") or best_of(board, metric, target)["run"])
    elif (target / "metrics.json").is_file() and (target / "config.yaml").is_file():
        board, run = None, target
    else:
        raise ConfigError(
            f"report: {target} holds neither a leaderboard.csv (a sweep) nor metrics.json and config.yaml (a run)"
        )
    cfg = configs.load_config(run / "config.yaml")
    val_metrics = json.loads((run / "metrics.json").read_text())
    if board is None:
        metric = next((m for m in RUN_METRICS if m in val_metrics), next(iter(val_metrics), "acc"))
    have = samples(cfg)
    split = "test" if (have.split == "test").any() else "val"
    folder = run / "eval" / split if split == "test" else run
    with tempfile.TemporaryDirectory(prefix="vidprobe-report-") as scratch:
        if not (folder / "metrics.json").is_file():  # never evaluated on this split: scored into a scratch
            folder = Path(scratch) / split  # folder, not into the run (under DVC, another stage's output)
            with contextlib.redirect_stdout(io.StringIO()):
                evaluate_run(cfg, split, folder)
        predictions = pd.read_csv(folder / "predictions.csv", dtype={"sample_id": str, "label": str, "pred": str})
        metrics = json.loads((folder / "metrics.json").read_text())
        ap = {f.name: pd.read_csv(f) for f in folder.glob("per_class_ap*.csv")}
    return Source(
        target, board, metric, run, cfg, split, predictions, metrics, val_metrics, ap, read_manifest(cfg), probe
    )


def features(cfg: Config) -> tuple[pd.DataFrame, np.ndarray]:
    """Every sample with features (manifest rows, indexed by id) and its head input, standardised by the train
    split's mean and spread; token grids and views are averaged to one vector."""
    name, _, key = cfg.head.features.rpartition(":")
    rows = samples(cfg, name=name or None)
    x = load_features(cfg, key, name=name or None).astype(np.float32)
    x = x.reshape(len(x), -1, x.shape[-1]).mean(1) if x.ndim > 2 else x
    train = (rows.split == "train").to_numpy()
    ref = x[train] if train.any() else x
    return rows, (x - ref.mean(0)) / (ref.std(0) + 1e-6)


@dataclass
class Projection:
    xy: np.ndarray  # (N, 2)
    axes: tuple[str, str]  # what each axis is
    note: str = ""  # a line for the page, where the map needs one


def projections(x: np.ndarray, tsne_max: int = 3000, seed: int = 0) -> dict[str, Projection]:
    """2-D maps of the features: PCA always (its axes' share of the variance named), t-SNE too from 5 up to
    `tsne_max` points (on the first 50 principal components, as is usual for wide features)."""
    from sklearn.decomposition import PCA

    if len(x) < 3:
        return {"PCA": Projection(np.zeros((len(x), 2)), ("PC 1", "PC 2"), "Too few samples for a map.")}
    pca = PCA(n_components=min(50, *x.shape), random_state=seed).fit(x)
    z = pca.transform(x)
    share = pca.explained_variance_ratio_
    maps = {"PCA": Projection(z[:, :2], (f"PC 1 ({share[0]:.0%} of the variance)", f"PC 2 ({share[1]:.0%})"))}
    if 5 <= len(x) <= tsne_max:
        from sklearn.manifold import TSNE

        perplexity = float(min(30, (len(x) - 1) / 3))
        xy = TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(z)
        maps["t-SNE"] = Projection(
            xy, ("t-SNE 1", "t-SNE 2"), "t-SNE keeps neighbours close; distances between clusters mean little."
        )
    else:
        maps["PCA"].note = f"t-SNE is drawn from 5 up to {tsne_max:,} samples; this map has {len(x):,} (PCA only)."
    return maps


def sample_rows(n: int, most: int, seed: int = 0) -> np.ndarray:
    """All row indices up to `most`, else `most` of them drawn at random (sorted)."""
    if n <= most:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, most, replace=False))


def neighbours(x: np.ndarray, queries: np.ndarray, pool: np.ndarray, k: int = 5) -> list[list[int]]:
    """For each query row, the `k` rows of `pool` nearest in cosine similarity (indices into x)."""
    unit = x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-9)
    sims = unit[queries] @ unit[pool].T
    return [list(pool[np.argsort(-s)[:k]]) for s in sims]
