"""`vidprobe sweep`: many heads on the same cached features, in parallel, into one leaderboard.

Every trial is an ordinary `train` run (its own folder with config, metrics, curves, weights), so a
sweep is only a grid, a pool of workers and a table. A sweep run again (after a crash, a kill, or with
more grid points or seeds) trains only the trials whose run folder holds no finished run of the same config. scikit-learn's logistic regression / ridge on
the same features and splits join the table as baselines.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path

import pandas as pd
import torch
import yaml
from joblib import Parallel, delayed, parallel_config
from vidprobe import layout
from vidprobe.artifacts import head_inputs, writing
from vidprobe.checks import check_sweep
from vidprobe.config import Config, ConfigError, with_overrides
from vidprobe.engines import check as check_engine
from vidprobe.engines import engine
from vidprobe.features.files import write_json, write_table, write_text
from vidprobe.heads.data import load_split
from vidprobe.heads.sweep import grid_points, label, leaderboard, overrides, sklearn_baselines, to_markdown, trial_name
from vidprobe.heads.tasks import batch_key
from vidprobe.training import train_runs


def combos_of(cfg: Config) -> list[dict]:
    """The grid's configurations (all, or `sweep.samples` drawn at random); load_config checked each already,
    and here each measures sweep.metric."""
    if not cfg.sweep.grid:
        raise ConfigError(
            "sweep.grid: nothing to sweep; e.g. sweep.grid='{head.lr: [0.1, 0.01], head.weight_decay: [0, 1e-4]}'"
        )
    check_sweep(cfg)
    return grid_points(cfg.sweep.grid, cfg.sweep.samples)


def trial_config(cfg: Config, combo: dict, seed: int, sweep_dir: str) -> Config:
    """The config one trial (a grid point with a seed) trains with, as its run folder records it."""
    return scale_lr(
        with_overrides(
            cfg,
            {
                **overrides(combo),
                "head.seed": seed,
                "run.name": f"{Path(sweep_dir).name}/{trial_name(combo)}/seed{seed}",
            },
        )
    )


def trial_row(combo: dict, seed: int, c: Config, metrics: dict) -> dict:
    return {
        "config": trial_name(combo),
        **{k: label(v) for k, v in combo.items()},
        "seed": seed,
        "run_dir": str(layout.run_dir(c)),
        **metrics,
    }


def finished(cfg: Config, combo: dict, seed: int, sweep_dir: str) -> dict | None:
    """The leaderboard row of a trial an earlier (interrupted) sweep already trained with this very config,
    else None. A run folder is finished once its metrics are written (they are written last, atomically)."""
    c = trial_config(cfg, combo, seed, sweep_dir)
    run = layout.run_dir(c)
    if not (run / "metrics.json").is_file() or not (run / "config.yaml").is_file():
        return None
    if yaml.safe_load((run / "config.yaml").read_text()) != yaml.safe_load(yaml.safe_dump(c.to_dict())):
        return None  # trained with another config (the grid's base changed): train it again
    return trial_row(combo, seed, c, json.loads((run / "metrics.json").read_text()))


def run_trials(cfg: Config, combos: list[dict], seed: int, sweep_dir: str, threads: int) -> list[dict]:
    """One head per combo, each in its own run folder (`train.log` holds what training printed).
    Several combos come only when they can train as one batch (`batches`)."""
    torch.set_num_threads(threads)
    cfgs = [trial_config(cfg, combo, seed, sweep_dir) for combo in combos]
    log = io.StringIO()
    # joblib calls inside a trial run in its own threads: under the dask backend they would otherwise go back to
    # the cluster, which then starts another trial in this process beside it (two trials sharing torch's RNG)
    with contextlib.redirect_stdout(log), parallel_config(backend="threading"):  # each run as `vidprobe train` makes it
        metrics = train_runs(cfgs)
    for c in cfgs:
        write_text(layout.run_dir(c) / "train.log", log.getvalue())
    return [trial_row(combo, seed, c, m) for combo, c, m in zip(combos, cfgs, metrics)]


def scale_lr(cfg: Config) -> Config:
    """sweep.lr_scaling: the learning rate follows the batch size (linear, or square-root) from
    sweep.base_batch_size; the run's saved config holds the rate it trained with."""
    rule = cfg.sweep.lr_scaling
    if rule == "none":
        return cfg
    ratio = cfg.head.batch_size / cfg.sweep.base_batch_size
    return with_overrides(cfg, {"head.lr": cfg.head.lr * (ratio if rule == "linear" else ratio**0.5)})


