"""`vidprobe sweep`: many heads on the same cached features, in parallel, into one leaderboard.

Every trial is an ordinary `train` run (its own folder with config, metrics, curves, weights), so a
sweep is only a plan, a pool of workers and a table. scikit-learn's logistic regression / ridge on
the same features and splits join the table as baselines.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import os
import random
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from joblib import Parallel, delayed

from heads.metrics import classification_metrics, regression_metrics
from heads.trainer import Standardizer
from pipeline import train
from pipeline.config import Config, ConfigError, with_overrides

BATCHABLE = {"head.lr", "head.weight_decay"}  # grid keys heads can differ in and still train as one batch


def plan(cfg: Config) -> list[dict]:
    """The grid's configurations (all of them, or `sweep.samples` drawn at random), validated up front.

    A grid key is a dotted config key with a list of values, or a name of your choice with a list of
    alternatives, each a mapping of overrides tried together (an optional `name` labels it):
    `{modality: [{name: video}, {name: audio, head.features: "whisper:audio/pooled"}]}`.
    """
    grid = cfg.sweep.grid
    if not grid:
        raise ConfigError("sweep.grid: nothing to sweep; e.g. sweep.grid='{head.lr: [0.1, 0.01], head.weight_decay: [0, 1e-4]}'")
    bad = [k for k, v in grid.items() if not isinstance(v, list) or not v]
    if bad:
        raise ConfigError(f"sweep.grid: {bad} must each list at least one value")
    combos = [dict(zip(grid, values)) for values in itertools.product(*grid.values())]
    if 0 < cfg.sweep.samples < len(combos):
        combos = random.Random(0).sample(combos, cfg.sweep.samples)
    for combo in combos:
        with_overrides(cfg, overrides(combo))  # an unknown key or a wrong type fails before anything runs
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


def run_trials(cfg: Config, combos: list[dict], seed: int, sweep_dir: str, threads: int) -> list[dict]:
    """One head per combo, each in its own run folder (`train.log` holds what training printed).
    Several combos come only when they can train as one batch (`batches`)."""
    torch.set_num_threads(threads)
    cfgs = [scale_lr(with_overrides(cfg, {**overrides(combo), "head.seed": seed,
                                          "run.name": f"{Path(sweep_dir).name}/{trial_name(combo)}/seed{seed}"}))
            for combo in combos]
    log = io.StringIO()
    with contextlib.redirect_stdout(log):
        metrics = train.run_many(cfgs)
    for c in cfgs:
        (c.run_dir() / "train.log").write_text(log.getvalue())
    return [{"config": trial_name(combo), **{k: label(v) for k, v in combo.items()}, "seed": seed,
             "run_dir": str(c.run_dir()), **m}
            for combo, c, m in zip(combos, cfgs, metrics)]


def scale_lr(cfg: Config) -> Config:
    """sweep.lr_scaling: the learning rate follows the batch size (linear, or square-root) from
    sweep.base_batch_size; the run's saved config holds the rate it trained with."""
    rule = cfg.sweep.lr_scaling
    if rule == "none":
        return cfg
    ratio = cfg.head.batch_size / cfg.sweep.base_batch_size
    return with_overrides(cfg, {"head.lr": cfg.head.lr * (ratio if rule == "linear" else ratio ** 0.5)})


