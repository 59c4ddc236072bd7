"""What a sweep adds to single runs: its grid's points, baselines from scikit-learn on the same data, and the
leaderboard."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pandas as pd
from vidprobe.heads.data import LabeledFeatures
from vidprobe.heads.errors import HeadConfigError
from vidprobe.heads.metrics import classification_metrics, lower_is_better, regression_metrics
from vidprobe.heads.stream import DiskRows
from vidprobe.heads.trainer import Standardizer


def grid_points(grid: dict, samples: int = 0) -> list[dict]:
    """The grid's points (all of them, or `samples` drawn at random, the same every time).

    A grid key is a dotted config key with a list of values, or a name of your choice with a list of
    alternatives, each a mapping of overrides tried together (an optional `name` labels it):
    `{modality: [{name: video}, {name: audio, head.features: "whisper:audio/pooled"}]}`.
    """
    bad = [k for k, v in grid.items() if not isinstance(v, list) or not v]
    if bad:
        raise HeadConfigError(f"sweep.grid: {bad} must each list at least one value")
    combos = [dict(zip(grid, values)) for values in itertools.product(*grid.values())]
    if 0 < samples < len(combos):
        combos = random.Random(0).sample(combos, samples)
    return combos


def overrides(combo: dict) -> dict:
    """The config overrides of one grid point (alternatives unpacked)."""
    out = {}
    for key, value in combo.items():
        if isinstance(value, dict):
            out.update({k: v for k, v in value.items() if k != "name"})
        else:
            out[key] = value
    return out


def label(value) -> str:
    if isinstance(value, dict):
        return str(value.get("name") or ",".join(f"{k.split('.')[-1]}={v}" for k, v in value.items()) or "base")
    return str(value)


def trial_name(combo: dict) -> str:
    return ",".join(f"{k.split('.')[-1]}={label(v)}" for k, v in combo.items())


RANKED = ("acc", "macro_f1", "mAP", "mAP_head", "mAP_middle", "mAP_tail", "spearman/mean")


def sklearn_baselines(tr: LabeledFeatures, va: LabeledFeatures, traits: list[str]) -> dict:
    """Validation metrics of scikit-learn's logistic regression (classes) and ridge (traits) on the same
    standardised features (sequences: their steps concatenated) and the same train/val split."""
    from sklearn.linear_model import LogisticRegression, Ridge

    if isinstance(tr.x, DiskRows) or isinstance(va.x, DiskRows):
        print(
            "baselines: skipped, the features are streamed from disk (bigger than head.memory_mb) and "
            "scikit-learn needs them in memory"
        )
        return {}
    scale = Standardizer.fit(tr.x)
    x, xv = scale(tr.x).flatten(1).numpy(), scale(va.x).flatten(1).numpy()
    metrics: dict = {}
    if tr.labels is not None:
        classes = sorted(set(tr.labels))
        clf = LogisticRegression(max_iter=2000).fit(x, tr.labels)
        y_true = np.array([classes.index(c) if c in classes else -1 for c in va.labels])
        y_pred = np.array([classes.index(c) for c in clf.predict(xv)])
        metrics.update(classification_metrics(y_true, y_pred, len(classes)))
    if traits:
        keep, keep_v = ~np.isnan(tr.traits).any(1), ~np.isnan(va.traits).any(1)
        ridge = Ridge(alpha=1.0).fit(x[keep], tr.traits[keep])
        metrics.update(regression_metrics(va.traits[keep_v], ridge.predict(xv[keep_v]), list(traits)))
    return metrics


def leaderboard(rows: list[dict], metric: str) -> pd.DataFrame:
    """Mean ± std over seeds per configuration, best first by `metric` (`lower_is_better` decides the order).
    `diverged` counts the seeds whose `metric` is NaN (training blew up); the means are over the others,
    and a configuration where every seed diverged ranks last."""
    df = pd.DataFrame(rows)
    metric_cols = [
        c for c in df.columns if c not in ("config", "seed", "run_dir") and pd.api.types.is_float_dtype(df[c])
    ]
    df["diverged"] = df[metric].isna() if metric in df else False
    grouped = df.groupby("config", sort=False)
    table = grouped[metric_cols].mean().add_suffix(" mean").join(grouped[metric_cols].std(ddof=0).add_suffix(" std"))
    table["seeds"] = grouped.size()
    table["diverged"] = grouped.diverged.sum().astype(int)
    table["runs"] = grouped.run_dir.apply(lambda d: "; ".join(x for x in d if x))
    return table.sort_values(f"{metric} mean", ascending=lower_is_better(metric), na_position="last").reset_index()


def to_markdown(table: pd.DataFrame, metric: str) -> str:
    ranked = RANKED + tuple(
        sorted(
            c[: -len(" mean")]
            for c in table.columns
            if c.startswith("spearman/") and c.endswith(" mean") and "/mean" not in c
        )
    )
    shown = [metric] + [m for m in ranked if m != metric and f"{m} mean" in table]
    names = [c for c in ("backbone", "config") if c in table]  # several backbones in one table: which is which
    lines = [
        "| " + " | ".join(names + shown) + " | seeds | diverged |",
        "|" + "---|" * (len(names) + len(shown) + 2),
    ]
    for _, row in table.iterrows():
        cells = [str(row[c]) for c in names] + [f"{row[f'{m} mean']:.4f} ± {row[f'{m} std']:.4f}" for m in shown]
        lines.append("| " + " | ".join(cells) + f" | {row['seeds']} | {row['diverged']} |")
    return "\n".join(lines) + "\n"