def batches(
    cfg: Config, combos: list[dict], n_jobs: int, skip: set[tuple[str, int]] = frozenset()
) -> list[tuple[list[dict], int]]:
    """(combos, seed) per job, leaving out the (trial name, seed) pairs in `skip`. Trials whose heads can
    train in one pass (`heads.tasks.batch_key`: linear class heads differing only in lr / weight decay;
    joint trait heads also in head, loss, schedule and stopping) and whose configs agree on everything else
    train together (see `heads.trainer.fit_many`), split so every worker has a share; anything else runs
    one config per job."""
    seeds = cfg.sweep.seeds
    if not cfg.sweep.batch:
        return [([combo], seed) for seed in seeds for combo in combos if (trial_name(combo), seed) not in skip]
    jobs = []
    for seed in seeds:
        groups: dict[str, list[dict]] = {}
        for combo in combos:
            if (trial_name(combo), seed) not in skip:
                groups.setdefault(shared_part(cfg, combo), []).append(combo)
        for key, left in groups.items():
            if key.startswith("alone:"):
                jobs += [([combo], seed) for combo in left]
                continue
            chunks = max(1, min(len(left), -(-n_jobs // (len(seeds) * len(groups)))))  # so every worker has a share
            jobs += [(left[i::chunks], seed) for i in range(chunks)]
    return jobs


def shared_part(cfg: Config, combo: dict) -> str:
    """What trials that train as one batch must agree on (their config, but for what their heads may differ
    in and their run name); "alone:<trial>" for a trial that trains alone."""
    c = with_overrides(cfg, overrides(combo))
    key = batch_key(c.head, c.task)
    if key is None:
        return f"alone:{trial_name(combo)}"
    return yaml.safe_dump({**c.to_dict(), "head": dict(key), "run": None, "sweep": None})


def baselines(cfg: Config) -> list[dict]:
    """scikit-learn on the same standardised features and the same train/val split."""
    inputs = head_inputs(cfg)
    _, key = cfg.head.feature_spec(layout.video_set_name(cfg))
    sequence = len(inputs.features.keys.get(key, ())) == 2 and not key.endswith("pooled")
    cfg = with_overrides(
        cfg, {"head.name": "attention" if sequence else "linear", "head.init": "random"}
    )  # the data only
    tr, va = (
        load_split(cfg.head, cfg.task, inputs.manifest, inputs.features, split, inputs.fused)
        for split in ("train", "val")
    )
    metrics = sklearn_baselines(tr, va, cfg.task.traits)
    return [{"config": "baseline: sklearn logistic/ridge", "seed": 0, "run_dir": "", **metrics}] if metrics else []


def run(cfg: Config) -> pd.DataFrame:
    combos = combos_of(cfg)
    check_engine(cfg.sweep.backend)
    head_inputs(cfg)  # the features exist and match this config, before any worker starts
    out = layout.sweep_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    with writing(cfg, out, f"sweep {cfg.sweep.name}"):
        return run_grid(cfg, combos, out)


def run_grid(cfg: Config, combos: list[dict], out: Path) -> pd.DataFrame:
    n_jobs = cfg.sweep.n_jobs if cfg.sweep.n_jobs > 0 else (os.cpu_count() or 1)
    earlier = [
        row for seed in cfg.sweep.seeds for combo in combos if (row := finished(cfg, combo, seed, str(out))) is not None
    ]  # a re-run resumes
    jobs = batches(cfg, combos, n_jobs, {(row["config"], row["seed"]) for row in earlier})
    runs = len(combos) * len(cfg.sweep.seeds)
    todo = sum(len(batch) for batch, _ in jobs)
    with engine(cfg.sweep.backend, cfg.sweep.address, max(1, min(n_jobs, len(jobs)))) as on:
        print(
            f"sweep {cfg.sweep.name}: {len(combos)} configs x {len(cfg.sweep.seeds)} seeds = {runs} runs"
            + (f", {len(earlier)} already finished" if earlier else "")
            + f"; {todo} to train in {len(jobs)} jobs ({'heads batched' if len(jobs) < todo else 'one run each'}), "
            f"{on.n_jobs} at a time on {on.where}"
        )
        done = Parallel(n_jobs=on.n_jobs, verbose=5)(
            delayed(run_trials)(cfg, batch, seed, str(out), on.threads) for batch, seed in jobs
        )
    rows = earlier + [row for rows_of_job in done for row in rows_of_job]
    if cfg.sweep.baselines:
        rows += baselines(cfg)
    measured = {k for row in rows for k in row}
    if cfg.sweep.metric not in measured:  # load_config checked the task reports it; top5 needs > 5 classes
        raise ConfigError(
            f"sweep.metric: {cfg.sweep.metric!r} is not among the metrics: "
            f"{sorted(c for c in measured if '/' in c or c in ('acc', 'macro_f1', 'mAP'))}"
        )
    table = leaderboard(rows, cfg.sweep.metric)
    write_table(out / "leaderboard.csv", table)
    markdown = to_markdown(table, cfg.sweep.metric)
    write_text(out / "leaderboard.md", markdown)
    write_json(out / "sweep.json", {"grid": cfg.sweep.grid, "seeds": cfg.sweep.seeds, "metric": cfg.sweep.metric})
    print(markdown + f"\nleaderboard: {out / 'leaderboard.csv'}")
    return table