def batches(cfg: Config, combos: list[dict], n_jobs: int) -> list[tuple[list[dict], int]]:
    """(combos, seed) per job. Linear class heads that differ only in lr / weight decay train together
    (one pass over the data for all of them, see `heads.trainer.fit_many`), split so every worker has
    a share; anything else runs one config per job."""
    seeds = cfg.sweep.seeds
    if not (cfg.sweep.batch and set(cfg.sweep.grid) <= BATCHABLE and train.can_batch(cfg)):
        return [([combo], seed) for combo in combos for seed in seeds]
    per_seed = max(1, min(len(combos), -(-n_jobs // len(seeds))))  # chunks per seed
    return [(combos[i::per_seed], seed) for seed in seeds for i in range(per_seed)]


def baselines(cfg: Config) -> list[dict]:
    """scikit-learn on the same standardised features and the same train/val split."""
    from sklearn.linear_model import LogisticRegression, Ridge

    manifest, fs = train.open_features(cfg)
    _, key = train.feature_key(cfg)
    sequence = len(fs.keys.get(key, ())) == 2 and not key.endswith("pooled")
    cfg = with_overrides(cfg, {"head.name": "attention" if sequence else "linear", "head.init": "random"})  # the data only
    tr, va = train.load_split(cfg, manifest, fs, "train"), train.load_split(cfg, manifest, fs, "val")
    scale = Standardizer.fit(tr.x)
    x, xv = scale(tr.x).flatten(1).numpy(), scale(va.x).flatten(1).numpy()  # sequences: concatenated steps
    metrics: dict = {}
    if cfg.task.label:
        classes = sorted(set(tr.labels))
        clf = LogisticRegression(max_iter=2000).fit(x, tr.labels)
        y_true = np.array([classes.index(c) if c in classes else -1 for c in va.labels])
        y_pred = np.array([classes.index(c) for c in clf.predict(xv)])
        metrics.update(classification_metrics(y_true, y_pred, len(classes)))
    if cfg.task.traits:
        keep, keep_v = ~np.isnan(tr.traits).any(1), ~np.isnan(va.traits).any(1)
        ridge = Ridge(alpha=1.0).fit(x[keep], tr.traits[keep])
        metrics.update(regression_metrics(va.traits[keep_v], ridge.predict(xv[keep_v]), list(cfg.task.traits)))
    return [{"config": "baseline: sklearn logistic/ridge", "seed": 0, "run_dir": "", **metrics}] if metrics else []


def leaderboard(rows: list[dict], metric: str) -> pd.DataFrame:
    """Mean ± std over seeds per configuration, best first by `metric`."""
    df = pd.DataFrame(rows)
    if metric not in df.columns:
        raise ConfigError(f"sweep.metric: {metric!r} is not among the metrics: {sorted(c for c in df.columns if '/' in c or c in ('acc', 'macro_f1', 'mAP'))}")
    metric_cols = [c for c in df.columns if c not in ("config", "seed", "run_dir") and pd.api.types.is_float_dtype(df[c])]
    grouped = df.groupby("config", sort=False)
    table = grouped[metric_cols].mean().add_suffix(" mean").join(grouped[metric_cols].std(ddof=0).add_suffix(" std"))
    table["seeds"] = grouped.size()
    table["runs"] = grouped.run_dir.apply(lambda d: "; ".join(x for x in d if x))
    lower_is_better = metric.startswith(("mae", "loss"))
    return table.sort_values(f"{metric} mean", ascending=lower_is_better).reset_index()


def to_markdown(table: pd.DataFrame, metric: str) -> str:
    ranked = ("acc", "macro_f1", "mAP", "mAP_head", "mAP_middle", "mAP_tail", "spearman/mean") + tuple(sorted(
        c[: -len(" mean")] for c in table.columns if c.startswith("spearman/") and c.endswith(" mean") and "/mean" not in c))
    shown = [metric] + [m for m in ranked if m != metric and f"{m} mean" in table]
    lines = ["| config | " + " | ".join(shown) + " | seeds |", "|---|" + "---|" * (len(shown) + 1)]
    for _, row in table.iterrows():
        cells = [f"{row[f'{m} mean']:.4f} ± {row[f'{m} std']:.4f}" for m in shown]
        lines.append(f"| {row['config']} | " + " | ".join(cells) + f" | {row['seeds']} |")
    return "\n".join(lines) + "\n"


def run(cfg: Config) -> pd.DataFrame:
    combos = plan(cfg)
    train.open_features(cfg)  # the features exist and match this config, before any worker starts
    out = Path(cfg.paths.cache) / "runs" / cfg.sweep.name
    out.mkdir(parents=True, exist_ok=True)
    n_jobs = cfg.sweep.n_jobs if cfg.sweep.n_jobs > 0 else (os.cpu_count() or 1)
    jobs = batches(cfg, combos, n_jobs)
    n_jobs = min(n_jobs, len(jobs))
    threads = max(1, (os.cpu_count() or 1) // n_jobs)
    runs = len(combos) * len(cfg.sweep.seeds)
    print(f"sweep {cfg.sweep.name}: {len(combos)} configs x {len(cfg.sweep.seeds)} seeds = {runs} runs "
          f"in {len(jobs)} jobs ({'heads batched' if len(jobs) < runs else 'one run each'}), {n_jobs} at a time")
    done = Parallel(n_jobs=n_jobs, verbose=5)(
        delayed(run_trials)(cfg, batch, seed, str(out), threads) for batch, seed in jobs)
    rows = [row for rows_of_job in done for row in rows_of_job]
    if cfg.sweep.baselines:
        rows += baselines(cfg)
    table = leaderboard(rows, cfg.sweep.metric)
    table.to_csv(out / "leaderboard.csv", index=False)
    markdown = to_markdown(table, cfg.sweep.metric)
    (out / "leaderboard.md").write_text(markdown)
    (out / "sweep.json").write_text(json.dumps({"grid": cfg.sweep.grid, "seeds": cfg.sweep.seeds,
                                                "metric": cfg.sweep.metric}, indent=2) + "\n")
    print(markdown + f"\nleaderboard: {out / 'leaderboard.csv'}")
    return table
